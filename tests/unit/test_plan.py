"""Address allocation and the plan of what will be built (no root)."""

from __future__ import annotations

import ipaddress

import pytest

from testbed import naming
from testbed.errors import ValidationError
from testbed.ipam import HostLocal, RangeFull
from testbed.plan import Plan, build_plan
from testbed.scenario import parse


def pod(name, node=None, ns=None):
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node} if node else {}}


def scen(manifests=(), **spec):
    return parse({"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "c1"},
                  "spec": {"nodes": 3, **spec}, "manifests": list(manifests)})


def test_host_local_allocation_skips_gateway_and_round_robins():
    a = HostLocal(ipaddress.IPv4Network("10.244.1.0/29"))
    got = [a.allocate(str(i)) for i in range(5)]
    assert got == ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]
    a.release("10.244.1.3")
    assert a.allocate("x") == "10.244.1.3"  # wrapped around: the only free one
    with pytest.raises(RangeFull):
        a.allocate("y")
    b = HostLocal(ipaddress.IPv4Network("10.244.1.0/24"))
    b.allocate("p"), b.allocate("q")
    b.release("10.244.1.2")
    assert b.allocate("r") == "10.244.1.4"  # freed addresses are not reused until the range wraps
    c = HostLocal(ipaddress.IPv4Network("10.244.1.0/24"), **b.to_dict())
    assert c.allocate("s") == "10.244.1.5"


def test_nodes_subnets_addresses_and_flannel_peers():
    p = build_plan(scen())
    assert [(n.name, n.pod_cidr, n.ip, n.cni_ip, n.vtep_ip, n.mtu) for n in p.nodes] == [
        ("node1", "10.244.0.0/24", "172.20.10.2", "10.244.0.1", "10.244.0.0", 1450),
        ("node2", "10.244.1.0/24", "172.20.10.3", "10.244.1.1", "10.244.1.0", 1450),
        ("node3", "10.244.2.0/24", "172.20.10.4", "10.244.2.1", "10.244.2.0", 1450)]
    assert [(x.node, x.pod_cidr, x.node_ip, x.vtep_ip) for x in p.nodes[0].peers] == [
        ("node2", "10.244.1.0/24", "172.20.10.3", "10.244.1.0"),
        ("node3", "10.244.2.0/24", "172.20.10.4", "10.244.2.0")]
    assert p.nodes[1].vtep_mac == "0e:00:0a:f4:01:00" and p.nodes[0].peers[0].vtep_mac == p.nodes[1].vtep_mac
    assert p.underlay.gateway == "172.20.10.1" and p.externals[0].ip == "172.20.10.100"
    assert p.nodes[0].netns == "tb.c1.node.node1" and p.underlay.netns == "tb.c1.underlay"


def test_pods_placed_by_node_name_or_spread_evenly():
    p = build_plan(scen([pod("a", "node1"), pod("b", "node1"), pod("c"), pod("d"), pod("e"), pod("f", ns="kube-system")]), control_plane=False)
    placed = {x.name: (x.node, x.ip) for x in p.pods}
    assert placed["a"] == ("node1", "10.244.0.2") and placed["b"] == ("node1", "10.244.0.3")
    assert placed["c"] == ("node2", "10.244.1.2") and placed["d"] == ("node3", "10.244.2.2")
    assert placed["e"] == ("node2", "10.244.1.3")
    f = next(x for x in p.pods if x.name == "f")
    assert f.netns == "tb.c1.pod.kube-system.f" and f.gateway == "10.244.2.1" and f.mtu == 1450
    assert f.host_veth == naming.host_veth("c1", "kube-system", "f") and len(f.host_veth) == 12
    assert f.mac == "0a:58:0a:f4:02:03"


def test_plan_round_trips_through_json():
    p = build_plan(scen([pod("a")], backend="host-gw"), control_plane=False)
    q = Plan.from_dict(p.to_dict())
    assert q == p and q.nodes[0].mtu == 1500


def test_duplicate_pods_and_full_subnets_are_errors():
    with pytest.raises(ValidationError, match="pod default/a: defined twice"):
        build_plan(scen([pod("a"), pod("a")]), control_plane=False)
    many = [pod(f"p{i}", "node1") for i in range(15)]
    with pytest.raises(ValidationError, match="node node1: no free address left in 10.244.0.0/28"):
        build_plan(scen(many, nodeSubnetPrefix=28), control_plane=False)


def test_long_pod_names_keep_netns_names_short():
    name = naming.pod_netns("c", "ns", "x" * 253)
    assert len(name) <= 200 and name.startswith("tb.c.pod.ns.xxx")
