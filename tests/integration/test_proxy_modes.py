"""A mode's cleanup against a real kernel: after an iptables-mode full sync in a scratch node
namespace, ``modes.get("iptables").cleanup()`` leaves none of kube-proxy's chains or jumps,
keeps every foreign rule, is idempotent, and the next full sync installs everything again."""

from __future__ import annotations

import pytest

from testbed import netns
from testbed.proxy import modes
from testbed.proxy.iptables import apply
from testbed.proxy.iptables.restore import HostIptables
from testbed.proxy.iptables.syncer import IptablesSyncer
from testbed.proxy.loop import ProxyLoop
from testbed.proxy.syncer import ProxyConfig

from .netutil import uniq
from .test_restore_stream import _slice, _svc

pytestmark = [pytest.mark.root]

FOREIGN = ("*nat\n:FLANNEL-POSTRTG - [0:0]\n-A POSTROUTING -j FLANNEL-POSTRTG\n"
           "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN\nCOMMIT\n")


@pytest.fixture
def node_ns():
    name = f"tb.{uniq('kpmodes')}.node.n1"
    with netns.Runner() as runner:
        runner.run_new(name, lambda: None)
        try:
            yield lambda fn, *a: runner.run_in(name, fn, *a)
        finally:
            netns.delete(name)


def _full_sync(n: int):
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="172.20.0.2", cluster_cidr="10.244.0.0/16",
                      min_sync_period=0, replace_full_sync=True, skip_unchanged_chains=True)
    loop = ProxyLoop(cfg, IptablesSyncer(cfg, random_fully=True, be_liberal=False))
    for i in range(n):
        loop.state.update_service(_svc(i))
        loop.state.update_endpoint_slice(_slice(i))
    return loop.sync()


def _proxy_chains(saved: apply.SavedTables) -> dict[str, set[str]]:
    return {t: {c for c in chains if apply.is_proxy_chain(c)} for t, chains in saved.chains.items()}


def _sync_clean_sync():
    assert HostIptables().restore(FOREIGN)[0] == 0
    first = _full_sync(20)
    installed = apply.parse_save(HostIptables().save())
    modes.get("iptables").cleanup()
    cleaned = apply.parse_save(HostIptables().save())
    modes.get("iptables").cleanup()              # nothing left to remove: no restore, no error
    again = _full_sync(20)
    return first, installed, cleaned, again, apply.parse_save(HostIptables().save())


def test_iptables_cleanup_removes_only_kube_proxy_rules(node_ns):
    first, installed, cleaned, again, reinstalled = node_ns(_sync_clean_sync)
    assert first.ok and again.ok and again.full
    assert len([c for c in installed.chain_names("nat") if c.startswith("KUBE-SVC-")]) == 20
    assert all(not chains for chains in _proxy_chains(cleaned).values()), _proxy_chains(cleaned)
    for table, rules in cleaned.rules.items():
        assert not [r for r in rules if any(f"-j {c}" in r for c in _proxy_chains(installed)[table])], table
    assert "-A POSTROUTING -j FLANNEL-POSTRTG" in cleaned.rules["nat"]
    assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN" in cleaned.rules["nat"]
    assert cleaned.has_chain("filter", "KUBE-FIREWALL")          # kubelet's chain stays
    assert _proxy_chains(reinstalled) == _proxy_chains(installed)
