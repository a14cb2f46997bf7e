"""The kubelet: makes bound Pods real on their node (namespace, veth, address, workload).

One controller serves every node of the cluster (they share a process, like the workload
server does).  It watches Pods; a burst of new pods becomes one ``topology.add_pods`` call, i.e.
one netlink batch per pod namespace and one per node.  Pod addresses come from the node's
host-local range (``.2`` upward); status (phase, podIP, conditions) is written back through
the status subresource.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
from typing import Any

from . import naming, netns, topology
from .controllers.base import Controller, key_of
from .ipam import HostLocal, RangeFull
from .plan import Plan, PodPlan

log = logging.getLogger(__name__)
POD = "Pod"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ports(pod: dict) -> list[tuple[int, str]]:
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                ports.append((int(p["containerPort"]), p.get("protocol") or "TCP"))
    return ports or [(8080, "TCP")]


def pod_version(pod: dict) -> str:
    """The workload variant: the image tag (``testbed/echo:v2`` -> ``v2``), ``v1`` without one."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    image = containers[0].get("image") or ""
    tail = image.rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else "v1"


def pod_plan(plan: Plan, pod: dict, ip: str | None = None) -> PodPlan:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    node = plan.node(spec["nodeName"])
    ip = ip or (pod.get("status") or {}).get("podIP")
    ns, name = meta.get("namespace", "default"), meta["name"]
    return PodPlan(ns, name, node.name, naming.pod_netns(plan.cluster, ns, name), ip, naming.pod_mac(ip),
                   naming.host_veth(plan.cluster, ns, name), naming.host_veth_mac(ip), node.cni_ip,
                   ipaddress.IPv4Network(node.pod_cidr).prefixlen, node.mtu)


