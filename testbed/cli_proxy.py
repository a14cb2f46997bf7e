"""kube-proxy verbs: ``testbed rules node/NAME [--check]`` and ``testbed metrics [node/NAME]``.

The logic is in library functions (``live_rules``, ``check_rules``, ``proxy_metrics``,
``metrics_rows``) so tests and scripts use them without the CLI.

``check_rules`` compares what the node's kube-proxy meant to write -- its restore inputs since
the last full sync, journaled in ``<state>/proxy-NODE.rules`` and replayed into chains -- with
the node's live ``KUBE-*`` chains of the filter and nat tables, and checks upstream's jump rules
from the built-in chains. Both sides are compared in ``iptables-save`` form: the intended
chains are normalised by a round trip through the kernel in a scratch namespace
``tb.<cluster>.rulecheck.<pid>`` (created and deleted by the check; nothing else is touched).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Optional

from .inotify import DirWatch
from . import naming, netns, state
from .errors import TestbedError
from .proxy import apply


# --------------------------------------------------------------------------- library

def _node(cluster: str, target: str):
    from .cluster import Cluster

    kind, _, name = target.partition("/")
    if kind not in ("node", "nodes", "no") or not name:
        raise TestbedError(f"bad target {target!r}: use node/NAME")
    c = Cluster(cluster)
    try:
        return c.plan.node(name)
    except KeyError:
        raise TestbedError(f"no node {name!r} in cluster {cluster}; nodes: "
                           f"{', '.join(n.name for n in c.plan.nodes)}") from None


def _save_in(ns: str, *tables: str) -> str:
    def go() -> str:
        if not tables:
            r = subprocess.run(["iptables-save"], capture_output=True, text=True)
        else:
            out = []
            for t in tables:
                r = subprocess.run(["iptables-save", "-t", t], capture_output=True, text=True)
                if r.returncode != 0:
                    break
                out.append(r.stdout)
            r.stdout = "".join(out)
        if r.returncode != 0:
            raise TestbedError(f"iptables-save in {ns} failed: {r.stderr.strip()}")
        return r.stdout
    return netns.run_in(ns, go)


def live_rules(cluster: str, target: str) -> str:
    """``iptables-save`` of a node (run inside the node's namespace)."""
    return _save_in(_node(cluster, target).netns)


def ipvs_table(cluster: str, target: str) -> str:
    """A node's IPVS table and ipsets read over netlink, laid out like ``ipvsadm -Ln`` and
    ``ipset list`` (proxy mode ipvs)."""
    from .proxy.ipvs.kernel import IpvsKernel

    persistent = 0x1  # IP_VS_SVC_F_PERSISTENT

    def read() -> str:
        k = IpvsKernel()
        k.open()
        try:
            lines = ["IP Virtual Server (read over netlink)", "Prot LocalAddress:Port Scheduler Flags",
                     "  -> RemoteAddress:Port           Forward Weight"]
            services = k.list_services()
            for key in sorted(services, key=lambda x: (x.protocol, x.address, x.port)):
                vs = services[key]
                flags = f" persistent {vs.timeout}" if vs.flags & persistent else ""
                lines.append(f"{key.protocol:<4} {key.address}:{key.port} {vs.scheduler}{flags}")
                for rs in sorted(k.list_dests(key)):
                    lines.append(f"  -> {str(rs):<28} Masq    {rs.weight}")
            sets = k.list_sets()
            for name in sorted(sets):
                lines += ["", f"Name: {name}", f"Number of entries: {len(sets[name])}", "Members:"]
                lines += sorted(sets[name])
            return "\n".join(lines) + "\n"
        finally:
            k.close()

    return netns.run_in(_node(cluster, target).netns, read)


def rules_file(cluster: str, node: str) -> str:
    return os.path.join(state.directory(cluster), f"proxy-{node}.rules")


def intended_model(cluster: str, node: str) -> apply.RuleModel:
    path = rules_file(cluster, node)
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise TestbedError(f"kube-proxy on {node} has not recorded a sync yet (no {path})") from None
    return apply.replay_restore([text])


def normalise(model: apply.RuleModel, cluster: str) -> apply.SavedTables:
    """The model as ``iptables-save`` prints it: restored into an empty scratch namespace."""
    text = apply.model_text(model, kube_only=True)
    name = f"{naming.cluster_prefix(cluster)}rulecheck.{os.getpid()}"

    def go() -> str:
        r = subprocess.run(["iptables-restore", "-w", "5"], input=text, capture_output=True, text=True)
        if r.returncode != 0:
            raise TestbedError(f"the intended rules do not restore: {r.stderr.strip()}")
        out = []
        for table in ("filter", "nat"):
            s = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
            out.append(s.stdout)
        return "".join(out)
    try:
        with netns.Runner(1) as r:
            saved = r.run_new(name, go)
    finally:
        netns.delete(name)
    return apply.parse_save(saved)


def check_rules(cluster: str, target: str) -> list[apply.RuleDiff]:
    """Differences between what the node's proxy meant to write and the kernel (empty: same)."""
    node = _node(cluster, target)
    intended = normalise(intended_model(cluster, node.name), cluster)
    kernel = apply.parse_save(_save_in(node.netns, "filter", "nat"))
    return apply.compare_rules(intended, kernel)


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
    import time

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


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI

def register(app) -> None:
    import typer

    from .cluster import require_root

    cluster_opt = typer.Option(None, "-c", "--cluster", help="cluster name (default: the only one that is up)")

    @app.command()
    def rules(target: str = typer.Argument(..., help="node/NAME"),
              check: bool = typer.Option(False, "--check",
                                         help="compare the kernel's KUBE-* chains with what kube-proxy meant to "
                                              "write; exit 1 on a difference"),
              cluster: Optional[str] = cluster_opt) -> None:
        """Show a node's live ruleset (iptables-save), or verify it against kube-proxy's intent."""
        require_root("testbed rules")
        name = state.resolve(cluster)
        if not check:
            print(live_rules(name, target), end="")
            from .cluster import Cluster

            if Cluster(name).plan.proxy_mode == "ipvs":
                print(ipvs_table(name, target), end="")
            return
        diffs = check_rules(name, target)
        node = target.partition("/")[2]
        if not diffs:
            model = intended_model(name, node)
            n = sum(len(apply.kube_chains(model, t)) for t in ("filter", "nat"))
            print(f"node/{node}: the kernel holds exactly the {n} KUBE-* chains kube-proxy wrote")
            return
        print(f"node/{node}: {len(diffs)} difference(s) between kube-proxy's rules and the kernel:")
        for d in diffs:
            print(d.describe())
        raise typer.Exit(1)

    @app.command()
    def metrics(target: Optional[str] = typer.Argument(None, help="node/NAME (default: every node)"),
                output: str = typer.Option("table", "-o", "--output", help="table | json"),
                cluster: Optional[str] = cluster_opt) -> None:
        """kube-proxy metrics: sync duration, network programming latency (NPL), counts."""
        name = state.resolve(cluster)
        node = None
        if target:
            kind, _, node = target.partition("/")
            if kind not in ("node", "nodes", "no") or not node:
                raise TestbedError(f"bad target {target!r}: use node/NAME")
        m = proxy_metrics(name, node)
        if output == "json":
            print(json.dumps(m, indent=1, sort_keys=True))
        elif output == "table":
            if not m:
                raise TestbedError(f"no kube-proxy metrics in cluster {name} yet")
            print(format_table(METRIC_COLUMNS, metrics_rows(m)))
        else:
            raise ValueError(f"unknown output format {output!r}; use table or json")
