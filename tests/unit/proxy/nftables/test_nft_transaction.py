"""Planning transactions: full and partial syncs, stale chains, failures, affinity sets."""

import pytest

from testbed.proxy.nftables.render import NftablesConfig
from testbed.proxy.nftables.sync import NftablesSyncer
from testbed.proxy.nftables.table import sort_nft
from testbed.proxy.tracker import ProxyState
from tests.unit.proxy.conftest import ep, eps, svc

NODE = "test-node"


def cfg(**kw):
    base = dict(node_name=NODE, node_ip="192.168.0.2", detect_local_mode="ClusterCIDR",
                detect_local_value="10.0.0.0/8", mark_format="short",
                nodeport_addresses=("192.168.0.2/32",), node_addresses=("192.168.0.2",),
                service_cidrs=("172.30.0.0/16",))
    base.update(kw)
    return NftablesConfig(**base)


class Rig:
    def __init__(self, **kw):
        self.syncer = NftablesSyncer(cfg(**kw))
        self.state = ProxyState(NODE)
        self.now = 0.0

    def sync(self, *objects, existing=(), sets=()):
        self.state.apply(objects)
        plan = self.syncer.plan(self.state, now=self.now, existing_chains=existing,
                                existing_sets=sets)
        self.syncer.committed()
        return plan


def many(n):
    objs = []
    for i in range(n):
        objs.append(svc(f"s{i}", cip=f"172.30.{i // 250}.{i % 250 + 1}"))
        objs.append(eps(f"s{i}", "ns1", ep(f"10.1.{i // 250}.{i % 250 + 1}"),
                        ep(f"10.2.{i // 250}.{i % 250 + 1}")))
    return objs


def test_first_sync_is_full_and_recreates_base_chains_once():
    r = Rig()
    p1 = r.sync(*many(2))
    assert p1.full
    assert "delete chain ip kube-proxy nat-prerouting" in p1.text
    r.syncer.force_full_sync()
    p2 = r.sync()
    assert p2.full and "delete chain ip kube-proxy nat-prerouting" not in p2.text
    assert "flush map ip kube-proxy service-ips" in p2.text


def test_one_endpoint_change_touches_only_that_service():
    r = Rig()
    objs = many(50)
    r.sync(*objs)
    changed = eps("s7", "ns1", ep("10.1.0.8"), ep("10.9.9.9"))
    plan = r.sync(changed)
    assert not plan.full
    assert plan.updated_services == {("ns1", "s7")}
    for line in plan.text.splitlines():
        assert "ns1/s7/" in line, line
    # service chain rewritten (4 ops) + new endpoint chain (4) + unchanged endpoint chain (4)
    # + old endpoint chain flushed (1): as upstream counts.
    assert plan.transaction.operations == 13
    assert "flush chain ip kube-proxy endpoint-" in plan.text


def test_partial_sync_of_an_unchanged_state_is_empty():
    r = Rig()
    r.sync(*many(3))
    plan = r.sync()
    assert plan.text == "" and plan.transaction.operations == 0


def test_stale_chains_deleted_only_after_delay():
    r = Rig()
    r.sync(*many(2))
    r.state.delete_service(svc("s1"))
    p = r.sync()
    assert sorted(r.syncer.kernel.stale) == sorted(p.transaction.flushed_stale)
    flushed = p.transaction.flushed_stale
    assert len(flushed) == 3                            # service + 2 endpoint chains
    r.now = 0.5
    assert r.sync().text == ""                          # too young: kept
    r.now = 2.0
    p = r.sync()
    assert p.transaction.operations == 0
    assert sorted(ln.split()[-1] for ln in p.transaction.stale_deletes) == sorted(flushed)
    assert not r.syncer.kernel.stale
    assert "ns1/s1/" not in r.syncer.dump()


def test_failed_sync_forces_full_resync():
    r = Rig()
    r.sync(*many(2))
    r.state.apply([eps("s0", "ns1", ep("10.5.5.5"))])
    plan = r.syncer.plan(r.state, now=1.0)
    assert not plan.full
    r.syncer.failed()
    assert r.syncer.needs_full_sync
    plan = r.syncer.plan(r.state, now=1.0)
    assert plan.full and "10.5.5.5" in plan.text


def test_full_sync_flushes_foreign_service_chains_and_deletes_stale_affinity_sets():
    r = Rig()
    old_chain = "service-AAAAAAAA-old/gone/tcp/p"
    plan = r.sync(*many(1), existing=[old_chain, "services"],
                  sets=["affinity-BBBBBBBB-old/gone/tcp/p__1.2.3.4/80", "cluster-ips"])
    assert f"flush chain ip kube-proxy {old_chain}" in plan.text
    assert "delete set ip kube-proxy affinity-BBBBBBBB-old/gone/tcp/p__1.2.3.4/80" in plan.text
    assert "delete set ip kube-proxy cluster-ips" not in plan.text
    assert old_chain in r.syncer.kernel.stale


