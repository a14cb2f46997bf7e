"""kube-proxy nftables mode, measured by the proxy-sync benchmark
(``scripts/bench/proxy-sync --proxy-mode nftables``: iptables and nftables side by side).

Same workload and cluster as ``testbed.bench.proxy_sync`` (one TCP port, 2 endpoints per
Service, a one-node cluster's node namespace), through the real proxy code:
``ProxyLoop.sync()`` with the ``NftablesSyncer`` of the kube-proxy process (change tracking,
planning, one transaction per sync through libnftables in-process). Measured per size:

- full sync, cold: the first sync into a namespace without the table;
- ``nft -f`` alone: the cold sync's transaction text, replayed by the ``nft`` binary into the
  namespace after the table was deleted (the floor: nothing of the proxy runs meanwhile);
- full resync: a forced full sync with everything in place (upstream's periodic one);
- one endpoint change: an EndpointSlice gets a new address, then one partial sync.

Where the time goes: see README.md ("kube-proxy nftables mode: sync time").
"""

from __future__ import annotations

import statistics
import time

from ..exec import run as run_command
from ..proxy.loop import ProxyLoop
from ..proxy.nftables.runner import make_runner
from ..proxy.nftables.syncer import NftablesSyncer
from ..proxy.syncer import ProxyConfig
from .proxy_sync import drive


class RecordingRunner:
    """The proxy's runner, remembering the transactions it ran (for the ``nft -f`` replay)."""

    def __init__(self):
        self.inner = make_runner()
        self.kind = self.inner.kind
        self.texts: list[str] = []

    def run(self, text: str) -> None:
        self.inner.run(text)
        self.texts.append(text)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def nft_alone(text: str) -> float:
    """Delete the table, then time ``nft -f -`` of ``text`` into this namespace."""
    r = run_command(["nft", "-f", "-"], input="add table ip kube-proxy\ndelete table ip kube-proxy\n",
                    check=False)
    if r.returncode != 0:
        raise RuntimeError(f"could not delete the table: {r.stderr.strip()}")
    t = time.perf_counter()
    r = run_command(["nft", "-f", "-"], input=text, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"nft -f of the cold sync's transaction failed: {r.stderr.strip()[:300]}")
    return time.perf_counter() - t


def measure(services: int, changes: int, resyncs: int) -> dict:
    """Runs inside the node's namespace (``testbed.bench.proxy_sync.run``)."""
    cfg = ProxyConfig(cluster="bench", node_name="node1", node_ip="172.20.10.2",
                      cluster_cidr="10.244.0.0/16", min_sync_period=0.0, sync_period=30.0,
                      service_cidrs=("10.96.0.0/12",))
    runner = RecordingRunner()
    loop = ProxyLoop(cfg, NftablesSyncer(cfg, runner=runner))
    d = drive(loop, services, changes, resyncs)
    cold, fulls, parts = d["cold_rec"], d["fulls"], d["parts"]
    med = statistics.median
    alone = nft_alone(runner.texts[0])
    return {
        "mode": "nftables", "runner": runner.kind, "services": services, "lines_full": cold.lines,
        "lines_partial": parts[-1].lines, "cold": cold.duration, "cold_apply": cold.restore,
        "alone": alone,
        "resync": med(r.duration for r in fulls) if fulls else None,
        "resync_apply": med(r.restore for r in fulls) if fulls else None,
        "change": med(r.duration for r in parts), "change_max": max(r.duration for r in parts),
        "change_render": med(r.render for r in parts), "change_apply": med(r.restore for r in parts),
    }
