"""Pure parts every proxy mode shares: conntrack filters, health-check inputs, trigger times."""

from testbed.proxy import apply
from testbed.proxy.apply import ConntrackFilter
from testbed.proxy.model import ServicePortName
from testbed.proxy.tracker import ProxyState, ServiceEndpoint, StateChange

from .conftest import NODE, ep, eps, svc


# ----------------------------------------------------------------------------- conntrack

def _udp_state(*objs):
    st = ProxyState(NODE)
    st.apply(objs)
    st.checkout()
    return st


def test_conntrack_filters_endpoint_removed():
    s = svc("dns", cip="172.30.0.10", ports=(("dns", 53, "UDP", 30053),), type="NodePort",
            externalIPs=["192.168.99.1"])
    st = _udp_state(s, eps("dns", "ns1", ep("10.0.0.1"), ep("10.0.0.2"), ports=(("dns", 5353, "UDP"),)))
    st.update_endpoint_slice(eps("dns", "ns1", ep("10.0.0.2"), ep("10.0.0.3"), ports=(("dns", 5353, "UDP"),)))
    ch = st.checkout()
    fs = apply.conntrack_filters(ch, st.svc_port_map)
    assert [(f.orig_dst, f.orig_dport, f.reply_src) for f in fs] == [
        ("172.30.0.10", 53, "10.0.0.1"), ("192.168.99.1", 53, "10.0.0.1"), (None, 30053, "10.0.0.1")]


def test_conntrack_filters_newly_active_and_deleted():
    s = svc("dns", cip="172.30.0.10", ports=(("dns", 53, "UDP", 0),))
    st = _udp_state(s)
    st.update_endpoint_slice(eps("dns", "ns1", ep("10.0.0.1"), ports=(("dns", 5353, "UDP"),)))
    fs = apply.conntrack_filters(st.checkout(), st.svc_port_map)
    assert [(f.orig_dst, f.orig_dport, f.reply_src) for f in fs] == [("172.30.0.10", 53, None)]
    st.delete_service(s)
    fs = apply.conntrack_filters(st.checkout(), st.svc_port_map)
    assert [(f.orig_dst, f.orig_dport, f.reply_src) for f in fs] == [("172.30.0.10", None, None)]


def test_conntrack_filters_ignore_tcp_and_unknown_services():
    spn = ServicePortName("ns1", "gone", "p", "UDP")
    ch = StateChange(deleted_udp_endpoints=[ServiceEndpoint(spn, "10.0.0.1:53")],
                     newly_active_udp_services=[spn])
    assert apply.conntrack_filters(ch, {}) == []
    st = _udp_state(svc("web"), eps("web", "ns1", ep("10.0.0.1")))
    st.update_endpoint_slice(eps("web", "ns1", ep("10.0.0.2")))
    assert apply.conntrack_filters(st.checkout(), st.svc_port_map) == []


def test_conntrack_filter_ipv6_endpoint():
    assert apply._endpoint_ip("[fd00::1]:53") == "fd00::1"
    assert apply._endpoint_ip("10.0.0.1:53") == "10.0.0.1"


def test_select_entries():
    fs = [ConntrackFilter(orig_dst="172.30.0.10", orig_dport=53, reply_src="10.0.0.1"),
          ConntrackFilter(orig_dport=30053, reply_src="10.0.0.1")]
    rows = [(17, "172.30.0.10", 53, "10.0.0.1", "a"),      # cluster IP to the old endpoint
            (17, "172.30.0.10", 53, "10.0.0.2", "b"),      # to the surviving endpoint
            (17, "172.30.0.10", 54, "10.0.0.1", "c"),      # other port
            (17, "172.20.10.2", 30053, "10.0.0.1", "d"),   # NodePort to the old endpoint
            (6, "172.30.0.10", 53, "10.0.0.1", "e")]       # TCP
    assert [r[4] for r in apply.select_entries(fs, rows)] == ["a", "d"]
    assert fs[0].describe() == "-p udp --orig-dst 172.30.0.10 --dport 53 --dst-nat 10.0.0.1"


# ----------------------------------------------------------------------------- health checks

def test_health_inputs():
    lb = svc("lb", cip="172.30.0.50", ports=(("p80", 80, "TCP", 30080), ("p81", 81, "TCP", 30081)),
             type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=30999)
    st = _udp_state(lb, svc("plain"),
                    eps("lb", "ns1", ep("10.0.0.1", NODE), ep("10.0.0.2", "other"), ep("10.0.0.3", NODE, ready=False),
                        ports=(("p80", 8080, "TCP"), ("p81", 8081, "TCP"))))
    ports = apply.health_check_ports(st)
    assert ports == {("ns1", "lb"): 30999}
    assert apply.local_ready_endpoints(st, ports) == {("ns1", "lb"): 1}
    st.delete_endpoint_slice(eps("lb", "ns1"))
    st.checkout()
    assert apply.local_ready_endpoints(st, ports) == {("ns1", "lb"): 0}


# ----------------------------------------------------------------------------- trigger times

def test_trigger_time():
    obj = {"metadata": {"annotations": {apply.TRIGGER_ANNOTATION: "2024-01-02T03:04:05Z"}}}
    assert apply.trigger_time(obj, 5.0) == 1704164645.0
    obj["metadata"]["annotations"][apply.TRIGGER_ANNOTATION] = "2024-01-02T03:04:05.250000+00:00"
    assert apply.trigger_time(obj, 5.0) == 1704164645.25
    assert apply.trigger_time({"metadata": {}}, 5.0) == 5.0
    obj["metadata"]["annotations"][apply.TRIGGER_ANNOTATION] = "garbage"
    assert apply.trigger_time(obj, 5.0) == 5.0
