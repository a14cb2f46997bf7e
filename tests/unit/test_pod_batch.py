"""The netlink batch that builds a pod's network (pure: encoded, never sent)."""

from __future__ import annotations

import socket
import struct

from testbed import naming, netlink, topology
from testbed.plan import PodPlan

POD = PodPlan("default", "web-1", "node1", "tb.c.pod.default.web-1", "10.244.0.2", naming.pod_mac("10.244.0.2"),
              "vethabc", naming.host_veth_mac("10.244.0.2"), "10.244.0.1", 24, 1450)


def _attrs(body: bytes, off: int) -> dict[int, bytes]:
    out = {}
    while off + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, off)
        out[kind & 0x3FFF] = body[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def test_no_sysctl_ipv6_kept_quiet_by_netlink_before_eth0_is_up():
    b = topology.pod_batch(POD, "10.244.0.0/16", node_fd=7)
    whats = [r[3].split(": ", 1)[1] for r in b.requests]
    assert whats == ["lo up", "lo ::1 removed", "eth0", "eth0 up without IPv6 addresses",
                     "eth0 10.244.0.2/24", "default via 10.244.0.1", "10.244.0.0/16 via 10.244.0.1"]
    # eth0 is created down, and its peer is created down: no carrier before its IPv6 mode is set
    mtype, _, body, _ = b.requests[2]
    _, _, index, flags, change = struct.unpack_from("=BxHiII", body)
    assert (mtype, index, flags & netlink.IFF_UP) == (netlink.RTM_NEWLINK, naming.POD_ETH0, 0)
    mtype, _, body, _ = b.requests[3]
    _, _, index, flags, change = struct.unpack_from("=BxHiII", body)
    assert (mtype, index, flags, change) == (netlink.RTM_NEWLINK, naming.POD_ETH0, netlink.IFF_UP, netlink.IFF_UP)
    af = _attrs(_attrs(body, 16)[netlink.IFLA_AF_SPEC], 0)
    assert _attrs(af[socket.AF_INET6], 0) == {netlink.IFLA_INET6_ADDR_GEN_MODE: bytes([netlink.IN6_ADDR_GEN_MODE_NONE])}
    peer = _attrs(_attrs(_attrs(b.requests[2][2], 16)[netlink.IFLA_LINKINFO], 0)[netlink.IFLA_INFO_DATA], 0)
    assert struct.unpack_from("=BxHiII", peer[netlink.VETH_INFO_PEER])[3] == 0  # the peer: down


def test_loopback_ipv6_address_removed():
    mtype, flags, body, _ = topology.pod_batch(POD, "10.244.0.0/16", node_fd=7).requests[1]
    family, prefixlen, _, _, index = struct.unpack_from("=BBBBI", body)
    assert (mtype, family, prefixlen, index) == (netlink.RTM_DELADDR, socket.AF_INET6, 128, 1)
    assert _attrs(body, 8)[netlink.IFA_LOCAL] == socket.inet_pton(socket.AF_INET6, "::1")
    assert not flags & netlink.NLM_F_CREATE
