"""Scenario parsing and validation: every error case with its message (no root)."""

from __future__ import annotations

import pytest

from testbed.errors import ValidationError
from testbed.scenario import load, parse


def base(**spec) -> dict:
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "t"}, "spec": spec}


def problems(doc: dict) -> list[str]:
    with pytest.raises(ValidationError) as e:
        parse(doc, source="s.yaml")
    assert str(e.value).startswith("s.yaml: ")
    return [str(p) for p in e.value.problems]


def test_defaults():
    s = parse(base())
    assert [n.name for n in s.nodes] == ["node1", "node2"]
    assert str(s.pod_network) == "10.244.0.0/16" and s.node_prefix == 24
    assert str(s.service_network) == "10.96.0.0/12"
    assert str(s.underlay_network) == "172.20.10.0/24" and s.underlay_mtu == 1500
    assert (s.backend, s.hairpin_mode, s.proxy_mode) == ("vxlan", "hairpin-veth", "iptables")
    assert [e.name for e in s.externals] == ["client"]
    assert s.pod_mtu == 1450
    assert s.nodes[0].labels == {"kubernetes.io/hostname": "node1"}


def test_node_list_with_labels_and_host_gw_mtu():
    s = parse(base(nodes=[{"name": "a", "labels": {"zone": "z1"}}, "b"], backend="host-gw",
                   underlay={"mtu": 9000}, externals=[{"name": "ext1"}, "ext2"]))
    assert [(n.name, n.labels.get("zone")) for n in s.nodes] == [("a", "z1"), ("b", None)]
    assert s.pod_mtu == 9000
    assert [e.name for e in s.externals] == ["ext1", "ext2"]


def test_unknown_fields_listed_with_allowed_values():
    msgs = problems({**base(nodez=3), "extra": 1})
    assert any(m.startswith("extra: unknown field; allowed: apiVersion, checks, kind") for m in msgs)
    assert any(m.startswith("spec.nodez: unknown field; allowed: addons, backend, externals,") for m in msgs)


def test_bad_enums_name_allowed_values():
    msgs = problems(base(backend="udp", hairpinMode="on", proxyMode="ebpf"))
    assert "spec.backend: unsupported value 'udp'; allowed: vxlan, host-gw" in msgs
    assert "spec.hairpinMode: unsupported value 'on'; allowed: hairpin-veth, promiscuous-bridge, none" in msgs
    assert "spec.proxyMode: unsupported value 'ebpf'; allowed: iptables, ipvs, nftables, userspace, none" in msgs


def test_all_problems_reported_at_once():
    msgs = problems({"apiVersion": "v1", "kind": "Pod", "spec": {"podNetwork": "10.0.0.0/33", "underlay": {"mtu": 100}}})
    assert len(msgs) >= 4
    assert "apiVersion: must be 'testbed/v1', got 'v1'" in msgs
    assert "kind: must be 'Scenario', got 'Pod'" in msgs
    assert any(m.startswith("spec.podNetwork: '10.0.0.0/33' is not an IPv4 network") for m in msgs)
    assert "spec.underlay.mtu: must be an integer from 1280 to 9000, got 100" in msgs


def test_overlapping_cidrs():
    msgs = problems(base(podNetwork="10.0.0.0/8", serviceNetwork="10.96.0.0/12"))
    assert "spec.serviceNetwork: 10.96.0.0/12 overlaps spec.podNetwork 10.0.0.0/8" in msgs
    msgs = problems(base(underlay={"network": "10.244.5.0/24"}))
    assert "spec.underlay.network: 10.244.5.0/24 overlaps spec.podNetwork 10.244.0.0/16" in msgs


def test_too_many_nodes_for_pod_network():
    msgs = problems(base(nodes=5, podNetwork="10.244.0.0/22"))
    assert "spec.nodes: 5 nodes need 5 /24 subnets but spec.podNetwork 10.244.0.0/22 has only 4" in msgs


def test_interface_name_limit():
    msgs = problems(base(nodes=[{"name": "a-very-long-node-name"}]))
    assert any("spec.nodes[0].name: 'a-very-long-node-name' is 21 characters; at most 15" in m for m in msgs)


def test_duplicate_and_clashing_names():
    msgs = problems(base(nodes=["a", "a"], externals=["a"]))
    assert "spec.nodes[1].name: duplicate node name 'a'" in msgs
    assert "spec.externals[0].name: 'a' is already used by spec.nodes[0]" in msgs


