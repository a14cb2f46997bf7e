"""Encoding of the IPVS / ipset netlink requests (pure; decoded back with pyroute2's own
message classes, so both sides agree on the wire format)."""

from __future__ import annotations

import socket
import struct

import pytest
from pyroute2.netlink.generic import ipvs as pr_ipvs
from pyroute2.netlink.nfnetlink.ipset import ipset_msg

from testbed import netlink
from testbed.proxy.ipvs import desired as D
from testbed.proxy.ipvs import kernel as K
from testbed.proxy.ipvs.desired import RealServer, VirtualServer, VSKey


def _wrap(mtype: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, netlink.REQUEST, 1, 0) + body


def test_service_roundtrip_and_pyroute2_decoding():
    vs = VirtualServer("10.96.0.10", "UDP", 53, "rr", D.FLAG_PERSISTENT, 10800)
    body = K.service_body(K.IPVS_CMD_NEW_SERVICE, vs)
    assert K.parse_service(body) == vs
    msg = pr_ipvs.ipvsmsg(_wrap(0x20, body))
    msg.decode()
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_PORT") == 53
    assert svc.get_attr("IPVS_SVC_ATTR_PROTOCOL") == socket.IPPROTO_UDP
    assert svc.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "rr"
    assert svc.get_attr("IPVS_SVC_ATTR_TIMEOUT") == 10800
    assert svc.get_attr("IPVS_SVC_ATTR_FLAGS")["flags"] == D.FLAG_PERSISTENT


def test_dest_is_masquerade_weight_one():
    body = K.dest_body(K.IPVS_CMD_NEW_DEST, VSKey("10.96.0.10", "TCP", 80), RealServer("10.244.1.2", 8080))
    msg = pr_ipvs.ipvsmsg(_wrap(0x20, body))
    msg.decode()
    d = msg.get_attr("IPVS_CMD_ATTR_DEST")
    assert d.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == 0          # IP_VS_CONN_F_MASQ
    assert d.get_attr("IPVS_DEST_ATTR_WEIGHT") == 1
    assert d.get_attr("IPVS_DEST_ATTR_PORT") == 8080
    assert K.parse_dest(body) == (RealServer("10.244.1.2", 8080, 1), 0)


@pytest.mark.parametrize("name,entry", [
    ("KUBE-CLUSTER-IP", "10.96.0.10,tcp:80"),
    ("KUBE-LOOP-BACK", "10.244.0.5,udp:53,10.244.0.5"),
    ("KUBE-LOAD-BALANCER-SOURCE-CIDR", "172.20.10.240,tcp:80,203.0.113.0/24"),
    ("KUBE-NODE-PORT-TCP", "30080"),
    ("KUBE-IPVS-IPS", "10.96.0.10"),
])
def test_ipset_entries_decode_to_the_same_string(name, entry):
    body = K.ipset_body(name, D.SET_BY_NAME[name].type, entry)
    msg = ipset_msg(_wrap((K.NFNL_SUBSYS_IPSET << 8) | K.IPSET_CMD_ADD, body))
    msg.decode()
    assert msg.get_attr("IPSET_ATTR_SETNAME") == name
    data = msg.get_attr("IPSET_ATTR_DATA")
    assert K.entry_from_pyroute2(D.SET_BY_NAME[name].type, data) == entry


def test_parse_attrs_masks_flags():
    buf = K._nest(7, K._attr(1, b"abcd"))
    assert K.parse_attrs(buf) == {7: K._attr(1, b"abcd")}
