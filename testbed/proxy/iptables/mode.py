"""iptables mode's entry in ``testbed.proxy.modes``: its syncer, and its rules seen from outside
the proxy (``testbed rules``, ``--check``, cleanup).

``check_rules`` compares what the node's kube-proxy meant to write -- its restore inputs since
the last full sync, journaled in ``<state>/proxy-NODE.rules`` and replayed into chains -- with
the node's live ``KUBE-*`` chains of the filter and nat tables, and checks upstream's jump rules
from the built-in chains. Both sides are compared in ``iptables-save`` form: the intended
chains are normalised by a round trip through the kernel in a scratch namespace
``tb.<cluster>.rulecheck.<pid>`` (created and deleted by the check; nothing else is touched).
"""

from __future__ import annotations

import os
import shutil
from typing import Callable

from testbed import exec as ex
from testbed import naming, netns, state
from testbed.errors import TestbedError
from testbed.proxy.iptables import apply
from testbed.proxy.iptables.restore import HostIptables
from testbed.proxy.iptables.syncer import IptablesSyncer
from testbed.proxy.syncer import ProxyConfig


def make_syncer(cfg: ProxyConfig, **host) -> IptablesSyncer:
    return IptablesSyncer(cfg, **host)


def problem() -> str | None:
    if shutil.which("iptables-restore") is None:
        return "proxy mode iptables needs iptables-restore, which is not on PATH (apt-get install iptables)"
    return None


def save_in(ns: str, *tables: str) -> str:
    """``iptables-save`` of the namespace ``ns`` (only ``tables`` if given)."""
    out = []
    for argv in ([["iptables-save", "-t", t] for t in tables] or [["iptables-save"]]):
        r = ex.run(argv, netns=ns, check=False)
        if r.returncode != 0:
            raise TestbedError(f"iptables-save in {ns} failed: {r.stderr.strip()}")
        out.append(r.stdout)
    return "".join(out)


def dump_rules(ns: str) -> str:
    """``iptables-save`` of a node (run inside the node's namespace)."""
    return save_in(ns)


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


def normalise(model: apply.RuleModel, cluster: str, prelude: Callable[[], None] | None = None
              ) -> apply.SavedTables:
    """The model as ``iptables-save`` prints it: restored into an empty scratch namespace.
    ``prelude`` runs there first and creates what the rules refer to (IPVS mode: its ipsets)."""
    text = apply.model_text(model, kube_only=True)
    name = f"{naming.cluster_prefix(cluster)}rulecheck.{os.getpid()}"

    def go() -> str:
        if prelude is not None:
            prelude()
        r = ex.run(["iptables-restore", "-w", "5"], input=text, check=False)
        if r.returncode != 0:
            raise TestbedError(f"the intended rules do not restore: {r.stderr.strip()}")
        out = []
        for table in ("filter", "nat"):
            s = ex.run(["iptables-save", "-t", table], check=False)
            out.append(s.stdout)
        return "".join(out)
    try:
        with netns.Runner(1) as r:
            saved = r.run_new(name, go)
    finally:
        netns.delete(name)
    return apply.parse_save(saved)


def check_rules(cluster: str, node: str, ns: str) -> tuple[list[apply.RuleDiff], str]:
    """Differences between what the node's proxy meant to write and the kernel (empty: same),
    and what was compared."""
    model = intended_model(cluster, node)
    intended = normalise(model, cluster)
    kernel = apply.parse_save(save_in(ns, "filter", "nat"))
    n = sum(len(apply.kube_chains(model, t)) for t in ("filter", "nat"))
    return apply.compare_rules(intended, kernel), f"the {n} KUBE-* chains kube-proxy wrote"


def cleanup() -> None:
    """Remove kube-proxy's chains and the jumps to them from this netns, in one restore."""
    ipt = HostIptables()
    text = apply.cleanup_text(apply.parse_save(ipt.save()))
    if not text:
        return
    rc, err = ipt.restore(text)
    if rc != 0:
        raise TestbedError(f"removing kube-proxy's iptables rules failed: {err.strip()}")