class Kubelet(Controller):
    name = "kubelet"
    component = "kubelet"
    kinds = (POD,)

    def __init__(self, store: Any, plan: Plan, workloads: Any, runner: netns.Runner, stop=None, *, recorder=None):
        super().__init__(store, stop, recorder=recorder)
        self.plan = plan
        self.workloads = workloads
        self.runner = runner
        self.nodes = {n.name for n in plan.nodes}
        self.ipam = {n.name: HostLocal(ipaddress.IPv4Network(n.pod_cidr)) for n in plan.nodes}
        self.running: dict[tuple, PodPlan] = {}

    # -- events ------------------------------------------------------------------------------
    def _node_of(self, pod: dict | None) -> str | None:
        if pod is None:
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        return node if node in self.nodes else None

    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        if own:
            return
        if self._node_of(new) or self._node_of(old):
            self.mark(key_of(new or old))

    def on_synced(self) -> None:
        """Adopt pods whose namespaces survived a restart of the control plane; remove orphans."""
        known = set()
        adopt = []
        for pod in self.caches[POD].values():
            node = self._node_of(pod)
            ip = (pod.get("status") or {}).get("podIP")
            if not node or not ip:
                continue
            p = pod_plan(self.plan, pod)
            known.add(p.netns)
            if netns.exists(p.netns) and not (pod["metadata"].get("deletionTimestamp")):
                self.ipam[node].allocated[ip] = f"{p.namespace}/{p.name}"
                adopt.append((pod, p))
        for pod, p in adopt:
            self._start_workload(pod, p)
            self.running[key_of(pod)] = p
        static = {p.netns for p in self.plan.pods}
        orphans = [n for n in netns.list_names(naming.cluster_prefix(self.plan.cluster) + "pod.")
                   if n not in known and n not in static]
        for name in orphans:
            netns.delete(name)
        if adopt or orphans:
            log.info("kubelet: adopted %d pods, removed %d orphaned namespaces", len(adopt), len(orphans))

    # -- reconcile in batches -------------------------------------------------------------------
    def _process_dirty(self) -> None:
        self.batches += 1
        keys = list(self._dirty)
        self._dirty.clear()
        create, remove = [], []
        for key in keys:
            pod = self.caches[POD].get(key)
            gone = pod is None or pod["metadata"].get("deletionTimestamp") or \
                (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if gone:
                if key in self.running:
                    remove.append((key, pod))
                elif pod is not None and pod["metadata"].get("deletionTimestamp"):
                    self._finalize(pod)
            elif key not in self.running and self._node_of(pod):
                create.append(pod)
        if remove:
            self._remove(remove)
        if create:
            self._create(create)

    def _remove(self, items: list[tuple[tuple, dict | None]]) -> None:
        plans = [self.running.pop(key) for key, _ in items]
        for key, _ in items:
            self.workloads.remove_pod("/".join(key))
        topology.remove_pods(self.plan, plans, self.runner)
        for p in plans:
            self.ipam[p.node].release(p.ip)
        for (key, pod), p in zip(items, plans):
            ref = pod or {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": key[0], "name": key[1]}}
            self.recorder.event(ref, "Normal", "Killing", f"Stopped the workload and removed the pod network {p.ip} "
                                                          f"({p.netns})")
            if pod is not None:
                self._finalize(pod)

    def _finalize(self, pod: dict) -> None:
        m = pod["metadata"]
        try:
            self.store.delete(POD, m.get("namespace"), m["name"], grace_seconds=0)
        except Exception as exc:  # already gone
            log.debug("finalize %s: %s", m["name"], exc)

    def _create(self, pods: list[dict]) -> None:
        plans = []
        for pod in pods:
            node = self._node_of(pod)
            try:
                ip = self.ipam[node].allocate(f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}")
            except RangeFull as exc:
                self.recorder.event(pod, "Warning", "FailedCreatePodSandBox", str(exc))
                continue
            plans.append((pod, pod_plan(self.plan, pod, ip)))
        try:
            topology.add_pods(self.plan, [p for _, p in plans], self.runner)
            failed: list = []
        except Exception:  # one bad pod must not stop the others: retry one by one
            log.exception("kubelet: batch of %d pods failed; retrying one by one", len(plans))
            topology.remove_pods(self.plan, [p for _, p in plans], self.runner)
            failed = []
            for pod, p in plans:
                try:
                    topology.add_pods(self.plan, [p], self.runner)
                except Exception as exc:  # noqa: BLE001
                    topology.remove_pods(self.plan, [p], self.runner)
                    failed.append((pod, p, exc))
        bad = {id(pod) for pod, _, _ in failed}
        for pod, p, exc in failed:
            self.ipam[p.node].release(p.ip)
            self.recorder.event(pod, "Warning", "FailedCreatePodSandBox", f"creating the pod network: {exc}")
            self.requeue_after(key_of(pod), 1.0)
        for pod, p in plans:
            if id(pod) in bad:
                continue
            self.running[key_of(pod)] = p
            self._start_workload(pod, p)
            self._report_running(pod, p)

    def _start_workload(self, pod: dict, p: PodPlan) -> None:
        key = f"{p.namespace}/{p.name}"
        if self.workloads.get(key) is None:
            self.workloads.add_pod(key, p.netns, p.name, pod_ports(pod), pod_version(pod))

    def _report_running(self, pod: dict, p: PodPlan) -> None:
        now = _now()
        node = self.plan.node(p.node)
        containers = (pod.get("spec") or {}).get("containers") or []
        status = {
            "phase": "Running",
            "hostIP": node.ip, "hostIPs": [{"ip": node.ip}],
            "podIP": p.ip, "podIPs": [{"ip": p.ip}],
            "startTime": now,
            "qosClass": "BestEffort",
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {"name": c.get("name", f"c{i}"), "image": c.get("image", ""), "imageID": "", "ready": True,
                 "started": True, "restartCount": 0, "containerID": f"testbed://{p.namespace}.{p.name}.{i}",
                 "state": {"running": {"startedAt": now}}, "lastState": {}}
                for i, c in enumerate(containers)
            ],
        }
        for _ in range(3):
            fresh = self.caches[POD].get(key_of(pod)) or pod
            try:
                written = self.store.update_status({**fresh, "status": status})
                self.written(POD, written)
                break
            except Exception as exc:  # noqa: BLE001  (conflict: retry with the latest copy)
                if getattr(exc, "code", None) == 404:
                    return
                try:
                    latest = self.store.get(POD, p.namespace, p.name)
                except Exception:  # noqa: BLE001
                    return
                self.caches[POD].written(latest)
        self.recorder.event(pod, "Normal", "Started", f"Started pod network {p.ip} on {p.node} and its workload "
                                                      f"(ports {', '.join(f'{n}/{t}' for n, t in pod_ports(pod))})")

    def reconcile(self, key) -> None:  # not used: _process_dirty handles keys in batches
        pass
