"""Decode captured frames with scapy and find a request's frames again by its token."""

from __future__ import annotations

from ..capture import Frame

VXLAN_PORT = 8472


def decode(frames: list[Frame]):
    import scapy.layers.inet  # noqa: F401  (binds IP to Ether: decoding needs the layers loaded)
    import scapy.layers.vxlan  # noqa: F401  (UDP 8472 -> VXLAN)
    from scapy.layers.l2 import Ether

    return [(f, Ether(f.data)) for f in frames]


def l4(pkt):
    from scapy.layers.inet import TCP, UDP

    return pkt[TCP] if TCP in pkt else (pkt[UDP] if UDP in pkt else None)


def payload(pkt) -> bytes:
    seg = l4(pkt)
    return bytes(seg.payload) if seg is not None else b""


def flow(pkt) -> str:
    from scapy.layers.inet import IP

    ip = pkt[IP]
    seg = l4(pkt)
    ports = (seg.sport, seg.dport) if seg is not None else ("", "")
    return f"{ip.src}:{ports[0]} > {ip.dst}:{ports[1]} ttl {ip.ttl}"


def with_token(decoded, token: bytes, *, outgoing: bool | None = None, inner: bool = False):
    from scapy.layers.inet import IP

    out = []
    for f, p in decoded:
        if outgoing is not None and f.outgoing != outgoing:
            continue
        if IP not in p:
            continue
        if inner:
            from scapy.layers.vxlan import VXLAN
            if VXLAN not in p:
                continue
            q = p[VXLAN].payload
            if IP in q and token in payload(q):
                out.append((f, p))
        elif token in payload(p):
            out.append((f, p))
    return out