def test_affinity_timeout_change_replaces_the_set():
    r = Rig()
    s = svc("a", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}})
    r.sync(s, eps("a", "ns1", ep("10.1.1.1")))
    s2 = svc("a", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    plan = r.sync(s2)
    lines = plan.text.splitlines()
    d = next(i for i, ln in enumerate(lines) if ln.startswith("delete set ip kube-proxy affinity-"))
    a = next(i for i, ln in enumerate(lines) if ln.startswith("add set ip kube-proxy affinity-"))
    assert d < a and "timeout 60s" in lines[a]


def test_affinity_turned_off_deletes_sets_after_flushing_rules():
    r = Rig()
    s = svc("a", sessionAffinity="ClientIP")
    r.sync(s, eps("a", "ns1", ep("10.1.1.1")))
    plan = r.sync(svc("a"))
    lines = plan.text.splitlines()
    d = next(i for i, ln in enumerate(lines) if ln.startswith("delete set"))
    f = max(i for i, ln in enumerate(lines) if ln.startswith("flush chain"))
    assert f < d
    assert "affinity-" not in r.syncer.dump()


def test_element_value_change_is_delete_then_add():
    r = Rig()
    r.sync(svc("a"), eps("a", "ns1", ep("10.1.1.1")))
    plan = r.sync(eps("a", "ns1"))           # endpoints gone: service-ips -> no-endpoint-services
    text = plan.text
    assert "delete element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 }" in text
    assert ('add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 '
            'comment "ns1/a:p80" : goto reject-chain }') in text


def test_dump_equals_a_fresh_full_render_after_many_partial_syncs():
    r = Rig()
    r.sync(*many(20))
    for i in range(0, 20, 3):
        r.sync(eps(f"s{i}", "ns1", ep(f"10.7.0.{i + 1}")))
    r.state.delete_service(svc("s4"))
    r.sync()
    fresh = Rig()
    fresh.sync(*[o for o in many(20) if o["metadata"]["name"] not in ("s4",)])
    fresh.state.apply([eps(f"s{i}", "ns1", ep(f"10.7.0.{i + 1}")) for i in range(0, 20, 3)])
    fresh.syncer.force_full_sync()
    fresh.sync()
    stale = set(r.syncer.kernel.stale)
    ours = [ln for ln in sort_nft(r.syncer.dump()) if not any(ln.endswith(c) for c in stale)]
    assert ours == sort_nft(fresh.syncer.dump())


def test_topology_labels_force_full_sync():
    r = Rig()
    r.sync(*many(1))
    r.syncer.set_topology_labels({"topology.kubernetes.io/zone": "a"})
    assert r.syncer.needs_full_sync


@pytest.mark.parametrize("bad,msg", [
    ({"detect_local_mode": "Pods"}, "detect-local-mode 'Pods': allowed values are ClusterCIDR"),
    ({"mark_format": "hex"}, "mark format 'hex': allowed values are padded, short"),
])
def test_config_errors_are_one_line(bad, msg):
    with pytest.raises(ValueError, match=msg):
        cfg(**bad)


def test_ipv6_family_and_interface_detector():
    c = cfg(ip_family="IPv6", node_ip="2001:db8::1", detect_local_mode="InterfaceNamePrefix",
            detect_local_value="veth", nodeport_addresses=("2001:db8::/64",),
            node_addresses=("2001:db8::1", "192.168.0.2", "::1"), service_cidrs=("fd00:10:96::/112",))
    syncer = NftablesSyncer(c)
    state = ProxyState(NODE, "IPv6")
    state.apply([svc("a", cip="fd00:10:96::5", ports=(("p80", 80, "TCP", 30080),), type="NodePort"),
                 eps("a", "ns1", ep("fd00:10::5"), family="IPv6")])
    plan = syncer.plan(state, now=0)
    text = plan.text
    assert "add table ip6 kube-proxy" in text
    assert "{ type ipv6_addr ; comment \"Active ClusterIPs\" ; }" in text
    assert "add element ip6 kube-proxy nodeport-ips { 2001:db8::1 }" in text
    assert "ip6 daddr fd00:10:96::5 iifname != veth* jump mark-for-masquerade" in text
    assert "meta l4proto tcp dnat to [fd00:10::5]:80" in text
    assert "endpoint-" in text and "__fd00.10..5/80" in text
