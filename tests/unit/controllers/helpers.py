from testbed.controllers import wait_for


def service(name, ns="default", selector=None, ports=None, **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector if selector is not None else {"app": name},
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": "http"}], **spec}}


def node(name, labels=None, max_pods=None):
    n = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}
    if max_pods is not None:
        n["status"] = {"allocatable": {"pods": str(max_pods)}}
    return n


def add_pod(store, name, labels, ip=None, ready=True, ns="default", node_name=None, port=8080):
    """Create a pod (admission drops status on create) and, with *ip*, write its status."""
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"containers": [{"name": "c", "image": "nginx:1.27",
                                  "ports": [{"name": "http", "containerPort": port}]}]}}
    if node_name:
        p["spec"]["nodeName"] = node_name
    out = store.create(p)
    if ip:
        out = set_status(store, out, ip=ip, ready=ready)
    return out


def set_status(store, pod, ip, ready=True):
    pod = dict(pod)
    pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return store.update_status(pod)


def slices_for(store, svc_name, ns="default"):
    items, _ = store.list("EndpointSlice", ns, label_selector={"kubernetes.io/service-name": svc_name})
    return items


def wait_slices(store, svc_name, pred, ns="default", timeout=5.0):
    """Wait until pred(endpoints of the Service's slices) is true; returns the slices."""
    def check(objs):
        mine = [s for s in objs if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == svc_name
                and s["metadata"]["namespace"] == ns]
        if mine and pred([e for s in mine for e in s.get("endpoints") or []]):
            return mine
        return None
    return wait_for(store, "EndpointSlice", check, namespace=ns, timeout=timeout)


def wait_event(store, reason, timeout=5.0, **match):
    def check(objs):
        for e in objs:
            if e.get("reason") == reason and all(e["involvedObject"].get(k) == v for k, v in match.items()):
                return e
        return None
    return wait_for(store, "Event", check, timeout=timeout)
