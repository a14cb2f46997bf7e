"""A mode's cleanup against a real kernel: after a full sync, ``modes.get(mode).cleanup()``
leaves none of the mode's kernel state (iptables: kube-proxy's chains and the jumps to them;
ipvs: also the virtual servers, ``kube-ipvs0`` and the ipsets), keeps every foreign rule, and
the next full sync installs everything again; a node switching between iptables and nftables
mode loses the other mode's rules and keeps flannel's. The IPVS case needs ip_vs (the kernel
lane)."""

from __future__ import annotations

import os
import re
import socket

import pytest

from testbed import netns, scenario
from testbed.cluster import Cluster
from testbed.proxy import modes
from testbed.proxy.iptables import apply
from testbed.proxy.iptables.restore import HostIptables
from testbed.proxy.iptables.syncer import IptablesSyncer
from testbed.proxy.ipvs import kernel as K
from testbed.proxy.ipvs.preflight import ipvs_problem
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


# ----------------------------------------------------------------------------- ipvs

_IPVS_PROBLEM = ipvs_problem()
_LANE = os.access(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               "scripts", "kernel-lane"), os.X_OK)


def _ipvs_sync_clean_sync():
    from pyroute2 import IPSet

    from testbed.proxy.ipvs import desired as D
    from testbed.proxy.ipvs.syncer import IpvsSyncer

    def kernel_view():
        k = K.IpvsKernel()
        try:
            services = len(k.list_services())
        finally:
            k.close()
        try:
            dummy = socket.if_nametoindex(D.DUMMY_DEVICE)
        except OSError:
            dummy = None
        with IPSet() as ips:
            sets = {m.get_attr("IPSET_ATTR_SETNAME") for m in ips.list()} & {s.name for s in D.IPSETS}
        chains = _proxy_chains(apply.parse_save(HostIptables().save()))
        return services, dummy, sets, {t: c for t, c in chains.items() if c}

    def full_sync():
        cfg = ProxyConfig(cluster="c", node_name="node1", node_ip="172.20.10.2", cluster_cidr="10.244.0.0/16",
                          min_sync_period=0)
        loop = ProxyLoop(cfg, IpvsSyncer(cfg, random_fully=True))
        loop.setup_host()
        for i in range(5):
            loop.state.update_service(_svc(i))
            loop.state.update_endpoint_slice(_slice(i))
        rec = loop.sync()
        loop.syncer.close()
        return rec

    first = full_sync()
    installed = kernel_view()
    modes.get("ipvs").cleanup()
    cleaned = kernel_view()
    again = full_sync()
    return first, installed, cleaned, again, kernel_view()


@pytest.mark.ipvs
@pytest.mark.skipif(_IPVS_PROBLEM is not None and _LANE,
                    reason=f"{_IPVS_PROBLEM} (scripts/test runs it through scripts/kernel-lane -m ipvs)")
def test_ipvs_cleanup_removes_virtual_servers_dummy_sets_and_rules():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": uniq("kpmodesipvs")},
           "spec": {"nodes": 1, "externals": 0}}
    c = Cluster.up(scenario.parse(doc), control_plane=False)
    try:
        first, installed, cleaned, again, reinstalled = c.run_in("node/node1", _ipvs_sync_clean_sync)
    finally:
        c.down()
    assert first.ok and again.ok, (first, again)
    services, dummy, sets, chains = installed
    assert services == 5 and dummy is not None and sets and "nat" in chains
    assert cleaned == (0, None, set(), {})
    assert reinstalled[0] == 5 and reinstalled[1] is not None and reinstalled[2:] == installed[2:]


# ----------------------------------------------------------------------------- nftables

def _nft_full_sync(n: int):
    from testbed.proxy.nftables.syncer import NftablesSyncer
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="172.20.0.2", cluster_cidr="10.244.0.0/16",
                      min_sync_period=0)
    loop = ProxyLoop(cfg, NftablesSyncer(cfg))
    for i in range(n):
        loop.state.update_service(_svc(i))
        loop.state.update_endpoint_slice(_slice(i))
    rec = loop.sync()
    loop.syncer.close()
    return rec


def _nft_table() -> str:
    import subprocess
    r = subprocess.run(["nft", "list", "table", "ip", "kube-proxy"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def _switch_iptables_nftables_iptables():
    assert HostIptables().restore(FOREIGN)[0] == 0
    ipt = _full_sync(5)
    to_nft = modes.cleanup_conflicting("nftables")
    after_ipt_clean = apply.parse_save(HostIptables().save())
    nft = _nft_full_sync(5)
    table = _nft_table()
    to_ipt = modes.cleanup_conflicting("iptables")
    return ipt, to_nft, after_ipt_clean, nft, table, to_ipt, _nft_table(), apply.parse_save(HostIptables().save())


def test_switching_to_nftables_and_back_cleans_the_other_modes_rules(node_ns):
    ipt, to_nft, cleaned, nft, table, to_ipt, table_after, saved = node_ns(_switch_iptables_nftables_iptables)
    assert ipt.ok and nft.ok and nft.full
    assert "iptables" in to_nft and to_ipt == ["nftables", "userspace"]
    assert all(not chains for chains in _proxy_chains(cleaned).values()), _proxy_chains(cleaned)
    assert "table ip kube-proxy {" in table and len(re.findall(r"chain service-[A-Z0-9]{8}-", table)) == 5
    assert table_after == ""
    for s in (cleaned, saved):          # flannel's rules stay through both switches
        assert "-A POSTROUTING -j FLANNEL-POSTRTG" in s.rules["nat"]
        assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN" in s.rules["nat"]
