import pytest

from testbed.proxy.model import (
    EndpointInfo,
    ServicePortName,
    categorize_endpoints,
    endpoints_map,
    service_port_map,
)
from testbed.proxy.tracker import ProxyState

from .conftest import NODE, ep, eps, svc

SPN = ServicePortName("ns1", "svc1", "p80", "TCP")


def test_service_port_name_string():
    assert str(SPN) == "ns1/svc1:p80"
    assert str(ServicePortName("ns", "s", "", "UDP")) == "ns/s"


def test_service_port_map_basic_fields():
    s = svc("svc1", type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30000,
            externalIPs=["192.168.099.11", "fd00::1"], sessionAffinity="ClientIP",
            loadBalancerSourceRanges=[" 203.0.113.7/25 ", "2001:db8::/32"],
            ports=(("p80", 80, "TCP", 3001), ("dns", 53, "UDP", 0)),
            status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb"},
                                                 {"ip": "5.6.7.8", "ipMode": "Proxy"}]}})
    m = service_port_map(s)
    info = m[SPN]
    assert info.cluster_ip == "172.30.0.41" and info.port == 80 and info.node_port == 3001
    assert info.external_ips == ("192.168.99.11",)          # sloppy parse, family filtered
    assert info.load_balancer_source_ranges == ("203.0.113.0/25",)   # trimmed + masked
    assert info.load_balancer_vips == ("1.2.3.4",)            # ipMode Proxy skipped
    assert info.health_check_node_port == 30000
    assert info.session_affinity_client_ip and info.sticky_max_age_seconds == 10800
    assert info.external_policy_local and not info.internal_policy_local
    assert info.uses_cluster_endpoints and info.uses_local_endpoints
    assert m[ServicePortName("ns1", "svc1", "dns", "UDP")].protocol == "UDP"


@pytest.mark.parametrize("spec", [
    {"clusterIP": "None"}, {"clusterIP": ""}, {"type": "ExternalName", "externalName": "x"},
    {"clusterIP": "fd00::1"},            # other family
])
def test_skipped_services(spec):
    assert service_port_map(svc("s", **spec)) == {}


def test_health_check_only_for_lb_local():
    s = svc("s", type="NodePort", externalTrafficPolicy="Local", healthCheckNodePort=30000,
            ports=(("p80", 80, "TCP", 3001),))
    info = service_port_map(s)[ServicePortName("ns1", "s", "p80", "TCP")]
    assert info.health_check_node_port == 0 and info.external_policy_local


def test_etp_local_needs_external_access():
    info = service_port_map(svc("s", externalTrafficPolicy="Local"))[
        ServicePortName("ns1", "s", "p80", "TCP")]
    assert not info.external_policy_local and not info.externally_accessible


def test_endpoints_sorted_deduplicated_and_filtered():
    slices = [
        eps("svc1", "ns1", ep("10.0.0.2"), ep("10.0.0.10", NODE), name="b"),
        eps("svc1", "ns1", ep("10.0.0.2", terminating=True, ready=False), ep("10.0.0.3"),
            name="a"),
        {**eps("svc1", "ns1", ep("10.9.9.9"), name="c"), "ports": [{"port": 80}]},  # nil name
        eps("svc1", "ns1", ep("fd00::1"), name="d", family="IPv6"),
    ]
    m = endpoints_map(slices, NODE)
    got = m[SPN]
    assert [str(e) for e in got] == ["10.0.0.10:80", "10.0.0.2:80", "10.0.0.3:80"]
    assert got[0].is_local and not got[1].is_local
    assert got[1].ready and not got[1].terminating      # non-terminating copy wins


def test_endpoint_conditions_defaults():
    (e,) = endpoints_map([eps("s", "ns1", ep("10.0.0.1", serving=False))], NODE)[
        ServicePortName("ns1", "s", "p80", "TCP")]
    assert e.ready and not e.serving and not e.terminating


def _info(**spec):
    return service_port_map(svc("svc1", **spec))[SPN]


def E(ip, local=False, ready=True, serving=True, terminating=False, zones=()):
    return EndpointInfo(ip, 80, local, ready, serving, terminating, frozenset(zones))


def test_categorize_cluster():
    info = _info()
    a, b = E("10.0.0.1"), E("10.0.0.2", ready=False, terminating=True)
    c = categorize_endpoints([a, b], info, NODE)
    assert c.cluster == (a,) and c.local == () and c.all_reachable == (a,) and c.has_any