def test_bad_cluster_name():
    msgs = problems({**base(), "metadata": {"name": "Bad.Name"}})
    assert any(m.startswith("metadata.name: 'Bad.Name' is not a valid cluster name") for m in msgs)


def test_pod_placed_on_unknown_node():
    doc = base()
    doc["manifests"] = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "zz"}}]
    assert "manifests[0].spec.nodeName: unknown node 'zz'; nodes: node1, node2" in problems(doc)


def test_manifests_by_file_and_lists(tmp_path):
    (tmp_path / "pods.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n")
    (tmp_path / "s.yaml").write_text(
        "apiVersion: testbed/v1\nkind: Scenario\nspec: {nodes: 1}\nmanifests:\n- file: pods.yaml\n- missing.yaml\n")
    with pytest.raises(ValidationError) as e:
        load(str(tmp_path / "s.yaml"))
    assert [str(p) for p in e.value.problems] == [
        f"manifests[1].file: 'missing.yaml' not found (relative to {tmp_path})"]
    (tmp_path / "s.yaml").write_text(
        "apiVersion: testbed/v1\nkind: Scenario\nspec: {nodes: 1}\nmanifests:\n- file: pods.yaml\n")
    s = load(str(tmp_path / "s.yaml"))
    assert s.name == "s"  # from the file name
    assert [m["metadata"]["name"] for m in s.manifests] == ["a", "b"]


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ValidationError, match="file not found"):
        load(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("spec: [\n")
    with pytest.raises(ValidationError, match="not valid YAML"):
        load(str(tmp_path / "bad.yaml"))


def test_shipped_scenarios_are_valid():
    import glob

    files = sorted(glob.glob("scenarios/*.yaml"))
    assert "scenarios/quickstart.yaml" in files
    for f in files:
        load(f)


# --- spec.proxy (kube-proxy timing) and the load-balancer pool ---------------------------------

def test_proxy_timing_defaults_and_durations():
    s = parse(base())
    assert (s.proxy_min_sync_period, s.proxy_sync_period) == (1.0, 30.0)
    s = parse(base(proxy={"minSyncPeriod": "250ms", "syncPeriod": "1m30s"}))
    assert (s.proxy_min_sync_period, s.proxy_sync_period) == (0.25, 90.0)
    s = parse(base(proxy={"minSyncPeriod": 0, "syncPeriod": "1.5s"}))
    assert (s.proxy_min_sync_period, s.proxy_sync_period) == (0.0, 1.5)


def test_proxy_timing_is_validated():
    msgs = problems(base(proxy={"minSyncPeriod": "fast", "syncPeriod": "0s", "burst": 2}))
    assert any(m.startswith("spec.proxy.burst: unknown field; allowed: minSyncPeriod, syncPeriod") for m in msgs)
    assert "spec.proxy.minSyncPeriod: 'fast' is not a duration (e.g. 1s, 250ms, 1m30s)" in msgs
    assert "spec.proxy.syncPeriod: '0s': must be greater than 0" in msgs
    msgs = problems(base(proxy={"minSyncPeriod": "10s", "syncPeriod": "5s"}))
    assert msgs == ["spec.proxy.syncPeriod: '5s': must be greater than or equal to spec.proxy.minSyncPeriod '10s'"]
    msgs = problems(base(proxy="1s"))
    assert msgs == ["spec.proxy: must be a mapping, got str"]


def test_proxy_timing_reaches_the_plan():
    from testbed.plan import build_plan

    p = build_plan(parse(base(proxy={"minSyncPeriod": "100ms"})))
    assert (p.proxy_min_sync_period, p.proxy_sync_period) == (0.1, 30.0)


def test_lb_pool_default_is_outside_the_underlay():
    from testbed.plan import build_plan

    assert build_plan(parse(base())).lb_pool == "172.20.11.0/24"
    assert build_plan(parse(base(underlay={"network": "192.168.0.0/23"}))).lb_pool == "192.168.2.0/24"
    # a pod network right after the underlay is skipped
    assert build_plan(parse(base(podNetwork="172.20.11.0/24", nodeSubnetPrefix=26))).lb_pool == "172.20.12.0/24"
    assert build_plan(parse(base(loadBalancerPool="198.51.100.0/28"))).lb_pool == "198.51.100.0/28"


def test_lb_pool_inside_the_underlay_is_refused():
    msgs = problems(base(loadBalancerPool="172.20.10.240/28"))
    assert msgs == ["spec.loadBalancerPool: 172.20.10.240/28 overlaps spec.underlay.network 172.20.10.0/24: "
                    "load-balancer addresses are routed from the underlay to the nodes, so the pool must be "
                    "outside it"]
