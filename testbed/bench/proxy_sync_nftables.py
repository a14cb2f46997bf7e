"""kube-proxy nftables mode, measured by the proxy-sync benchmark
(``scripts/bench/proxy-sync --proxy-mode nftables``: iptables and nftables side by side).

Same workload and cluster as ``testbed.bench.proxy_sync`` (one TCP port, 2 endpoints per
Service, a one-node cluster's node namespace), through the real proxy code:
``ProxyLoop.sync()`` with the ``NftablesSyncer`` of the kube-proxy process (change tracking,
planning, one transaction per sync as a netlink batch, ``nfnl``). Measured per size:

- full sync, cold: the first sync into a namespace without the table;
- ``nft -f`` alone: the cold sync's transaction text, replayed by the ``nft`` binary into the
  namespace after the table was deleted (the floor: nothing of the proxy runs meanwhile);
- full resync: a forced full sync with everything in place (upstream's periodic one);
- one endpoint change: an EndpointSlice gets a new address, then one partial sync;
- beside it: the same kind of change written by the ``nft`` binary, and the kernel's floor
  for a transaction with a jump/goto (``nft_change_and_floor``).

Where the time goes: see README.md ("kube-proxy nftables mode: sync time").
"""

from __future__ import annotations

import statistics
import time

from ..exec import run as run_command
from ..proxy.loop import ProxyLoop
from ..proxy.nftables.runner import NftProcess, make_runner
from ..proxy.nftables.syncer import NftablesSyncer
from ..proxy.syncer import ProxyConfig
from .proxy_sync import changed_ip, drive, endpoint_ip, endpoint_slice


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
    by_nft, floor = nft_change_and_floor(loop, runner, services, changes)
    alone = nft_alone(runner.texts[0])
    return {
        "mode": "nftables", "runner": runner.kind, "services": services, "lines_full": cold.lines,
        "lines_partial": parts[-1].lines, "cold": cold.duration, "cold_apply": cold.restore,
        "alone": alone,
        "resync": med(r.duration for r in fulls) if fulls else None,
        "resync_apply": med(r.restore for r in fulls) if fulls else None,
        "change": med(r.duration for r in parts), "change_max": max(r.duration for r in parts),
        "change_render": med(r.render for r in parts), "change_apply": med(r.restore for r in parts),
        "change_by_nft": med(by_nft), "floor_goto": med(floor), "floor_goto_min": min(floor),
    }


def nft_change_and_floor(loop: ProxyLoop, runner: RecordingRunner, services: int,
                         changes: int) -> tuple[list[float], list[float]]:
    """Beside the netlink path: the same kind of one-endpoint change written by the ``nft``
    binary (what the proxy did before, and what upstream measured), and the kernel's floor
    for any transaction that adds a jump/goto: one verdict-map element, which makes the
    kernel validate every chain reachable from the base chains at commit."""
    netlink = runner.inner
    runner.inner = NftProcess()
    by_nft = []
    for n in range(changes):
        i = (n * 7919 + 13) % services
        loop.state.update_endpoint_slice(endpoint_slice(i, [endpoint_ip(i, 0), changed_ip(changes + n)],
                                                        3 * 10 ** 7 + n))
        rec = loop.sync()
        assert rec.ok and not rec.full, rec
        by_nft.append(rec.duration)
    runner.inner = netlink
    floor = []
    for n in range(changes):
        key = f"10.99.{n // 250}.{n % 250 + 1} . tcp . 81"
        t = time.perf_counter()
        netlink.run(f"add element ip kube-proxy service-ips {{ {key} : goto mark-for-masquerade }}\n")
        floor.append(time.perf_counter() - t)
        netlink.run(f"delete element ip kube-proxy service-ips {{ {key} }}\n")
    return by_nft, floor