def test_categorize_terminating_fallback():
    info = _info()
    a = E("10.0.0.1", ready=False, serving=True, terminating=True)
    b = E("10.0.0.2", ready=False, serving=False, terminating=True)
    c = categorize_endpoints([a, b], info, NODE)
    assert c.cluster == (a,) and c.has_any
    assert categorize_endpoints([b], info, NODE).has_any is False


def test_categorize_internal_local():
    info = _info(internalTrafficPolicy="Local")
    remote, local = E("10.0.0.1"), E("10.0.0.2", local=True)
    c = categorize_endpoints([remote, local], info, NODE)
    assert c.cluster == () and c.local == (local,) and c.all_reachable == (local,) and c.has_any
    c = categorize_endpoints([remote], info, NODE)
    assert c.local == () and c.has_any


def test_categorize_external_local_merges_terminating_local():
    info = _info(type="NodePort", externalTrafficPolicy="Local",
                 ports=(("p80", 80, "TCP", 3001),))
    remote = E("10.0.0.1")
    local_term = E("10.0.0.9", local=True, ready=False, terminating=True)
    c = categorize_endpoints([remote, local_term], info, NODE)
    assert c.cluster == (remote,) and c.local == (local_term,)
    assert c.all_reachable == (remote, local_term)


def test_categorize_zone_hints():
    info = _info()
    a, b = E("10.0.0.1", zones=["z1"]), E("10.0.0.2", zones=["z2"])
    assert categorize_endpoints([a, b], info, NODE,
                                {"topology.kubernetes.io/zone": "z1"}).cluster == (a,)
    assert categorize_endpoints([a, b], info, NODE,
                                {"topology.kubernetes.io/zone": "z3"}).cluster == (a, b)


def test_change_tracker():
    st = ProxyState(NODE)
    st.apply([svc("svc1"), eps("svc1", "ns1", ep("10.0.0.1"))])
    assert st.checkout().updated_services == {("ns1", "svc1")}
    assert st.checkout().updated_services == set()
    st.update_service(svc("svc1"))                      # identical: no change
    assert st.checkout().updated_services == set()
    s2 = svc("svc1")
    s2["metadata"]["labels"] = {"x": "y"}                # irrelevant Service field: no change
    st.update_service(s2)
    assert st.checkout().updated_services == set()
    sl = eps("svc1", "ns1", ep("10.0.0.1"))
    sl["metadata"]["resourceVersion"] = "2"             # any slice change counts (upstream)
    st.update_endpoint_slice(sl)
    assert st.checkout().updated_services == {("ns1", "svc1")}
    st.update_service(svc("svc1", cip="172.30.0.99"))
    st.update_service(svc("svc1"))                      # changed and back before the sync
    assert st.checkout().updated_services == set()
    st.delete_service(svc("svc1"))
    ch = st.checkout()
    assert ch.updated_services == {("ns1", "svc1")} and st.svc_port_map == {}
    assert st.total_endpoints() == 0 and len(st.endpoints_map) == 1


def test_change_tracker_udp_conntrack():
    udp = (("dns", 53, "UDP"),)
    st = ProxyState(NODE)
    st.apply([svc("dns", ports=(("dns", 53, "UDP", 0),)), eps("dns", "ns1", ports=udp)])
    ch = st.checkout()
    assert not ch.conntrack_cleanup_required
    st.update_endpoint_slice(eps("dns", "ns1", ep("10.0.0.1"), ep("10.0.0.2"), ports=udp))
    ch = st.checkout()
    spn = ServicePortName("ns1", "dns", "dns", "UDP")
    assert ch.newly_active_udp_services == [spn] and ch.deleted_udp_endpoints == []
    st.update_endpoint_slice(eps("dns", "ns1", ep("10.0.0.2"), ports=udp))
    ch = st.checkout()
    assert [(d.service_port, d.endpoint) for d in ch.deleted_udp_endpoints] == \
        [(spn, "10.0.0.1:53")]
    st.delete_service(svc("dns", ports=(("dns", 53, "UDP", 0),)))
    assert st.checkout().deleted_udp_cluster_ips == {"172.30.0.41"}


def test_replace_deletes_missing():
    st = ProxyState(NODE)
    st.replace([svc("a"), svc("b", cip="172.30.0.42"), eps("a", "ns1", ep("10.0.0.1"),
                                                        ports=(("p80", 80, "TCP"),))])
    st.checkout()
    st.replace([svc("a")])
    ch = st.checkout()
    assert ch.updated_services == {("ns1", "a"), ("ns1", "b")}
    assert st.services() == [("ns1", "a")] and st.endpoints_map == {}
