"""The ReplicaSet and Deployment controllers' decisions as pure functions.

Follows ``pkg/controller/replicaset`` and ``pkg/controller/deployment`` (``rolling.go``,
``recreate.go``, ``sync.go``, ``util/deployment_util.go``):

* :func:`template_hash`: the ``pod-template-hash`` label (FNV-32a of the template, plus the
  collision count, safe-encoded);
* :func:`resolve_fenceposts`: maxSurge rounds percentages up, maxUnavailable down, and both
  zero becomes maxUnavailable 1;
* :func:`rolling_step`: one sync of a RollingUpdate: scale the new ReplicaSet up within
  ``desired + maxSurge`` (and return), else scale old ReplicaSets down: first their unhealthy
  pods, then available ones while ``available >= desired - maxUnavailable`` holds;
* :func:`recreate_step`: old ReplicaSets to 0, wait until their pods are gone, then the new one;
* :func:`pods_to_delete`: which pods a ReplicaSet removes first (``ActivePods`` ordering);
* :func:`rollout_status`: ``kubectl rollout status`` wording.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(s: str) -> str:
    """``rand.SafeEncodeString``: map each character onto consonants and digits (no vowels)."""
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in s)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _strip_hash(template: Mapping) -> dict:
    t = json.loads(json.dumps(template or {}))
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def template_hash(template: Mapping, collision_count: int | None = None) -> str:
    data = json.dumps(_strip_hash(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def templates_equal(a: Mapping, b: Mapping) -> bool:
    return _strip_hash(a) == _strip_hash(b)


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        if value.endswith("%"):
            pct = int(value[:-1])
            x = pct * total / 100
            return math.ceil(x) if round_up else math.floor(x)
        return int(value)
    return int(value)


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    surge = int_or_percent(max_surge, desired, True)
    unavailable = int_or_percent(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # otherwise the rollout could never progress
    return surge, unavailable


@dataclass
class RSView:
    """What the deployment controller knows of one ReplicaSet."""

    name: str
    replicas: int            # spec.replicas
    available: int = 0       # status.availableReplicas
    created: str = ""        # creationTimestamp, for oldest-first ordering
    pods: int = 0            # pods that still exist (also terminating), for Recreate


def rolling_step(desired: int, surge: int, unavailable: int, new: RSView, olds: list[RSView]) -> dict[str, int]:
    """One RollingUpdate sync: ``{replicaset name: new spec.replicas}`` for what changes."""
    all_spec = new.replicas + sum(o.replicas for o in olds)
    # reconcileNewReplicaSet
    if new.replicas > desired:
        return {new.name: desired}
    if new.replicas < desired:
        max_total = desired + surge
        if all_spec < max_total:
            up = min(max_total - all_spec, desired - new.replicas)
            if up > 0:
                return {new.name: new.replicas + up}
    # reconcileOldReplicaSets
    if sum(o.replicas for o in olds) == 0:
        return {}
    min_available = desired - unavailable
    new_unavailable = new.replicas - new.available
    max_scaled_down = all_spec - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    targets = {o.name: o.replicas for o in olds}
    ordered = sorted(olds, key=lambda o: (o.created, o.name))
    # cleanupUnhealthyReplicas: old pods that are not available go first
    remaining = max_scaled_down
    for o in ordered:
        if remaining <= 0:
            break
        unhealthy = targets[o.name] - o.available
        if targets[o.name] == 0 or unhealthy <= 0:
            continue
        d = min(remaining, unhealthy)
        targets[o.name] -= d
        remaining -= d
    # scaleDownOldReplicaSetsForRollingUpdate: available ones, keeping minAvailable
    available = new.available + sum(min(o.available, targets[o.name]) for o in olds)
    if available > min_available:
        todo = available - min_available
        for o in ordered:
            if todo <= 0:
                break
            if targets[o.name] == 0:
                continue
            d = min(targets[o.name], todo)
            targets[o.name] -= d
            todo -= d
    return {o.name: targets[o.name] for o in olds if targets[o.name] != o.replicas}


def recreate_step(desired: int, new: RSView | None, olds: list[RSView]) -> tuple[dict[str, int], bool]:
    """One Recreate sync: (changes, create_new). Old ReplicaSets go to 0 first; the new one is
    created/scaled only when no pod of an old ReplicaSet exists any more (not even terminating)."""
    down = {o.name: 0 for o in olds if o.replicas > 0}
    if down:
        return down, False
    if any(o.pods > 0 for o in olds):
        return {}, False
    if new is None:
        return {}, True
    if new.replicas != desired:
        return {new.name: desired}, False
    return {}, False


def max_unavailable(dep: Mapping) -> int:
    spec = dep.get("spec") or {}
    strategy = spec.get("strategy") or {}
    desired = int(spec.get("replicas", 1))
    if strategy.get("type") != "RollingUpdate" or desired == 0:
        return 0
    ru = strategy.get("rollingUpdate") or {}
    _, u = resolve_fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), desired)
    return min(u, desired)


def max_surge(dep: Mapping) -> int:
    spec = dep.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0
    ru = strategy.get("rollingUpdate") or {}
    s, _ = resolve_fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), int(spec.get("replicas", 1)))
    return s


# --- pods ---------------------------------------------------------------------------------


def is_active(pod: Mapping) -> bool:
    """``FilterActivePods``: not terminating, not Succeeded/Failed."""
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def is_ready(pod: Mapping) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _restarts(pod: Mapping) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def pods_to_delete(pods: Iterable[Mapping], n: int) -> list[Mapping]:
    """The *n* pods a ReplicaSet deletes first: unscheduled < scheduled, Pending < Unknown <
    Running, not ready < ready, more restarts first, newer first (``controller.ActivePods``)."""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}

    def key(p: Mapping):
        st = p.get("status") or {}
        return (1 if (p.get("spec") or {}).get("nodeName") else 0, phase_rank.get(st.get("phase"), 0),
                1 if is_ready(p) else 0, -_restarts(p),
                _neg_time((p.get("metadata") or {}).get("creationTimestamp") or ""),
                (p.get("metadata") or {}).get("name", ""))
    return sorted(pods, key=key)[:max(n, 0)]


def _neg_time(ts: str) -> tuple:
    return tuple(-ord(ch) for ch in ts)  # newer (larger) timestamps sort first


# --- status / CLI -------------------------------------------------------------------------


def rollout_status(dep: Mapping) -> tuple[str, bool]:
    """``kubectl rollout status``'s message for a Deployment and whether it is done."""
    name = (dep.get("metadata") or {}).get("name", "")
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    if int((dep.get("metadata") or {}).get("generation") or 0) > int(st.get("observedGeneration") or 0):
        return "Waiting for deployment spec update to be observed...", False
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return f'deployment "{name}" exceeded its progress deadline', True
    desired = int(spec.get("replicas", 1))
    updated = int(st.get("updatedReplicas") or 0)
    replicas = int(st.get("replicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    if updated < desired:
        return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {desired} new replicas '
                f"have been updated..."), False
    if replicas > updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old replicas are '
                f"pending termination..."), False
    if available < updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated replicas '
                f"are available..."), False
    return f'deployment "{name}" successfully rolled out', True


def revision_of(obj: Mapping) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0
