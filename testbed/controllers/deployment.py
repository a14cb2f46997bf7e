"""The Deployment controller: a ReplicaSet per pod-template hash, RollingUpdate or Recreate.

As upstream's ``DeploymentController`` (decisions in ``testbed.k8s.workloads``):

* the new ReplicaSet is ``<deployment>-<pod-template-hash>`` with the hash label in its
  selector, template and pods; it gets ``deployment.kubernetes.io/revision`` = the highest
  revision + 1 (a ReplicaSet that becomes new again, after ``rollout undo``, is bumped and
  its old revision kept in ``deployment.kubernetes.io/revision-history``); the Deployment
  carries the revision of its new ReplicaSet;
* RollingUpdate scales within ``desired + maxSurge`` pods and keeps ``desired -
  maxUnavailable`` available pods (readiness-gated through the ReplicaSets' available counts);
  Recreate scales the old ReplicaSets to 0, waits until their pods are gone, then scales up;
* a Deployment whose only change is ``replicas`` scales its new ReplicaSet;
* old ReplicaSets at 0 beyond ``revisionHistoryLimit`` are deleted; ``spec.paused`` stops it;
* status: replicas, updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas,
  observedGeneration, conditions Available and Progressing (upstream reasons and messages).
  A deleted Deployment's ReplicaSets are deleted (garbage collection).
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
from .replicaset import controller_ref, owner_reference

log = logging.getLogger(__name__)
DEP, RS, POD = "Deployment", "ReplicaSet", "Pod"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DeploymentController(Controller):
    name = "deployment-controller"
    component = "deployment-controller"
    kinds = (DEP, RS, POD)

    def __init__(self, store: Any, stop=None, *, recorder=None):
        super().__init__(store, stop, recorder=recorder)
        self._rs_by_owner: dict[str, dict[tuple, dict]] = defaultdict(dict)  # deployment uid -> RSs
        self._dep_uid: dict[str, tuple] = {}
        self._rs_uid: dict[str, str] = {}    # RS uid -> owning deployment uid
        self._pods_by_rs: dict[str, set] = defaultdict(set)  # RS uid -> pod keys (for Recreate)
        self._gone: dict[tuple, str] = {}

    # -- events ------------------------------------------------------------------------------
    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        obj = new or old
        if kind == DEP:
            uid = obj["metadata"].get("uid", "")
            if new is None:
                self._gone[key_of(obj)] = uid
                self._dep_uid.pop(uid, None)
            else:
                self._dep_uid[uid] = key_of(obj)
            if not own:
                self.mark(key_of(obj))
        elif kind == RS:
            uid = obj["metadata"].get("uid", "")
            for o in (old, new):
                ref = controller_ref(o) if o else None
                if ref and ref.get("kind") == DEP:
                    if o is new:
                        self._rs_by_owner[ref["uid"]][key_of(o)] = o
                        self._rs_uid[uid] = ref["uid"]
                    else:
                        self._rs_by_owner[ref["uid"]].pop(key_of(o), None)
            if new is None:
                self._rs_uid.pop(uid, None)
            ref = controller_ref(obj)
            if not own and ref and ref.get("uid") in self._dep_uid:
                self.mark(self._dep_uid[ref["uid"]])
            elif not own and ref is None and new is not None:
                for dep in self.caches[DEP].values():  # an orphan ReplicaSet: adoption
                    if dep["metadata"].get("namespace") == new["metadata"].get("namespace") and \
                            selectors.from_label_selector((dep.get("spec") or {}).get("selector")).matches(
                                new["metadata"].get("labels") or {}):
                        self.mark(key_of(dep))
        else:  # Pod: only Recreate waits for pods
            for o in (old, new):
                ref = controller_ref(o) if o else None
                if ref and ref.get("kind") == RS:
                    if new is None:
                        self._pods_by_rs[ref["uid"]].discard(key_of(o))
                    else:
                        self._pods_by_rs[ref["uid"]].add(key_of(o))
            if new is None and not own:
                ref = controller_ref(old)
                dep_uid = self._rs_uid.get((ref or {}).get("uid", ""))
                if dep_uid in self._dep_uid:
                    dep = self.caches[DEP].get(self._dep_uid[dep_uid])
                    if dep and ((dep.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate":
                        self.mark(key_of(dep))

    # -- reconcile ---------------------------------------------------------------------------
    def reconcile(self, key) -> None:
        dep = self.caches[DEP].get(key)
        if dep is None:
            uid = self._gone.pop(key, None)
            if uid:
                for rs in list(self._rs_by_owner.pop(uid, {}).values()):
                    self._delete_rs(rs)
            return
        self._gone.pop(key, None)
        if dep["metadata"].get("deletionTimestamp"):
            return
        spec = dep.get("spec") or {}
        uid = dep["metadata"]["uid"]
        self._adopt(dep)
        rss = [r for r in self._rs_by_owner.get(uid, {}).values() if not r["metadata"].get("deletionTimestamp")]
        template = spec.get("template") or {}
        collisions = (dep.get("status") or {}).get("collisionCount")
        h = wl.template_hash(template, collisions)
        new = next((r for r in rss if wl.templates_equal(((r.get("spec") or {}).get("template") or {}), template)),
                   None)
        olds = [r for r in rss if r is not new]
        if spec.get("paused"):
            self._write_status(dep, new, olds)
            return
        desired = int(spec.get("replicas", 1))
        strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
        max_rev = max((wl.revision_of(r) for r in olds), default=0)
        if new is not None and wl.revision_of(new) <= max_rev:
            new = self._bump_revision(new, max_rev + 1)
        if strategy == "Recreate":
            views = [self._view(r) for r in olds]
            changes, create = wl.recreate_step(desired, self._view(new) if new else None, views)
            if create:
                new = self._create_rs(dep, h, max_rev + 1, desired)
        else:
            if new is None:
                surge, unavail = wl.resolve_fenceposts(
                    ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", "25%"),
                    ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%"), desired)
                total = sum(int((r.get("spec") or {}).get("replicas", 0)) for r in olds)
                start = desired if not olds or total == 0 else max(0, min(desired, desired + surge - total))
                new = self._create_rs(dep, h, max_rev + 1, start)
            surge, unavail = wl.max_surge(dep), wl.max_unavailable(dep)
            if desired == 0:
                surge, unavail = 0, 0
            changes = wl.rolling_step(desired, surge, max(unavail, 0) if desired else 0, self._view(new),
                                      [self._view(r) for r in olds])
        by_name = {r["metadata"]["name"]: r for r in rss + ([new] if new is not None and new not in rss else [])}
        for name, n in changes.items():
            rs = by_name.get(name)
            if rs is not None:
                self._scale(dep, rs, n)
        self._cleanup(dep, olds)
        self._write_status(dep, self._fresh(new), [self._fresh(r) for r in olds])

    def _fresh(self, rs: dict | None) -> dict | None:
        if rs is None:
            return None
        return self.caches[RS].get(key_of(rs)) or rs

    def _view(self, rs: dict) -> wl.RSView:
        rs = self._fresh(rs)
        st = rs.get("status") or {}
        return wl.RSView(rs["metadata"]["name"], int((rs.get("spec") or {}).get("replicas", 0)),
                         int(st.get("availableReplicas") or 0), rs["metadata"].get("creationTimestamp") or "",
                         len(self._pods_by_rs.get(rs["metadata"].get("uid", ""), ())))

    def _adopt(self, dep: dict) -> None:
        sel = selectors.from_label_selector((dep.get("spec") or {}).get("selector"))
        if sel.empty():
            return
        for rs in list(self.caches[RS].values()):
            if rs["metadata"].get("namespace") != dep["metadata"]["namespace"] or controller_ref(rs) is not None:
                continue
            if sel.matches(rs["metadata"].get("labels") or {}) and not rs["metadata"].get("deletionTimestamp"):
                m = rs["metadata"]
                out = self.store.patch(RS, m["namespace"], m["name"], {"metadata": {
                    "ownerReferences": (m.get("ownerReferences") or []) + [owner_reference(dep)],
                    "resourceVersion": m.get("resourceVersion")}})
                self.written(RS, out)

    def _create_rs(self, dep: dict, h: str, revision: int, replicas: int) -> dict:
        spec = dep.get("spec") or {}
        tmpl = copy.deepcopy(spec.get("template") or {})
        tmeta = tmpl.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), wl.HASH_LABEL: h}
        sel = copy.deepcopy(spec.get("selector") or {})
        sel["matchLabels"] = {**(sel.get("matchLabels") or {}), wl.HASH_LABEL: h}
        name = f"{dep['metadata']['name']}-{h}"
        ann = {wl.REVISION: str(revision), wl.DESIRED_REPLICAS: str(spec.get("replicas", 1)),
               wl.MAX_REPLICAS: str(int(spec.get("replicas", 1)) + wl.max_surge(dep))}
        cause = (dep["metadata"].get("annotations") or {}).get(wl.CHANGE_CAUSE)
        if cause:
            ann[wl.CHANGE_CAUSE] = cause
        rs = {"apiVersion": "apps/v1", "kind": RS,
              "metadata": {"name": name, "namespace": dep["metadata"]["namespace"], "labels": dict(tmeta["labels"]),
                           "annotations": ann, "ownerReferences": [owner_reference(dep)]},
              "spec": {"replicas": replicas, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                       "selector": sel, "template": tmpl}}
        try:
            out = self.store.create(rs)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", None) == 409:  # a hash collision: count it, the next sync picks a new name
                st = dict(dep.get("status") or {})
                st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
                self.written(DEP, self.store.update_status({**dep, "status": st}))
            raise
        self.written(RS, out)
        self.recorder.event(dep, "Normal", "ScalingReplicaSet",
                            f"Scaled up replica set {name} from 0 to {replicas}" if replicas else
                            f"Created new replica set {name}")
        return out

    def _bump_revision(self, rs: dict, revision: int) -> dict:
        m = rs["metadata"]
        ann = dict(m.get("annotations") or {})
        old = ann.get(wl.REVISION)
        hist = [x for x in (ann.get(wl.REVISION_HISTORY) or "").split(",") if x]
        if old:
            hist.append(old)
        ann[wl.REVISION] = str(revision)
        ann[wl.REVISION_HISTORY] = ",".join(hist)
        out = self.store.patch(RS, m["namespace"], m["name"], {"metadata": {"annotations": ann}})
        self.written(RS, out)
        return out

    def _scale(self, dep: dict, rs: dict, n: int) -> None:
        rs = self._fresh(rs)
        m = rs["metadata"]
        cur = int((rs.get("spec") or {}).get("replicas", 0))
        if cur == n:
            return
        spec = dep.get("spec") or {}
        ann = {wl.DESIRED_REPLICAS: str(spec.get("replicas", 1)),
               wl.MAX_REPLICAS: str(int(spec.get("replicas", 1)) + wl.max_surge(dep))}
        out = self.store.patch(RS, m["namespace"], m["name"], {"metadata": {"annotations": ann},
                                                               "spec": {"replicas": n}})
        self.written(RS, out)
        self.recorder.event(dep, "Normal", "ScalingReplicaSet",
                            f"Scaled {'up' if n > cur else 'down'} replica set {m['name']} from {cur} to {n}")

    def _delete_rs(self, rs: dict) -> None:
        m = rs["metadata"]
        try:
            self.store.delete(RS, m["namespace"], m["name"])
            self.deleted(RS, key_of(rs))
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", None) != 404:
                raise

    def _cleanup(self, dep: dict, olds: list[dict]) -> None:
        limit = (dep.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        done = [r for r in (self._fresh(o) for o in olds)
                if int((r.get("spec") or {}).get("replicas", 0)) == 0 and
                int((r.get("status") or {}).get("replicas") or 0) == 0 and
                not self._pods_by_rs.get(r["metadata"].get("uid", ""))]
        done.sort(key=wl.revision_of)
        for rs in done[:max(0, len(done) - int(limit))]:
            self._delete_rs(rs)

    def _write_status(self, dep: dict, new: dict | None, olds: list[dict]) -> None:
        spec = dep.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        every = ([new] if new else []) + [o for o in olds if o]
        st = lambda r, k: int(((r or {}).get("status") or {}).get(k) or 0)  # noqa: E731
        replicas = sum(st(r, "replicas") for r in every)
        updated = st(new, "replicas")
        ready = sum(st(r, "readyReplicas") for r in every)
        available = sum(st(r, "availableReplicas") for r in every)
        old = dep.get("status") or {}
        conds = {c.get("type"): c for c in old.get("conditions") or []}
        now = _now()

        def cond(t: str, ok: bool, reason: str, msg: str) -> dict:
            prev = conds.get(t) or {}
            s = "True" if ok else "False"
            same = prev.get("status") == s
            return {"type": t, "status": s, "lastUpdateTime": prev.get("lastUpdateTime") if same and
                    prev.get("reason") == reason else now,
                    "lastTransitionTime": prev.get("lastTransitionTime") if same else now,
                    "reason": reason, "message": msg}
        avail_ok = available >= desired - wl.max_unavailable(dep)
        new_name = (new or {}).get("metadata", {}).get("name", "")
        complete = new is not None and updated == desired and replicas == desired and available >= desired and \
            int((new.get("spec") or {}).get("replicas", 0)) == desired
        conditions = [
            cond("Available", avail_ok, "MinimumReplicasAvailable" if avail_ok else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if avail_ok else
                 "Deployment does not have minimum availability."),
            cond("Progressing", True, "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                 f'ReplicaSet "{new_name}" has successfully progressed.' if complete else
                 f'ReplicaSet "{new_name}" is progressing.'),
        ]
        status = {"observedGeneration": dep["metadata"].get("generation", 1), "replicas": replicas,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                  "unavailableReplicas": max(desired - available, 0) if replicas or desired else 0,
                  "conditions": conditions}
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if status[k] == 0 and k not in old:
                status.pop(k)  # omitempty, as the real API shows it
        rev = str(wl.revision_of(new)) if new else None
        ann = dep["metadata"].get("annotations") or {}
        if rev and ann.get(wl.REVISION) != rev:
            m = dep["metadata"]
            dep = self.store.patch(DEP, m["namespace"], m["name"], {"metadata": {"annotations": {wl.REVISION: rev}}})
            self.written(DEP, dep)
        if _strip_times(old) == _strip_times(status):
            return
        out = self.store.update_status({**dep, "status": status})
        self.written(DEP, out)


def _strip_times(st: dict) -> dict:
    st = dict(st)
    st["conditions"] = [{k: v for k, v in c.items() if k not in ("lastUpdateTime", "lastTransitionTime")}
                        for c in st.get("conditions") or []]
    return st
