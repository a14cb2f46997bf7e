"""A running cluster's proxies seen from outside: their metrics files, waiting for a change to be
programmed, and each node's rules (dumped and checked by the node's proxy mode).

Used by ``testbed rules`` / ``testbed metrics``, by tests and by scripts alike.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from testbed import state
from testbed.errors import TestbedError
from testbed.inotify import DirWatch
from testbed.proxy import modes


# --------------------------------------------------------------------------- nodes and rules

def node_name(target: str) -> str:
    """``node/NAME`` -> NAME, or a one-line error."""
    kind, _, name = target.partition("/")
    if kind not in ("node", "nodes", "no") or not name:
        raise TestbedError(f"bad target {target!r}: use node/NAME")
    return name


def _node(cluster: str, target: str):
    from testbed.cluster import Cluster

    name = node_name(target)
    c = Cluster(cluster)
    try:
        return c.plan, c.plan.node(name)
    except KeyError:
        raise TestbedError(f"no node {name!r} in cluster {cluster}; nodes: "
                           f"{', '.join(n.name for n in c.plan.nodes)}") from None


def _mode(plan) -> modes.ProxyMode:
    """The plan's proxy mode; a cluster without proxies has iptables rules all the same."""
    return modes.MODES.get(plan.proxy_mode) or modes.MODES["iptables"]


def dump_rules(cluster: str, target: str) -> str:
    """A node's rules as its proxy mode shows them (iptables mode: ``iptables-save``)."""
    plan, node = _node(cluster, target)
    return _mode(plan).dump_rules(node.netns)


def check_report(cluster: str, target: str) -> tuple[list, str]:
    """(differences between what the node's proxy meant to write and the kernel, what was
    compared)."""
    plan, node = _node(cluster, target)
    return _mode(plan).check_rules(cluster, node.name, node.netns)


def check_rules(cluster: str, target: str) -> list:
    """Differences between what the node's proxy meant to write and the kernel (empty: same)."""
    return check_report(cluster, target)[0]


# --------------------------------------------------------------------------- metrics

def proxy_metrics(cluster: str, node: str | None = None) -> dict[str, dict]:
    """The proxies' metrics files (``<state>/proxy-NODE.json``) by node."""
    d = state.directory(cluster)
    if not os.path.isdir(d):
        raise TestbedError(f"cluster {cluster!r} is not up (no {d})")
    out = {}
    names = [node] if node else sorted(f[len("proxy-"):-len(".json")] for f in os.listdir(d)
                                       if f.startswith("proxy-") and f.endswith(".json"))
    for n in names:
        try:
            with open(os.path.join(d, f"proxy-{n}.json")) as f:
                out[n] = json.load(f)
        except FileNotFoundError:
            if node:
                raise TestbedError(f"no metrics from kube-proxy on {n} yet") from None
        except ValueError:
            continue
    return out


def wait_metrics(cluster: str, predicate, timeout: float = 10.0, what: str = "kube-proxy metrics"):
    """Block until ``predicate(proxy_metrics(cluster))`` is truthy (woken by inotify on the state
    directory whenever a metrics file is replaced); returns its value, raises TimeoutError."""
    return wait_state(cluster, lambda: predicate(proxy_metrics(cluster)), timeout, what)


def wait_state(cluster: str, predicate, timeout: float = 10.0, what: str = "a state file"):
    """Block until ``predicate()`` is truthy, re-evaluated whenever a file of the cluster's state
    directory is written or replaced (inotify); returns its value, raises TimeoutError."""
    d = state.directory(cluster)
    ino = DirWatch(d)
    try:
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            ino.wait(left)
    finally:
        ino.close()


def wait_programmed(cluster: str, objects, nodes=None, timeout: float = 10.0) -> dict[str, dict]:
    """Block until the proxies of ``nodes`` (default: all with metrics) have applied every
    object's resourceVersion (per kind) in a successful sync; returns their metrics."""
    want: dict[str, int] = {}
    for obj in objects:
        kind, rv = obj["kind"], int(obj["metadata"]["resourceVersion"])
        want[kind] = max(want.get(kind, 0), rv)

    def done(ms: dict[str, dict]):
        names = nodes or list(ms)
        if not names:
            return None
        for n in names:
            m = ms.get(n)
            if not m or m.get("stopped") or not (m.get("last_sync") or {}).get("ok"):
                return None
            applied = m.get("applied_resource_versions") or {}
            if any(int(applied.get(k, 0)) < rv for k, rv in want.items()):
                return None
        return ms
    return wait_metrics(cluster, done, timeout, f"{want} programmed on {', '.join(nodes or ['all nodes'])}")


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


METRIC_COLUMNS = ("NODE", "PID", "SERVICES", "ENDPOINTS", "SYNCS", "FULL", "PARTIAL", "FAILED",
                  "SYNC P50 ms", "SYNC P99 ms", "LAST ms", "NPL P50 ms", "NPL P90 ms", "NPL P99 ms",
                  "CT DELETED", "HEALTHY")


def metrics_rows(metrics: dict[str, dict]) -> list[tuple[str, ...]]:
    rows = []
    for node, m in metrics.items():
        sd = m.get("sync_duration_seconds") or {}
        npl = m.get("network_programming_latency_seconds") or {}
        last = m.get("last_sync") or {}
        rows.append((node, str(m.get("pid")), str(m.get("services")), str(m.get("endpoints")),
                     str(m.get("syncs_total")), str(m.get("full_syncs_total")), str(m.get("partial_syncs_total")),
                     str(m.get("sync_failures_total")), _ms(sd.get("p50")), _ms(sd.get("p99")),
                     _ms(last.get("duration_seconds")), _ms(npl.get("p50")), _ms(npl.get("p90")),
                     _ms(npl.get("p99")), str(m.get("conntrack_entries_deleted_total")),
                     "yes" if m.get("healthy") and not m.get("stopped") else "no"))
    return rows
