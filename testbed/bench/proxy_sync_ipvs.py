"""Benchmark: kube-proxy IPVS mode sync time at 1k, 5k and 10k Services
(``scripts/bench/proxy-sync --proxy-mode ipvs``; needs ip_vs: run it in ``scripts/kernel-lane``).

Same workload as ``testbed.bench.proxy_sync`` (the iptables figures): a fresh one-node cluster
(topology only), and the real IPVS syncer in a thread inside the node's namespace:
``ProxyLoop.sync()`` with the ``IpvsSyncer`` -- change tracking, the desired state, netlink batches to IPVS /
ipset / ``kube-ipvs0``, one ``iptables-restore`` when the rules change. Each Service has one TCP
port and an EndpointSlice with 2 endpoints.

Measured per size: full sync cold (first sync, everything created); full resync (forced, with
everything in place: the kernel is read back and diffed); one endpoint change (partial sync,
median over ``--changes``).
"""

from __future__ import annotations

import argparse
import statistics

from ..cluster import Cluster
from ..proxy.loop import ProxyLoop
from ..proxy.syncer import ProxyConfig
from ..scenario import parse
from .proxy_sync import drive


def _measure(services: int, changes: int, resyncs: int) -> dict:
    """Runs inside the node's namespace."""
    from ..proxy.ipvs.syncer import IpvsSyncer
    cfg = ProxyConfig(cluster="bench", node_name="node1", node_ip="172.20.10.2",
                      cluster_cidr="10.244.0.0/16", min_sync_period=0.0, sync_period=30.0)
    runner = ProxyLoop(cfg, IpvsSyncer(cfg, random_fully=True))
    runner.setup_host()
    d = drive(runner, services, changes, resyncs)
    cold, fulls, parts, fill, cold_ops = d["cold_rec"], d["fulls"], d["parts"], d["fill"], d["cold_ops"]
    k = runner.syncer.kernel
    in_kernel = len(k.list_services())
    assert in_kernel == services, (in_kernel, services)
    med = statistics.median
    return {"services": services, "fill": fill, "cold": cold.duration, "cold_ops": cold_ops,
            "resync": med(r.duration for r in fulls) if fulls else None,
            "change": med(r.duration for r in parts), "change_max": max(r.duration for r in parts),
            "change_ops": parts[-1].written_chains}


def run(sizes: list[int], changes: int, resyncs: int) -> list[dict]:
    out = []
    for n in sizes:
        doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "ipvs7bench"},
               "spec": {"nodes": 1, "externals": 0}}
        c = Cluster.up(parse(doc), control_plane=False)
        try:
            out.append(c.run_in("node/node1", _measure, n, changes, resyncs))
        finally:
            c.down()
    return out


def table(rows: list[dict]) -> str:
    ms = (lambda v: "-" if v is None else f"{v * 1000:.0f} ms" if v >= 0.1 else f"{v * 1000:.1f} ms")
    lines = ["| services (2 endpoints each) | full sync, cold (kernel requests) | full resync (reads the kernel) "
             "| one endpoint change: median / max (kernel requests) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['services']:,} | {ms(r['cold'])} ({r['cold_ops']:,}) | {ms(r['resync'])} "
                     f"| {ms(r['change'])} / {ms(r['change_max'])} ({r['change_ops']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy-mode", default="ipvs", choices=["ipvs"])
    ap.add_argument("--sizes", default="1000,5000,10000", help="comma-separated Service counts")
    ap.add_argument("--changes", type=int, default=9, help="endpoint changes measured per size")
    ap.add_argument("--resyncs", type=int, default=1, help="forced full resyncs measured per size")
    args = ap.parse_args(argv)
    rows = run([int(x) for x in args.sizes.split(",")], args.changes, args.resyncs)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
