"""rtnetlink messages encoded by hand and sent in batches.

One batch is one ``sendmsg`` of many requests on a NETLINK_ROUTE socket that was opened inside
the target namespace; the kernel processes them in order and acknowledges each one, so a pod
costs one system call instead of one round trip per attribute.  Encoding with ``struct`` is
~50x faster than building pyroute2 message objects, which matters at 1,000 pods.

Requests name links by index where the kernel needs it (addresses, routes, neighbours); the
topology code chooses interface indexes itself in namespaces it just created.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field

# message types
RTM_NEWLINK, RTM_DELLINK, RTM_SETLINK = 16, 17, 19
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
NLMSG_ERROR, NLMSG_DONE = 2, 3

# flags
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
APPEND = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
REQUEST = NLM_F_REQUEST | NLM_F_ACK

IFF_UP = 0x1
IFF_PROMISC = 0x100

# link attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_AF_SPEC, IFLA_NET_NS_FD = 18, 20, 26, 28
IFLA_INET6_ADDR_GEN_MODE = 8
IN6_ADDR_GEN_MODE_NONE = 1
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT = 15
# address / route / neighbour attributes
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x4
RT_TABLE_MAIN, RTPROT_BOOT, RTPROT_KERNEL = 254, 3, 2
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
AF_BRIDGE = 7

SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
NLMSGERR_ATTR_MSG = 1

MAX_BATCH_BYTES = 48 * 1024


class NetlinkError(OSError):
    """A request of a batch failed; carries what the request was meant to do."""

    def __init__(self, err: int, what: str, kernel_msg: str = ""):
        detail = f": {kernel_msg}" if kernel_msg else ""
        super().__init__(err, f"{what}: {os.strerror(err)}{detail}")
        self.what = what


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length & 3)


def a_str(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def a_u8(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=B", value))


def a_u16be(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("!H", value))


def a_u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def a_ip(kind: int, value: str) -> bytes:
    return _attr(kind, ipaddress.IPv4Address(value).packed)


def a_mac(kind: int, value: str) -> bytes:
    return _attr(kind, bytes.fromhex(value.replace(":", "")))


def a_nest(kind: int, *children: bytes) -> bytes:
    return _attr(kind, b"".join(children))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return struct.pack("=BxHiII", family, 0, index, flags, change)


@dataclass
class Batch:
    """Requests for one namespace; ``send(sock)`` issues them with as few syscalls as possible."""

    requests: list[tuple[int, int, bytes, str]] = field(default_factory=list)

    def add(self, mtype: int, flags: int, body: bytes, what: str) -> None:
        self.requests.append((mtype, flags, body, what))

    def __len__(self) -> int:
        return len(self.requests)

    # --- links -------------------------------------------------------------------------
    def link_set(self, what: str, *, index: int = 0, name: str | None = None, up: bool | None = None,
                 master: int | None = None, mtu: int | None = None, alias: str | None = None,
                 promisc: bool | None = None, ipv6_addresses: bool | None = None) -> None:
        """``ipv6_addresses=False``: the kernel gives the link no IPv6 address of its own (IPv6
        address generation mode ``none``: no link-local address, hence no DAD, router
        solicitation or MLD report); it must reach the kernel before the link has carrier."""
        flags = change = 0
        if up is not None:
            change |= IFF_UP
            flags |= IFF_UP if up else 0
        if promisc is not None:
            change |= IFF_PROMISC
            flags |= IFF_PROMISC if promisc else 0
        attrs = b""
        if name is not None and not index:
            attrs += a_str(IFLA_IFNAME, name)
        if master is not None:
            attrs += a_u32(IFLA_MASTER, master)
        if mtu is not None:
            attrs += a_u32(IFLA_MTU, mtu)
        if alias is not None:
            attrs += a_str(IFLA_IFALIAS, alias)
        if ipv6_addresses is False:
            attrs += a_nest(IFLA_AF_SPEC, a_nest(socket.AF_INET6, a_u8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE)))
        self.add(RTM_NEWLINK, REQUEST, ifinfo(index, flags, change) + attrs, what)

    def bridge_port(self, what: str, *, name: str, hairpin: bool) -> None:
        data = a_nest(IFLA_INFO_SLAVE_DATA, a_u8(IFLA_BRPORT_MODE, int(hairpin)))
        info = a_nest(IFLA_LINKINFO, a_str(IFLA_INFO_SLAVE_KIND, "bridge"), data)
        self.add(RTM_NEWLINK, REQUEST, ifinfo() + a_str(IFLA_IFNAME, name) + info, what)

    def link_add(self, what: str, *, name: str, kind: str, index: int = 0, mtu: int | None = None,
                 mac: str | None = None, up: bool = False, data: bytes = b"",
                 alias: str | None = None) -> None:
        attrs = a_str(IFLA_IFNAME, name)
        if mtu is not None:
            attrs += a_u32(IFLA_MTU, mtu)
        if mac is not None:
            attrs += a_mac(IFLA_ADDRESS, mac)
        if alias is not None:
            attrs += a_str(IFLA_IFALIAS, alias)
        info = a_str(IFLA_INFO_KIND, kind)
        if data:
            info += a_nest(IFLA_INFO_DATA, data)
        attrs += a_nest(IFLA_LINKINFO, info)
        self.add(RTM_NEWLINK, CREATE, ifinfo(index, IFF_UP if up else 0, IFF_UP if up else 0) + attrs, what)

    def veth_add(self, what: str, *, name: str, index: int, mtu: int, mac: str | None,
                 peer_name: str, peer_netns_fd: int, peer_index: int = 0,
                 peer_mac: str | None = None, up: bool = False) -> None:
        peer = ifinfo(peer_index) + a_str(IFLA_IFNAME, peer_name) + a_u32(IFLA_MTU, mtu)
        if peer_mac:
            peer += a_mac(IFLA_ADDRESS, peer_mac)
        peer += a_u32(IFLA_NET_NS_FD, peer_netns_fd)
        self.link_add(what, name=name, kind="veth", index=index, mtu=mtu, mac=mac, up=up,
                      data=_attr(VETH_INFO_PEER, peer))

    def vxlan_add(self, what: str, *, name: str, index: int, vni: int, local: str, dev_index: int,
                  mtu: int, mac: str, learning: bool = False, port: int = 0) -> None:
        data = a_u32(IFLA_VXLAN_ID, vni) + a_u32(IFLA_VXLAN_LINK, dev_index) + a_ip(IFLA_VXLAN_LOCAL, local)
        data += a_u8(IFLA_VXLAN_LEARNING, int(learning))
        if port:  # like flannel: 0 means "not sent", the kernel default 8472 applies
            data += a_u16be(IFLA_VXLAN_PORT, port)
        self.link_add(what, name=name, kind="vxlan", index=index, mtu=mtu, mac=mac, data=data)

    # --- addresses, routes, neighbours ----------------------------------------------------
    def addr_add(self, what: str, *, index: int, address: str, prefixlen: int) -> None:
        body = struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += a_ip(IFA_LOCAL, address) + a_ip(IFA_ADDRESS, address)
        self.add(RTM_NEWADDR, CREATE, body, what)

    def addr_del6(self, what: str, *, index: int, address: str, prefixlen: int) -> None:
        body = struct.pack("=BBBBI", socket.AF_INET6, prefixlen, 0, 0, index)
        body += _attr(IFA_LOCAL, ipaddress.IPv6Address(address).packed)
        self.add(RTM_DELADDR, REQUEST, body, what)

    def route_add(self, what: str, *, dst: str, oif: int, gateway: str | None = None,
                  onlink: bool = False, replace: bool = False) -> None:
        net = ipaddress.IPv4Network(dst)
        scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN,
                           RTPROT_BOOT, scope, RTN_UNICAST, RTNH_F_ONLINK if onlink else 0)
        if net.prefixlen:
            body += a_ip(RTA_DST, str(net.network_address))
        body += a_u32(RTA_OIF, oif)
        if gateway:
            body += a_ip(RTA_GATEWAY, gateway)
        self.add(RTM_NEWROUTE, REPLACE if replace else CREATE, body, what)

    def neigh_add(self, what: str, *, index: int, ip: str, mac: str) -> None:
        body = struct.pack("=BxxxiHBB", socket.AF_INET, index, NUD_PERMANENT, 0, RTN_UNICAST)
        body += a_ip(NDA_DST, ip) + a_mac(NDA_LLADDR, mac)
        self.add(RTM_NEWNEIGH, REPLACE, body, what)

    def fdb_append(self, what: str, *, index: int, mac: str, dst: str) -> None:
        body = struct.pack("=BxxxiHBB", AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF, 0)
        body += a_mac(NDA_LLADDR, mac) + a_ip(NDA_DST, dst)
        self.add(RTM_NEWNEIGH, APPEND, body, what)

    # --- sending -------------------------------------------------------------------------
    def apply(self) -> None:
        """Send on a fresh socket of the calling thread's namespace, then close it."""
        sock = open_socket()
        try:
            self.send(sock)
        finally:
            sock.close()

    def send(self, sock: socket.socket) -> None:
        """Send every request and wait for every acknowledgement; raise on the first failure."""
        pos = 0
        while pos < len(self.requests):
            buf = bytearray()
            first = pos
            while pos < len(self.requests) and len(buf) < MAX_BATCH_BYTES:
                mtype, flags, body, _ = self.requests[pos]
                buf += struct.pack("=IHHII", 16 + len(body), mtype, flags, pos + 1, 0) + body
                pos += 1
            sock.sendall(bytes(buf))
            _collect_acks(sock, self.requests, first, pos)


def _collect_acks(sock: socket.socket, requests, first: int, end: int) -> None:
    pending = end - first
    failure: NetlinkError | None = None
    while pending:
        data = sock.recv(1 << 20)
        off = 0
        while off + 16 <= len(data):
            length, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
            if mtype == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", data, off + 16)
                pending -= 1
                if err and failure is None:
                    what = requests[seq - 1][3] if 0 < seq <= len(requests) else "request"
                    failure = NetlinkError(-err, what, _ext_ack_msg(data[off:off + length]))
            off += (length + 3) & ~3 if length else len(data)
    if failure is not None:
        raise failure


def _ext_ack_msg(msg: bytes) -> str:
    # nlmsghdr(16) + error(4) + original header(16, capped) then TLVs
    off = 16 + 4 + 16
    while off + 4 <= len(msg):
        alen, atype = struct.unpack_from("=HH", msg, off)
        if alen < 4:
            break
        if atype == NLMSGERR_ATTR_MSG:
            return msg[off + 4:off + alen].split(b"\0")[0].decode(errors="replace")
        off += (alen + 3) & ~3
    return ""


def open_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in the calling thread's current network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    return sock


def is_exists(err: OSError) -> bool:
    return err.errno == errno.EEXIST
