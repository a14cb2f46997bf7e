"""Pure planning for the kubelet: a pod's network plan, its containers' environment and log
paths, and which program a container runs. Nothing here touches the kernel."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from .. import naming, state
from ..plan import Plan, PodPlan

ANN_READY = "testbed.io/ready"
ANN_KILL = "testbed.io/kill"
ANN_BACKOFF = "testbed.io/restart-backoff-seconds"

PROCESS = "process"
DEFAULT_WORKLOAD = "echo"
# Image repository (without tag or digest) -> the testbed's built-in program for it, whose
# launcher is registered under the same name in ``workloads.launchers``. Any image not listed
# that has neither ``command`` nor ``args`` runs the default echo workload (the testbed/echo
# images among them), so the echo image needs no entry of its own.
BUILTIN_IMAGES: dict[str, str] = {}


@dataclass(frozen=True)
class Program:
    """What runs for a container: ``kind`` names the launcher (``process`` or a built-in
    workload); ``argv`` is the command line of a process, the arguments of a built-in."""

    kind: str
    argv: tuple[str, ...] = ()


def image_repository(image: str | None) -> str:
    """``registry.k8s.io/coredns/coredns:v1.11.1`` -> ``registry.k8s.io/coredns/coredns``."""
    name = (image or "").split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


def program_for(spec: dict) -> Program:
    """The one decision of which program a container runs, as a runtime resolves an image's
    entrypoint: ``command`` replaces the image's program; otherwise a built-in image runs its
    workload with ``args``; otherwise ``args`` alone are the command line."""
    command = tuple(str(a) for a in spec.get("command") or [])
    args = tuple(str(a) for a in spec.get("args") or [])
    if command:
        return Program(PROCESS, command + args)
    builtin = BUILTIN_IMAGES.get(image_repository(spec.get("image")))
    if builtin is not None:
        return Program(builtin, args)
    if args:
        return Program(PROCESS, args)
    return Program(DEFAULT_WORKLOAD)


def pod_ports(pod: dict) -> list[tuple[int, str]]:
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                ports.append((int(p["containerPort"]), p.get("protocol") or "TCP"))
    return ports or [(8080, "TCP")]


def image_version(image: str | None) -> str:
    """The workload variant of an image: its tag (``testbed/echo:v2`` -> ``v2``), ``v1`` without one."""
    tail = (image or "").rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else "v1"


def pod_version(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return image_version(containers[0].get("image"))


def pod_plan(plan: Plan, pod: dict, ip: str | None = None) -> PodPlan:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    node = plan.node(spec["nodeName"])
    ip = ip or (pod.get("status") or {}).get("podIP")
    ns, name = meta.get("namespace", "default"), meta["name"]
    return PodPlan(ns, name, node.name, naming.pod_netns(plan.cluster, ns, name), ip, naming.pod_mac(ip),
                   naming.host_veth(plan.cluster, ns, name), naming.host_veth_mac(ip), node.cni_ip,
                   ipaddress.IPv4Network(node.pod_cidr).prefixlen, node.mtu)


def log_path(cluster: str, namespace: str, pod: str, container: str) -> str:
    return os.path.join(state.directory(cluster), "logs", f"{namespace}_{pod}_{container}.log")


def container_env(pod: dict, ctr: dict, ip: str | None, node_ip: str | None) -> dict[str, str]:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
           "HOSTNAME": meta.get("name", ""), "HOME": "/root"}
    fields = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "default"),
              "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""), "status.podIP": ip or "",
              "status.hostIP": node_ip or ""}
    for e in ctr.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        if "value" in e:
            env[name] = str(e.get("value") or "")
        elif ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") in fields:
            env[name] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env

