"""Builders for test objects."""

import copy
import random

from testbed.k8s import Admission

CONFIG = {"service_network": "10.96.0.0/12", "nodeport_range": "30000-32767", "pod_network": "10.244.0.0/16"}


def admission(seed: int = 1, **kw) -> Admission:
    cfg = dict(CONFIG, **kw)
    return Admission(cfg, rng=random.Random(seed))


def svc(name="web", spec=None, **meta):
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, **meta},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}
    if spec is not None:
        s["spec"] = copy.deepcopy(spec)
    return s


def pod(name, labels=None, ip=None, ready=True, node="node-a", ns="default", phase="Running",
        deleting=False, ports=None, uid=None):
    p = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "web"}, "uid": uid or f"uid-{name}"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx:1.27", "ports": ports or []}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    if ip:
        p["status"]["podIP"] = ip
        p["status"]["podIPs"] = [{"ip": ip}]
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return p


def deployment(name="web", spec_extra=None, labels=None, selector=None):
    labels = labels if labels is not None else {"app": name}
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"selector": {"matchLabels": {"app": name}} if selector is None else selector,
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    d["spec"].update(spec_extra or {})
    return d
