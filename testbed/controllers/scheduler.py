"""The scheduler: binds pods without ``spec.nodeName`` to a node chosen by
:func:`testbed.k8s.scheduler.schedule` (filters, then fewest pods, random tie-break).

Binding is one write through the store's ``pods/binding`` (``Store.bind``): ``spec.nodeName``
and the ``PodScheduled=True`` condition together, with the pod's uid and resourceVersion as
preconditions, as upstream's BindingREST does. The choice is applied to the local pod cache at once, so pods
scheduled in the same batch see each other (like the scheduler cache's "assumed" pods).

A pod that fits nowhere gets ``PodScheduled=False`` (reason ``Unschedulable``) and a
``FailedScheduling`` Warning event with upstream's message (``0/3 nodes are available:
...``); it is retried when a node is added or changed, or when a pod goes away. Only pods
whose ``spec.schedulerName`` is this scheduler's name (default ``default-scheduler``, or
unset) are handled. Successful binds record ``Scheduled``: ``Successfully assigned
NS/NAME to NODE``.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections import Counter
from typing import Any, Callable, Mapping

from testbed.k8s import scheduler as sched
from testbed.k8s.conditions import with_condition

from .base import Controller, Key, key_of
from .events import rfc3339

POD, NODE = "Pod", "Node"


def _spec(o: Mapping) -> Mapping:
    return o.get("spec") or {}


def _meta(o: Mapping) -> Mapping:
    return o.get("metadata") or {}


class SchedulerController(Controller):
    name = "scheduler"
    component = "default-scheduler"
    kinds = (POD, NODE)

    def __init__(self, store: Any, stop=None, *, recorder=None, scheduler_name: str = "default-scheduler",
                 rng: random.Random | None = None,
                 clock: Callable[[], _dt.datetime] = lambda: _dt.datetime.now(_dt.timezone.utc)):
        super().__init__(store, stop, recorder=recorder)
        self.scheduler_name = scheduler_name
        self.rng = rng or random.Random()
        self.clock = clock
        self._unschedulable: set[Key] = set()
        self.bound = 0
        # the scheduler cache's pod counts, kept as pods change rather than recounted per pod
        self._node_of: dict[Key, str] = {}
        self._counts: Counter = Counter()

    def _mine(self, pod: Mapping) -> bool:
        spec = _spec(pod)
        if spec.get("nodeName") or _meta(pod).get("deletionTimestamp"):
            return False
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return False
        return (spec.get("schedulerName") or "default-scheduler") == self.scheduler_name

    def _retry_unschedulable(self) -> None:
        for k in self._unschedulable:
            self.mark(k)

    def _recount(self, key: Key, pod: Mapping | None) -> None:
        node = sched.pod_node(pod) if pod is not None else None
        was = self._node_of.get(key)
        if was == node:
            return
        if was is not None:
            self._counts[was] -= 1
            if self._counts[was] <= 0:
                del self._counts[was]
        if node is None:
            self._node_of.pop(key, None)
        else:
            self._node_of[key] = node
            self._counts[node] += 1

    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        if kind == POD:
            self._recount(key_of(new if new is not None else old), new)
        if own:
            return
        if kind == NODE:
            self._retry_unschedulable()
            return
        if new is None:
            self._unschedulable.discard(key_of(old))
            if old is not None and _spec(old).get("nodeName"):
                self._retry_unschedulable()  # capacity freed
            return
        if self._mine(new):
            self.mark(key_of(new))
        else:
            self._unschedulable.discard(key_of(new))
            if old is not None and _spec(old).get("nodeName") and \
                    (new.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self._retry_unschedulable()

    def reconcile(self, key: Key) -> None:
        pod = self.caches[POD].get(key)
        if pod is None or not self._mine(pod):
            self._unschedulable.discard(key)
            return
        nodes = list(self.caches[NODE].values())
        now = rfc3339(self.clock())
        try:
            counts = self._counts
            if key in self._node_of:  # not counted against itself
                counts = Counter(counts)
                counts[self._node_of[key]] -= 1
            node = sched.schedule(pod, nodes, rng=self.rng, counts=counts)
        except sched.Unschedulable as e:
            self._unschedulable.add(key)
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": e.reason}
            status = with_condition(pod.get("status"), cond, now)
            if status != (pod.get("status") or {}):
                out = self.store.update_status({**pod, "status": status})
                self.written(POD, out)
                pod = out
            self.recorder.warning(pod, "FailedScheduling", e.reason)
            return
        self._unschedulable.discard(key)
        # one write, as upstream's binding: spec.nodeName and PodScheduled=True together, with
        # the pod's uid and resourceVersion as preconditions
        m = _meta(pod)
        bound = self.store.bind(key[0], key[1], node, uid=m.get("uid"), resource_version=m.get("resourceVersion"))
        self.written(POD, bound)
        self.bound += 1
        self.recorder.normal(bound, "Scheduled", f"Successfully assigned {key[0]}/{key[1]} to {node}")
