"""nftables mode's entry in ``testbed.proxy.modes``: its syncer, and its rules seen from outside
the proxy (``testbed rules``, ``--check``, cleanup).

``check_rules`` replays what the node's kube-proxy wrote (``<state>/proxy-NODE.rules``: the
table at the last full sync, then each partial sync's transaction) into a scratch namespace
``tb.<cluster>.rulecheck.<pid>``, one transaction per segment as the proxy ran them, and compares
both listings of ``table ip kube-proxy`` with handles dropped and elements sorted (affinity
sets' entries, which packets add, are not compared).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from testbed import naming, state
from testbed.errors import TestbedError
from testbed.proxy.nftables import apply, names
from testbed.proxy.nftables.runner import NftProcess, RunError
from testbed.proxy.syncer import ProxyConfig

FAMILY = "ip"


def make_syncer(cfg: ProxyConfig, **host) -> "NftablesSyncer":
    # imported here: every proxy imports this module to clean up after this mode, few run it
    from testbed.proxy.nftables.syncer import NftablesSyncer
    return NftablesSyncer(cfg, **host)


def problem() -> str | None:
    if shutil.which("nft") is None:
        return "proxy mode nftables needs nft, which is not on PATH (apt-get install nftables)"
    return None


def dump_rules(ns: str) -> str:
    """``nft list table ip kube-proxy`` of a node ('' when the table does not exist)."""
    try:
        return apply.NftApplier(ns, FAMILY).list_text()
    except apply.NftError as exc:
        raise TestbedError(str(exc)) from None


def rules_file(cluster: str, node: str) -> str:
    return os.path.join(state.directory(cluster), f"proxy-{node}.rules")


def segments(text: str) -> list[str]:
    """The journal's transactions, in the order the proxy ran them."""
    from testbed.proxy.nftables.syncer import SEGMENT
    return [s for s in text.split(SEGMENT) if s.strip()]


@dataclass(frozen=True)
class NftDiff:
    """One object (canonical JSON of ``nft -j list``) only one side holds."""

    side: str       # "intended" | "kernel"
    obj: str

    def describe(self) -> str:
        return f"  only in the {self.side}: {self.obj}"


def check_rules(cluster: str, node: str, ns: str) -> tuple[list[NftDiff], str]:
    path = rules_file(cluster, node)
    try:
        with open(path) as f:
            journal = f.read()
    except FileNotFoundError:
        raise TestbedError(f"kube-proxy on {node} has not recorded a sync yet (no {path})") from None
    scratch = f"{naming.cluster_prefix(cluster)}rulecheck.{os.getpid()}"
    try:
        diffs, n = apply.check(apply.NftApplier(ns, FAMILY), segments(journal), scratch)
    except apply.NftError as exc:
        raise TestbedError(f"{path}: {exc}") from None
    out = [NftDiff("intended" if d.startswith("- ") else "kernel", d[2:]) for d in diffs]
    return out, f"table {FAMILY} {names.TABLE} ({n} objects) as kube-proxy wrote it"


def cleanup() -> None:
    """Upstream ``CleanupLeftovers`` for this mode: delete the whole table (one transaction)."""
    try:
        NftProcess().run(f"add table {FAMILY} {names.TABLE}\ndelete table {FAMILY} {names.TABLE}\n")
    except RunError as exc:
        raise TestbedError(f"removing table {FAMILY} {names.TABLE}: {exc.message}") from None
