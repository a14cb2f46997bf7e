"""Finding a request's frames again by its token, also inside VXLAN (no root, no network)."""

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from testbed.capture import Frame
from testbed.verify.packets import VXLAN_PORT, decode, flow, l4, payload, with_token


def _frame(pkt, outgoing=False) -> Frame:
    return Frame(0.0, bytes(pkt), outgoing)


def test_token_in_the_payload_selects_the_frame_and_direction():
    req = Ether() / IP(src="10.244.0.2", dst="10.96.0.10", ttl=64) / TCP(sport=40000, dport=80) / b"GET / tbv-abc"
    other = Ether() / IP(src="10.244.0.2", dst="10.96.0.10") / TCP(sport=40001, dport=80) / b"GET / tbv-xyz"
    dec = decode([_frame(req, outgoing=True), _frame(other, outgoing=True), _frame(req, outgoing=False)])
    assert [f.outgoing for f, _ in with_token(dec, b"tbv-abc")] == [True, False]
    assert [f.outgoing for f, _ in with_token(dec, b"tbv-abc", outgoing=False)] == [False]
    p = with_token(dec, b"tbv-abc")[0][1]
    assert flow(p) == "10.244.0.2:40000 > 10.96.0.10:80 ttl 64"
    assert payload(p) == b"GET / tbv-abc" and l4(p).dport == 80


def test_inner_looks_only_inside_vxlan():
    inner = Ether() / IP(src="10.244.0.2", dst="10.244.1.3") / UDP(sport=5000, dport=8080) / b"tbv-in"
    outer = Ether() / IP(src="192.168.0.2", dst="192.168.0.3") / UDP(sport=40000, dport=VXLAN_PORT) \
        / VXLAN(vni=1) / inner
    dec = decode([_frame(outer), _frame(inner)])
    found = with_token(dec, b"tbv-in", inner=True)
    assert len(found) == 1 and found[0][1][IP].src == "192.168.0.2"
    assert len(with_token(dec, b"tbv-in")) == 2  # without inner=, the outer UDP payload carries it too
