"""The ReplicaSet controller: keeps ``spec.replicas`` active pods matching the selector.

Like upstream's ``ReplicaSetController``: pods are adopted (an ``ownerReference`` with
``controller: true`` is added to matching pods that have no controller) and released (ours
removed when a pod stops matching); missing pods are created from the template as
``<replicaset>-<5 random chars>``; surplus pods are deleted in ``ActivePods`` order (see
``testbed.k8s.workloads.pods_to_delete``) with the pods' own grace period; status reports
replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for
``minReadySeconds``) and observedGeneration.  A deleted ReplicaSet's pods are deleted
(what the garbage collector does with background propagation).
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
from collections import defaultdict
from typing import Any

from testbed.k8s import selectors
from testbed.k8s import workloads as wl

from .base import Controller, key_of

log = logging.getLogger(__name__)
POD, RS = "Pod", "ReplicaSet"
MAX_BURST = 500  # pods created per reconcile (the rest right after: other keys get a turn)


def controller_ref(obj: dict) -> dict | None:
    for r in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def owner_reference(owner: dict) -> dict:
    return {"apiVersion": owner.get("apiVersion", "apps/v1"), "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _parse_time(ts: str | None) -> _dt.datetime | None:
    if not ts:
        return None
    try:
        return _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None


def is_available(pod: dict, min_ready: int, now: _dt.datetime | None = None) -> bool:
    if not wl.is_ready(pod):
        return False
    if min_ready <= 0:
        return True
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            t = _parse_time(c.get("lastTransitionTime"))
            now = now or _dt.datetime.now(_dt.timezone.utc)
            return t is not None and (now - t).total_seconds() >= min_ready
    return False


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    component = "replicaset-controller"
    kinds = (RS, POD)

    def __init__(self, store: Any, stop=None, *, recorder=None, max_burst: int = MAX_BURST):
        super().__init__(store, stop, recorder=recorder)
        self.max_burst = max_burst
        self._pods_by_ns: dict[str, dict[str, dict]] = defaultdict(dict)
        self._gone: dict[tuple, str] = {}  # deleted ReplicaSets -> uid (their pods are deleted)
        self._uid_key: dict[str, tuple] = {}

    # -- events ------------------------------------------------------------------------------
    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        if kind == RS:
            obj = new or old
            key = key_of(obj)
            if new is None:
                self._gone[key] = obj["metadata"].get("uid", "")
                self._uid_key.pop(obj["metadata"].get("uid", ""), None)
            else:
                self._uid_key[new["metadata"].get("uid", "")] = key
            if not own:
                self.mark(key)
            return
        obj = new or old
        ns, name = key_of(obj)
        if new is None:
            self._pods_by_ns[ns].pop(name, None)
        else:
            self._pods_by_ns[ns][name] = new
        if own:
            return
        for p in (old, new):
            if p is None:
                continue
            ref = controller_ref(p)
            if ref is not None:
                if ref.get("kind") == RS and ref.get("uid") in self._uid_key:
                    self.mark(self._uid_key[ref["uid"]])
            elif new is not None and wl.is_active(new):  # an orphan: a candidate for adoption
                labels = (new["metadata"].get("labels") or {})
                for rs in self.caches[RS].values():
                    if rs["metadata"].get("namespace") == ns and self._selector(rs).matches(labels):
                        self.mark(key_of(rs))

    @staticmethod
    def _selector(rs: dict) -> selectors.Selector:
        return selectors.from_label_selector((rs.get("spec") or {}).get("selector"))

    # -- reconcile ---------------------------------------------------------------------------
    def reconcile(self, key) -> None:
        rs = self.caches[RS].get(key)
        if rs is None:
            uid = self._gone.pop(key, None)
            if uid:
                self._delete_owned(key[0], uid)
            return
        self._gone.pop(key, None)
        ns = key[0]
        uid = rs["metadata"]["uid"]
        sel = self._selector(rs)
        mine, adopt, release = [], [], []
        for pod in list(self._pods_by_ns.get(ns, {}).values()):
            ref = controller_ref(pod)
            labels = pod["metadata"].get("labels") or {}
            matches = not sel.empty() and sel.matches(labels)
            if ref is not None and ref.get("uid") == uid:
                (mine if matches else release).append(pod)
            elif ref is None and matches and wl.is_active(pod) and not rs["metadata"].get("deletionTimestamp"):
                adopt.append(pod)
        for pod in release:
            self._set_owner(pod, None, uid)
        for pod in adopt:
            got = self._set_owner(pod, rs, uid)
            if got is not None:
                mine.append(got)
        active = [p for p in mine if wl.is_active(p)]
        want = int((rs.get("spec") or {}).get("replicas", 1))
        if rs["metadata"].get("deletionTimestamp"):
            want = len(active)
        diff = want - len(active)
        if diff > 0:
            n = min(diff, self.max_burst)
            for _ in range(n):
                pod = self._create_pod(rs)
                if pod is not None:
                    active.append(pod)
            if diff > n:
                self.requeue_after(key, 0.0)
        elif diff < 0:
            for pod in wl.pods_to_delete(active, -diff):
                self._delete_pod(pod)
                active.remove(pod)
        self._write_status(rs, active)

    def _create_pod(self, rs: dict) -> dict | None:
        tmpl = (rs.get("spec") or {}).get("template") or {}
        tmeta = tmpl.get("metadata") or {}
        meta = {"generateName": rs["metadata"]["name"] + "-", "namespace": rs["metadata"]["namespace"],
                "labels": dict(tmeta.get("labels") or {}), "ownerReferences": [owner_reference(rs)]}
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl.get("spec") or {})}
        try:
            created = self.store.create(pod)
        except Exception as exc:  # noqa: BLE001
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {exc}")
            raise
        self.written(POD, created)
        self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        return created

    def _delete_pod(self, pod: dict) -> None:
        m = pod["metadata"]
        try:
            out = self.store.delete(POD, m["namespace"], m["name"], uid=m.get("uid"))
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", None) == 404:
                return
            raise
        if (out.get("metadata") or {}).get("deletionTimestamp") and out["metadata"].get("resourceVersion"):
            try:
                self.written(POD, self.store.get(POD, m["namespace"], m["name"]))
            except Exception:  # noqa: BLE001 - already gone
                self.deleted(POD, key_of(pod))
        else:
            self.deleted(POD, key_of(pod))
        ref = controller_ref(pod)
        rs = {"apiVersion": "apps/v1", "kind": RS, "metadata": {"namespace": m["namespace"],
                                                                "name": (ref or {}).get("name", ""),
                                                                "uid": (ref or {}).get("uid", "")}}
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

    def _delete_owned(self, ns: str, uid: str) -> None:
        for pod in list(self._pods_by_ns.get(ns, {}).values()):
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") == uid and not pod["metadata"].get("deletionTimestamp"):
                self._delete_pod(pod)

    def _set_owner(self, pod: dict, rs: dict | None, uid: str) -> dict | None:
        refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if rs is not None:
            refs.append(owner_reference(rs))
        m = pod["metadata"]
        try:
            out = self.store.patch(POD, m["namespace"], m["name"], {"metadata": {
                "ownerReferences": refs or None, "resourceVersion": m.get("resourceVersion")}})
        except Exception as exc:  # noqa: BLE001 - changed meanwhile: the next event brings us back
            log.debug("adopt/release %s: %s", m["name"], exc)
            return None
        self.written(POD, out)
        return out

    def _write_status(self, rs: dict, active: list[dict]) -> None:
        spec = rs.get("spec") or {}
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in tlabels.items())),
            "readyReplicas": sum(1 for p in active if wl.is_ready(p)),
            "availableReplicas": sum(1 for p in active if is_available(p, min_ready)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        old = rs.get("status") or {}
        if all(old.get(k, 0) == v for k, v in status.items()):
            return
        if min_ready > 0 and status["readyReplicas"] > status["availableReplicas"]:
            self.requeue_after(key_of(rs), float(min_ready))
        try:
            out = self.store.update_status({**rs, "status": {**old, **status}})
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", None) in (404,):
                return
            raise
        self.written(RS, out)
