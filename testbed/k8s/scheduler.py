"""A tiny scheduler: filter nodes (predicates), score the rest (priorities), pick the
best, breaking ties randomly (see shared/seeds/002: 预选 → 优选 → 随机选一个).

Filters (each named after the upstream plugin whose wording its reason uses):

* NodeUnschedulable: ``spec.unschedulable`` nodes are skipped (unless the pod tolerates
  ``node.kubernetes.io/unschedulable:NoSchedule``);
* NodeName: ``spec.nodeName``, when set, must name the node;
* NodeAffinity: ``spec.nodeSelector`` must match the node's labels;
* NodeResourcesFit: the node runs fewer than ``status.allocatable.pods`` (default 110)
  non-terminal pods.

A node is rejected by the first filter it fails (upstream's plugin order).
Score: fewest pods on the node.  When no node fits, :class:`Unschedulable` carries the
upstream-style message ``0/3 nodes are available: 1 Too many pods, 2 node(s) didn't
match Pod's node affinity/selector.``
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Iterable, Mapping

DEFAULT_MAX_PODS = 110

REASON_NODE_NAME = "node(s) didn't match the requested node name"
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_SELECTOR = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"
NO_NODES = "no nodes available to schedule pods"


class Unschedulable(Exception):
    def __init__(self, reason: str, num_nodes: int = 0, reasons: Mapping[str, int] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.num_nodes = num_nodes
        self.reasons = dict(reasons or {})


def _meta(o: Mapping) -> Mapping:
    return o.get("metadata") or {}


def _spec(o: Mapping) -> Mapping:
    return o.get("spec") or {}


def max_pods(node: Mapping) -> int:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    v = alloc.get("pods")
    try:
        return int(v) if v is not None else DEFAULT_MAX_PODS
    except (TypeError, ValueError):
        return DEFAULT_MAX_PODS


def _tolerates_unschedulable(pod: Mapping) -> bool:
    for t in _spec(pod).get("tolerations") or []:
        key_ok = t.get("key") in (None, "", "node.kubernetes.io/unschedulable") if t.get("operator") == "Exists" else t.get("key") == "node.kubernetes.io/unschedulable"
        effect_ok = t.get("effect") in (None, "", "NoSchedule")
        if key_ok and effect_ok:
            return True
    return False


def pod_counts(pods: Iterable[Mapping]) -> Counter:
    """Non-terminal pods per node (what the scheduler cache counts)."""
    c: Counter = Counter()
    for p in pods:
        node = pod_node(p)
        if node:
            c[node] += 1
    return c


def filter_node(pod: Mapping, node: Mapping, count: int) -> str | None:
    """Return why ``node`` cannot run ``pod`` (None if it can)."""
    spec = _spec(pod)
    name = _meta(node).get("name")
    # plugin order of the default profile: NodeUnschedulable, NodeName, NodeAffinity, NodeResourcesFit
    if _spec(node).get("unschedulable") and not _tolerates_unschedulable(pod):
        return REASON_UNSCHEDULABLE
    if spec.get("nodeName") and spec["nodeName"] != name:
        return REASON_NODE_NAME
    labels = _meta(node).get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return REASON_SELECTOR
    if count + 1 > max_pods(node):
        return REASON_TOO_MANY_PODS
    return None


def fit_error(num_nodes: int, reasons: Counter) -> str:
    if num_nodes == 0:
        return NO_NODES
    parts = sorted(f"{n} {r}" for r, n in reasons.items())
    return f"0/{num_nodes} nodes are available: " + ", ".join(parts) + "."


def pod_node(pod: Mapping) -> str | None:
    """The node a pod counts against (:func:`pod_counts`), or None."""
    node = _spec(pod).get("nodeName")
    return node if node and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") else None


def schedule(pod: Mapping, nodes: Iterable[Mapping], pods: Iterable[Mapping] = (), rng: random.Random | None = None,
             *, counts: Mapping[str, int] | None = None) -> str:
    """Pick a node name for ``pod`` or raise :class:`Unschedulable`.

    ``pods`` are the pods already known (their ``spec.nodeName`` counts against nodes);
    the pod being scheduled is ignored if present. A caller that keeps the per-node counts
    itself passes them as ``counts`` instead (not counting ``pod``): counting every pod for
    every decision made scheduling N pods cost O(N^2). Ties are broken with ``rng``.
    """
    nodes = list(nodes)
    if counts is None:
        me = (_meta(pod).get("namespace"), _meta(pod).get("name"))
        counts = pod_counts(p for p in pods if (_meta(p).get("namespace"), _meta(p).get("name")) != me)
    reasons: Counter = Counter()
    feasible: list[tuple[int, str]] = []
    for node in nodes:
        name = _meta(node).get("name", "")
        count = counts.get(name, 0)
        why = filter_node(pod, node, count)
        if why:
            reasons[why] += 1
        else:
            feasible.append((count, name))
    if not feasible:
        msg = fit_error(len(nodes), reasons)
        raise Unschedulable(msg, len(nodes), reasons)
    best = min(c for c, _ in feasible)
    ties = sorted(n for c, n in feasible if c == best)
    return (rng or random).choice(ties)
