"""The Pod controller of the kubelet: the pods bound to one node (``node``), or to every node
of the cluster (``node=None``, as tests that run it in-process use it).

A burst of new pods becomes one ``topology.add_pods`` call (one netlink batch per pod
namespace and one per node) with addresses from the node's host-local range (``.2`` upward);
the containers are then handed to the runtime. Pods whose namespaces survived a restart of
the kubelet are adopted.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from typing import Any

from .. import hostsettings, naming, netns, topology
from ..controllers.base import Controller, key_of
from ..ipam import HostLocal, RangeFull
from ..plan import Plan, PodPlan
from . import etcfiles, sandbox
from .plan import pod_plan
from .runtime import POD, PodRuntime

log = logging.getLogger(__name__)
_LOCAL = "_kubelet"


class Kubelet(Controller):
    name = "kubelet"
    component = "kubelet"
    kinds = (POD,)

    def __init__(self, store: Any, plan: Plan, workloads: Any, runner: netns.Runner, stop=None, *, recorder=None,
                 backoff_base: float | None = None, node: str | None = None):
        super().__init__(store, stop, recorder=recorder)
        self.plan = plan
        self.workloads = workloads
        self.runner = runner
        self.node = node
        self.nodes = {node} if node else {n.name for n in plan.nodes}
        if node:  # as upstream's kubelet: only the pods bound to this node reach it
            self.field_selectors = {POD: f"spec.nodeName={node}"}
        self.ipam = {n.name: HostLocal(ipaddress.IPv4Network(n.pod_cidr)) for n in plan.nodes}
        self.running: dict[tuple, PodPlan] = {}
        self.uids: dict[tuple, str] = {}
        self.finished: set[str] = set()  # uids whose containers ran to the end (never recreated)
        self._done_lock = threading.Lock()
        self._done: list[tuple[tuple, str]] = []
        if backoff_base is None:
            try:
                backoff_base = float(os.environ.get("TESTBED_KUBELET_BACKOFF_SECONDS", "10"))
            except ValueError:
                backoff_base = 10.0
        self.runtime = PodRuntime(store, plan, workloads, self.recorder, self._pod_done, backoff_base=backoff_base)

    def run(self) -> None:
        self.runtime.start()
        try:
            super().run()
        finally:
            self.runtime.stop()

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

    def _apply(self, kind: str, typ: str, obj: dict | None) -> None:
        if kind == _LOCAL:
            self.mark(("", "\0done"))  # a wake-up: the finished pods are in self._done
            return
        super()._apply(kind, typ, obj)

    def _pod_done(self, key: tuple, uid: str) -> None:
        """Called on the runtime's thread when a pod's containers are all stopped for good."""
        with self._done_lock:
            self._done.append((key, uid))
        self._inbox.put((_LOCAL, "done", None))

    def on_synced(self) -> None:
        """Adopt pods whose namespaces survived a restart of the kubelet; remove orphans."""
        known = set()
        adopt = []
        for pod in self.caches[POD].values():
            node = self._node_of(pod)
            ip = (pod.get("status") or {}).get("podIP")
            if not node or not ip:
                continue
            p = pod_plan(self.plan, pod)
            known.add(p.netns)
            if netns.exists(p.netns) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self.ipam[node].allocated[ip] = f"{p.namespace}/{p.name}"
                adopt.append((pod, p, True))
                self.running[key_of(pod)] = p
                self.uids[key_of(pod)] = pod["metadata"].get("uid", "")
        if adopt:
            self.runtime.run_pods(adopt)
        static = {p.netns for p in self.plan.pods}
        orphans = [n for n in netns.list_names(naming.cluster_prefix(self.plan.cluster) + "pod.")
                   if n not in known and n not in static]
        if self.node and orphans:
            # another node's kubelet may be building a pod this one has not listed yet: only
            # the namespaces wired to this node's bridge are this kubelet's to remove
            mine = self._wired_here()
            orphans = [n for n in orphans if n in mine]
        for name in orphans:
            key = self._pod_of(name)
            if key:  # what a killed kubelet started for it before its status said so
                sandbox.remove(self.plan.cluster, *key)
            netns.delete(name)
            etcfiles.remove(name)
        if adopt or orphans:
            log.info("kubelet: adopted %d pods, removed %d orphaned namespaces", len(adopt), len(orphans))

    def _pod_of(self, netns_name: str) -> tuple[str, str] | None:
        """(namespace, name) of a pod namespace's name (None for the shortened long ones)."""
        ns, _, pod = netns_name[len(naming.cluster_prefix(self.plan.cluster) + "pod."):].partition(".")
        return (ns, pod) if naming.pod_netns(self.plan.cluster, ns, pod) == netns_name else None

    def _wired_here(self) -> set[str]:
        """Pod namespaces whose node-side veth is in this kubelet's node."""
        links = {name for _, name in self.runner.run_in(self.plan.node(self.node).netns, socket.if_nameindex)}
        out = set()
        for name in netns.list_names(naming.cluster_prefix(self.plan.cluster) + "pod."):
            key = self._pod_of(name)
            if key and naming.host_veth(self.plan.cluster, *key) in links:
                out.add(name)
        return out

    # -- reconcile in batches -------------------------------------------------------------------
    def _process_dirty(self) -> None:
        self.batches += 1
        keys = list(self._dirty)
        self._dirty.clear()
        with self._done_lock:
            done, self._done = self._done, []
        create = []
        for key in keys:
            pod = self.caches[POD].get(key)
            uid = pod["metadata"].get("uid") if pod else None
            if key in self.running:
                if pod is None or uid != self.uids.get(key):
                    self.runtime.force_stop(key)  # removed without grace (or replaced): stop now
                else:
                    self.runtime.update(pod)
                continue
            if pod is None:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                self._finalize(pod)  # never started here
            elif uid in self.finished or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            elif self._node_of(pod):
                create.append(pod)
        if done:
            self._remove(done)
        if create:
            self._create(create)

    def _remove(self, done: list[tuple[tuple, str]]) -> None:
        items = [(key, uid) for key, uid in done if key in self.running and self.uids.get(key) == uid]
        plans = [self.running.pop(key) for key, _ in items]
        for key, uid in items:
            self.uids.pop(key, None)
            self.finished.add(uid)
        if plans:
            topology.remove_pods(self.plan, plans, self.runner)
        for p in plans:
            self.ipam[p.node].release(p.ip)
            etcfiles.remove(p.netns)
        for (key, uid), p in zip(items, plans):
            pod = self.caches[POD].get(key)
            ref = pod or {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": key[0], "name": key[1]}}
            self.recorder.event(ref, "Normal", "Killing", f"Stopped the containers and removed the pod network "
                                                          f"{p.ip} ({p.netns})")
            if pod is not None and pod["metadata"].get("uid") == uid and pod["metadata"].get("deletionTimestamp"):
                self._finalize(pod)
            elif pod is not None and pod["metadata"].get("uid") != uid:
                self.mark(key)  # a new pod of the same name waits for this one's namespace

    def _finalize(self, pod: dict) -> None:
        m = pod["metadata"]
        try:
            self.store.delete(POD, m.get("namespace"), m["name"], grace_seconds=0, uid=m.get("uid"))
        except Exception as exc:  # already gone, or the API is away (a restart): then again later
            log.debug("finalize %s: %s", m["name"], exc)
            if not (400 <= (getattr(exc, "code", 0) or 0) < 500):
                self.requeue_after(key_of(pod), 1.0)

    _neigh_warned = False

    def _check_neighbour_limit(self, pods: int, example: dict | None) -> None:
        """The ARP table limits are host-wide: say so once when this many pods may exceed them."""
        if self._neigh_warned or example is None:
            return
        problem = hostsettings.neighbour_limit_problem(pods, len(self.plan.nodes), len(self.plan.externals))
        if problem:
            self._neigh_warned = True
            log.warning("kubelet: %s", problem)
            self.recorder.event(example, "Warning", "NeighbourTableLimit",
                                problem.replace("Pass --raise-neigh-limits", "Bring the cluster up with --raise-neigh-limits"))

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
        pods = len(self.running) + len(plans)
        if self.node is not None:  # the ARP limit is host-wide: as if every node had as many
            pods *= len(self.plan.nodes)
        self._check_neighbour_limit(pods, plans[0][0] if plans else None)
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
        started = []
        for pod, p in plans:
            if id(pod) in bad:
                continue
            self.running[key_of(pod)] = p
            self.uids[key_of(pod)] = pod["metadata"].get("uid", "")
            sandbox.write_etc(self.plan, pod, p.ip)
            started.append((pod, p, False))
        if started:
            self.runtime.run_pods(started)

    def reconcile(self, key) -> None:  # not used: _process_dirty handles keys in batches
        pass
