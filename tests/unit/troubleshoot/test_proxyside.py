"""A userspace-mode trace's pure half: the proxy's events as steps, the two legs, the result."""

from testbed.troubleshoot import proxyside
from testbed.troubleshoot.nftrace import Hop

N1 = "tb.c.node.node1"
EVENTS = {N1: [
    {"event": "accept", "service": "default/web:http", "protocol": "TCP", "client": "10.244.0.2:40000",
     "original_dst": "10.96.0.10:80", "listener": "10.244.0.1:33315"},
    {"event": "connect", "service": "default/web:http", "endpoint": "10.244.1.2:8080", "local": "10.244.0.0:51000"},
], "tb.c.node.node2": []}


def _hop(ns, src, sport, dst, dport, flags="syn"):
    return Hop(ns, "1", "ip", "nat", "PREROUTING", packet={"ip saddr": src, "tcp sport": sport, "ip daddr": dst,
                                                           "tcp dport": dport, "tcp flags": flags})


def test_events_become_steps_with_the_packet_before_and_after_the_proxy():
    accept, connect = proxyside.steps(EVENTS)
    assert accept.netns == N1 and accept.kind == "proxy" and accept.verdict == "accept"
    assert accept.packet["before"] == {"ip saddr": "10.244.0.2", "tcp sport": "40000", "ip daddr": "10.96.0.10",
                                       "tcp dport": "80"}
    assert accept.packet["after"]["ip daddr"] == "10.244.0.1" and accept.packet["after"]["tcp dport"] == "33315"
    assert connect.packet["after"] == {"ip saddr": "10.244.0.0", "tcp sport": "51000", "ip daddr": "10.244.1.2",
                                       "tcp dport": "8080"}
    assert "10.244.0.0:51000 -> 10.244.1.2:8080" in connect.rule
    assert proxyside.result([accept, connect], "") is None
    assert "10.244.0.0:51000" in proxyside.note(EVENTS)


def test_hops_split_into_the_client_leg_and_the_proxy_leg():
    local = proxyside.upstream_local(EVENTS)
    assert local == ("10.244.0.0", "51000")
    client = _hop(N1, "10.244.0.2", "40000", "10.96.0.10", "80")
    up = _hop(N1, "10.244.0.0", "51000", "10.244.1.2", "8080")
    back = _hop("tb.c.node.node2", "10.244.1.2", "8080", "10.244.0.0", "51000", "syn | ack")
    assert proxyside.split_legs([client, up, back], local) == ([client], [up, back])
    assert proxyside.split_legs([client], None) == ([client], [])


def test_no_endpoint_is_a_rejection_by_the_proxy():
    events = {N1: [EVENTS[N1][0], {"event": "no-endpoints", "service": "default/web:http", "detail": "no endpoints"},
                   {"event": "closed", "service": "default/web:http", "detail": "the accepted client connection is closed"}]}
    steps = proxyside.steps(events)
    assert [s.verdict for s in steps] == ["accept", "no-endpoints", "close"]
    res = proxyside.result(steps, "connection reset")
    assert res["outcome"] == "rejected" and res["netns"] == N1 and res["chain"] == "kube-proxy (userspace)"
    assert "closed" in res["rule"] and res["detail"].endswith("connection reset")
    assert proxyside.upstream_local(events) is None


def test_a_datagram_without_endpoint_is_dropped_by_the_proxy():
    events = {N1: [{"event": "accept", "service": "default/dns", "protocol": "UDP", "client": "10.244.0.2:5000",
                    "listener": "0.0.0.0:40000", "session": "new"},
                   {"event": "no-endpoints", "service": "default/dns", "detail": "datagram dropped: no endpoints"}]}
    steps = proxyside.steps(events)
    assert "received a datagram from 10.244.0.2:5000" in steps[0].rule
    res = proxyside.result(steps, "timed out")
    assert res["outcome"] == "dropped" and res["rule"] == "datagram dropped: no endpoints"


def test_what_the_userspace_proxy_ignores_is_a_note():
    svc = {"metadata": {"namespace": "default", "name": "local"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "externalTrafficPolicy": "Local",
                    "ports": [{"port": 81, "nodePort": 30081}]}}
    [note] = proxyside.unsupported(svc)
    assert note.startswith("userspace mode ignores spec.externalTrafficPolicy") and "Local is not supported" in note
    svc["spec"]["externalTrafficPolicy"] = "Cluster"
    assert proxyside.unsupported(svc) == []
