"""Benchmark: kube-proxy sync time at 1k, 5k and 10k Services (scripts/bench/proxy-sync).

``--proxy-mode iptables`` (default) measures iptables mode; ``--proxy-mode nftables`` measures
iptables and nftables mode side by side in the same run (``testbed.bench.proxy_sync_nftables``),
each size in the same fresh cluster, one mode after the other.

For each size a fresh one-node cluster is built with the topology engine (``control_plane=False``:
just the namespaces), and the real proxy code runs in a thread inside the node's namespace:
``ProxyLoop.sync()`` -- change tracking, the iptables syncer's renderer, one ``iptables-save`` on
full syncs, one ``iptables-restore --noflush`` per sync (a child process, so it acts on the
node's namespace). Each Service has one TCP port and an EndpointSlice with 2 endpoints.

Measured per size:
- full sync, cold: the first sync, every chain created;
- full sync, resync: a forced full sync with everything in place (upstream's periodic one);
- one endpoint change: an EndpointSlice gets a new address, then one (partial) sync; median
  over ``--changes`` changes, with the render and restore parts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from ..cluster import Cluster
from ..proxy.iptables.restore import RestoreStream
from ..proxy.iptables.syncer import IptablesSyncer
from ..proxy.loop import ProxyLoop
from ..proxy.syncer import ProxyConfig
from ..scenario import parse


def service(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"s{i}", "namespace": "bench", "resourceVersion": str(2 * i + 1)},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def endpoint_ip(i: int, k: int) -> str:
    """Unicast endpoint addresses (never .0/.255: IPVS refuses a broadcast real server)."""
    n = 2 * i + k
    return f"10.{245 + n // 64516}.{n // 254 % 254 + 1}.{n % 254 + 1}"


def changed_ip(n: int) -> str:
    return f"10.250.{n // 254 % 254 + 1}.{n % 254 + 1}"


def drive(runner, services: int, changes: int, resyncs: int) -> dict:
    """The workload both proxy modes are measured on: fill, cold full sync, forced full resyncs,
    then ``changes`` one-endpoint changes each followed by one (partial) sync."""
    st = runner.state
    t = time.perf_counter()
    for i in range(services):
        st.update_service(service(i))
        st.update_endpoint_slice(endpoint_slice(i, [endpoint_ip(i, 0), endpoint_ip(i, 1)], 10 ** 7 + i))
    fill = time.perf_counter() - t
    cold = runner.sync()
    if not cold.ok:
        raise RuntimeError(f"full sync failed: {cold.error} (line {cold.error_line})")
    cold_ops = getattr(runner.syncer, "last_ops", None)
    fulls = []
    for _ in range(resyncs):
        runner.request_sync(full=True)
        runner._drain()
        rec = runner.sync()
        assert rec.full and rec.ok, rec
        fulls.append(rec)
    parts = []
    rv = 2 * 10 ** 7
    for n in range(changes):
        i = (n * 7919) % services
        rv += 1
        st.update_endpoint_slice(endpoint_slice(i, [endpoint_ip(i, 0), changed_ip(n)], rv))
        rec = runner.sync()
        assert rec.ok and not rec.full, rec
        parts.append(rec)
    return {"fill": fill, "cold_rec": cold, "cold_ops": cold_ops, "fulls": fulls, "parts": parts}


def endpoint_slice(i: int, ips: list[str], rv: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"s{i}-abcde", "namespace": "bench", "resourceVersion": str(rv),
                         "labels": {"kubernetes.io/service-name": f"s{i}"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "nodeName": "node2" if k else "node1",
                           "conditions": {"ready": True, "serving": True, "terminating": False}}
                          for k, ip in enumerate(ips)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def restore_alone(saved: str) -> float:
    """The floor under a cold full sync: the same ruleset (this namespace's ``iptables-save``)
    restored by ``iptables-restore`` alone into emptied tables, its whole input written at once.
    Nothing of the proxy runs meanwhile."""
    empty = RestoreStream(noflush=False)
    empty.write("".join(f"*{t}\nCOMMIT\n" for t in ("mangle", "filter", "nat")))
    if empty.close()[0] != 0:
        raise RuntimeError("could not empty the tables")
    t = time.perf_counter()
    stream = RestoreStream(noflush=False)
    stream.write(saved)
    rc, err = stream.close()
    if rc != 0:
        raise RuntimeError(f"iptables-restore of the saved rules failed: {err.strip()}")
    return time.perf_counter() - t


def _measure(services: int, changes: int, resyncs: int, upstream: bool = False) -> dict:
    """Runs inside the node's namespace."""
    cfg = ProxyConfig(cluster="bench", node_name="node1", node_ip="172.20.10.2",
                      cluster_cidr="10.244.0.0/16", min_sync_period=0.0, sync_period=30.0,
                      replace_full_sync=not upstream, skip_unchanged_chains=not upstream)
    runner = ProxyLoop(cfg, IptablesSyncer(cfg, random_fully=True, be_liberal=False))
    d = drive(runner, services, changes, resyncs)
    cold, fulls, parts, fill = d["cold_rec"], d["fulls"], d["parts"], d["fill"]
    med = statistics.median
    floor = restore_alone(runner.syncer.iptables.save())
    return {
        "mode": "iptables", "alone": floor,
        "services": services, "fill": fill, "lines_full": cold.lines, "lines_partial": parts[-1].lines,
        "cold": cold.duration, "cold_apply": cold.restore,
        "resync": med(r.duration for r in fulls) if fulls else None,
        "resync_apply": med(r.restore for r in fulls) if fulls else None,
        "change": med(r.duration for r in parts), "change_max": max(r.duration for r in parts),
        "change_render": med(r.render for r in parts), "change_apply": med(r.restore for r in parts),
    }


def _clear_iptables() -> None:
    """Empty the tables iptables mode filled, so nftables mode starts from the same node."""
    empty = RestoreStream(noflush=False)
    empty.write("".join(f"*{t}\nCOMMIT\n" for t in ("mangle", "filter", "nat")))
    if empty.close()[0] != 0:
        raise RuntimeError("could not empty the tables")


def _both(services: int, changes: int, resyncs: int, upstream: bool) -> list[dict]:
    from .proxy_sync_nftables import measure
    rows = [_measure(services, changes, resyncs, upstream)]
    _clear_iptables()
    rows.append(measure(services, changes, resyncs))
    return rows


def run(sizes: list[int], changes: int, resyncs: int, upstream: bool = False,
        modes: tuple[str, ...] = ("iptables",)) -> list[dict]:
    out = []
    for n in sizes:
        # a name per process: another run of the benchmark may be up at the same time
        doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": f"kp4bench-{os.getpid()}"},
               "spec": {"nodes": 1, "externals": 0}}
        c = Cluster.up(parse(doc), control_plane=False)
        try:
            if "nftables" in modes:
                out += c.run_in("node/node1", _both, n, changes, resyncs, upstream)
            else:
                out.append(c.run_in("node/node1", _measure, n, changes, resyncs, upstream))
        finally:
            c.down()
    return out


