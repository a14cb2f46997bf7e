"""Benchmark: kube-proxy nftables mode sync time at 1k, 5k and 10k Services.

Runs in one throwaway network namespace (``tb.<cluster>.node.node1``, removed at the end): the
proxy model is filled with the same Services and EndpointSlices as the iptables benchmark
(``proxy_sync``: one TCP port, 2 endpoints each), then ``NftablesSyncer`` plans each sync and
``NftApplier`` runs it as one ``nft -f -``.

Measured per size:
- full sync, cold: render + ``nft -f`` of the first sync into an empty namespace;
- ``nft -f`` alone: the same transaction text again into an emptied namespace (the floor);
- full resync: a forced full sync with everything in place;
- one endpoint change: an EndpointSlice gets a new address, then one partial sync (render +
  ``nft -f``); median and max over ``--changes`` changes.

Where the time goes (measured with ``perf record`` on ``nft -f`` of the 5k-Service full sync,
kernel 6.18, nft 1.0.6): almost all of it is kernel time for the anonymous verdict maps of
upstream's ``numgen random mod N vmap { ... }`` rules, one per service chain. 52 % is in
``__nft_set_trans_bind``, which walks the whole pending transaction for every rule that binds an
anonymous set, and 12 % in ``nf_tables_newset``, whose ``__map%d`` name allocation scans (with
``sscanf``) every set of the table: both grow with the transaction, so a full sync grows
quadratically (the same text without the vmaps takes a tenth of the time). A partial sync's
cost is nft's cache: before it writes anything, it dumps the table's chains and sets, which at
10k Services are 30k chains and 10k anonymous maps.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from .. import netns
from ..proxy.model import ProxyState
from ..proxy.nftables.apply import NftApplier
from ..proxy.nftables.render import NftablesConfig
from ..proxy.nftables.sync import NftablesSyncer
from .proxy_sync import changed_ip, endpoint_ip, endpoint_slice, service

NODE_IP = "172.20.10.2"


def _timed_sync(syncer: NftablesSyncer, applier: NftApplier, state: ProxyState) -> dict:
    t0 = time.perf_counter()
    plan = syncer.plan(state, now=time.monotonic(), **_existing(applier, syncer))
    t1 = time.perf_counter()
    cpu0 = _child_cpu()
    applier.run(plan.text)
    t2 = time.perf_counter()
    syncer.committed()
    return {"render": t1 - t0, "nft": t2 - t1, "total": t2 - t0, "full": plan.full,
            "nft_cpu": _child_cpu() - cpu0,
            "ops": plan.transaction.operations, "text": plan.text}


def _child_cpu() -> float:
    """CPU seconds (user + system) of finished children: nft's own cost, which wall time on a
    shared host does not show."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _existing(applier: NftApplier, syncer: NftablesSyncer) -> dict:
    if not syncer.needs_full_sync:
        return {}
    ex = applier.existing()
    return {"existing_chains": ex.chains, "existing_sets": ex.sets}


def measure(ns: str, services: int, changes: int, resyncs: int) -> dict:
    cfg = NftablesConfig(node_name="node1", node_ip=NODE_IP, detect_local_mode="ClusterCIDR",
                         detect_local_value="10.244.0.0/16", nodeport_addresses=(f"{NODE_IP}/32",),
                         node_addresses=(NODE_IP,), service_cidrs=("10.96.0.0/12",))
    applier = NftApplier(ns)
    state = ProxyState("node1")
    for i in range(services):
        state.update_service(service(i))
        state.update_endpoint_slice(endpoint_slice(i, [endpoint_ip(i, 0), endpoint_ip(i, 1)], 10 ** 7 + i))
    syncer = NftablesSyncer(cfg)
    cold = _timed_sync(syncer, applier, state)

    applier.delete_table()
    t, cpu0 = time.perf_counter(), _child_cpu()
    applier.run(cold["text"])
    alone, alone_cpu = time.perf_counter() - t, _child_cpu() - cpu0

    fulls = []
    for _ in range(resyncs):
        syncer.force_full_sync()
        fulls.append(_timed_sync(syncer, applier, state))
    parts = []
    rv = 2 * 10 ** 7
    for n in range(changes):
        i = (n * 7919) % services
        rv += 1
        state.update_endpoint_slice(endpoint_slice(i, [endpoint_ip(i, 0), changed_ip(n)], rv))
        rec = _timed_sync(syncer, applier, state)
        assert not rec["full"], rec
        parts.append(rec)
    med = statistics.median
    return {
        "services": services, "lines_full": cold["text"].count("\n"), "cold": cold["total"],
        "cold_render": cold["render"], "cold_nft": cold["nft"], "cold_nft_cpu": cold["nft_cpu"],
        "nft_alone": alone, "nft_alone_cpu": alone_cpu,
        "resync": med(r["total"] for r in fulls) if fulls else None,
        "resync_nft": med(r["nft"] for r in fulls) if fulls else None,
        "change": med(r["total"] for r in parts), "change_max": max(r["total"] for r in parts),
        "change_render": med(r["render"] for r in parts), "change_nft": med(r["nft"] for r in parts),
        "change_nft_cpu": med(r["nft_cpu"] for r in parts),
        "change_ops": parts[-1]["ops"],
    }


def run(sizes: list[int], changes: int, resyncs: int) -> list[dict]:
    ns = f"tb.nftbench{os.getpid()}.node.node1"
    out = []
    try:
        for n in sizes:
            with netns.Runner(1) as r:
                r.run_new(ns, lambda: None)
            try:
                out.append(measure(ns, n, changes, resyncs))
            finally:
                netns.delete(ns)
    finally:
        netns.delete(ns)
    return out


def table(rows: list[dict]) -> str:
    ms = (lambda v: "-" if v is None else f"{v * 1000:.0f} ms" if v >= 0.1 else f"{v * 1000:.1f} ms")
    lines = ["| services (2 endpoints each) | nft lines | full sync, cold (render + nft; nft CPU) "
             "| `nft -f` alone, same text (CPU) | full resync (nft) "
             "| one endpoint change: median / max (render + nft; nft CPU; operations) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['services']:,} | {r['lines_full']:,} | {ms(r['cold'])} ({ms(r['cold_render'])} + "
            f"{ms(r['cold_nft'])}; {ms(r['cold_nft_cpu'])}) | {ms(r['nft_alone'])} "
            f"({ms(r['nft_alone_cpu'])}) | {ms(r['resync'])} ({ms(r['resync_nft'])}) "
            f"| {ms(r['change'])} / {ms(r['change_max'])} ({ms(r['change_render'])} + "
            f"{ms(r['change_nft'])}; {ms(r['change_nft_cpu'])}; {r['change_ops']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,10000", help="comma-separated Service counts")
    ap.add_argument("--changes", type=int, default=9, help="endpoint changes measured per size")
    ap.add_argument("--resyncs", type=int, default=3, help="forced full resyncs measured per size")
    args = ap.parse_args(argv)
    rows = run([int(x) for x in args.sizes.split(",")], args.changes, args.resyncs)
    print(table(rows))
    for r in (r for r in rows if r["services"] == 10000):
        print(f"\ntargets at 10k: full sync {r['cold']:.3f}s (< 1.5 s: "
              f"{'ok' if r['cold'] < 1.5 else 'MISSED'}; nft -f alone {r['nft_alone']:.3f}s), "
              f"one change {r['change'] * 1000:.1f} ms (< 50 ms: "
              f"{'ok' if r['change'] < 0.05 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