def table(rows: list[dict]) -> str:
    """One row per size and mode; "apply" is iptables-restore or the nft transaction, "alone"
    the same cold-sync text applied by iptables-restore / ``nft -f`` with nothing else running."""
    ms = (lambda v: "-" if v is None else f"{v * 1000:.0f} ms" if v >= 0.1 else f"{v * 1000:.1f} ms")
    lines = ["| services (2 endpoints each) | mode | lines | full sync, cold (apply) "
             "| iptables-restore / `nft -f` alone, same text | full resync (apply) "
             "| one endpoint change: median / max (render + apply, lines) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['services']:,} | {r['mode']} | {r['lines_full']:,} | {ms(r['cold'])} ({ms(r['cold_apply'])}) "
                     f"| {ms(r['alone'])} "
                     f"| {ms(r['resync'])} ({ms(r['resync_apply'])}) "
                     f"| {ms(r['change'])} / {ms(r['change_max'])} ({ms(r['change_render'])} + "
                     f"{ms(r['change_apply'])}, {r['lines_partial']:,} lines) |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    by = {(r["mode"], r["services"]): r for r in rows}
    out = []
    ipt, nft, nft1k = by.get(("iptables", 10000)), by.get(("nftables", 10000)), by.get(("nftables", 1000))
    if ipt and not nft:
        out.append(f"targets at 10k: full sync {ipt['cold']:.3f}s (< 2 s: {'ok' if ipt['cold'] < 2 else 'MISSED'}; "
                   f"iptables-restore alone takes {ipt['alone']:.3f}s for the same rules), "
                   f"one change {ipt['change'] * 1000:.1f} ms (< 100 ms: {'ok' if ipt['change'] < 0.1 else 'MISSED'})")
    if nft:
        ok = nft["cold"] < 1.5 and (ipt is None or nft["cold"] < ipt["cold"])
        out.append(f"nftables targets at 10k: full sync {nft['cold']:.3f}s (< 1.5 s and faster than iptables mode's "
                   f"{ipt['cold'] if ipt else float('nan'):.3f}s: {'ok' if ok else 'MISSED'}; nft -f alone "
                   f"{nft['alone']:.3f}s)")
        ok = nft["change"] < 0.05 and (nft1k is None or nft["change"] <= 2 * nft1k["change"])
        out.append(f"nftables one change at 10k: {nft['change'] * 1000:.1f} ms (< 50 ms and within 2x of the "
                   f"{nft1k['change'] * 1000 if nft1k else float('nan'):.1f} ms at 1k: {'ok' if ok else 'MISSED'})")
    for r in rows:
        if r["mode"] == "nftables" and "floor_goto" in r:
            out.append(f"nftables at {r['services']:,}: one change through the nft binary "
                       f"{r['change_by_nft'] * 1000:.1f} ms (median); kernel floor, one goto element "
                       f"(whole-table validation at commit) {r['floor_goto'] * 1000:.1f} ms median, "
                       f"{r['floor_goto_min'] * 1000:.1f} ms min")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,10000", help="comma-separated Service counts")
    ap.add_argument("--changes", type=int, default=9, help="endpoint changes measured per size")
    ap.add_argument("--resyncs", type=int, default=3, help="forced full resyncs measured per size")
    ap.add_argument("--proxy-mode", default="iptables", choices=["iptables", "nftables"],
                    help="nftables: measure iptables and nftables mode side by side")
    ap.add_argument("--upstream-restore", action="store_true",
                    help="every sync one --noflush restore of the whole rendered text, as upstream "
                         "(no table replace for full syncs, no skipping of unchanged chains)")
    args = ap.parse_args(argv)
    modes = ("iptables", "nftables") if args.proxy_mode == "nftables" else ("iptables",)
    rows = run([int(x) for x in args.sizes.split(",")], args.changes, args.resyncs, args.upstream_restore, modes)
    print(table(rows))
    for line in targets(rows):
        print("\n" + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
