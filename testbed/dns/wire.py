"""The few wire-format pieces on the server's miss path, encoded directly.

dnspython builds a response from text at about a millisecond per answer, which after a watch
event would make every first query slow; the record types cluster DNS answers with are few
and fixed, so they are encoded here (and decoded back with dnspython in the tests).  Anything
unusual in a query (compressed question, several questions) is left to dnspython's parser.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import dns.name
import dns.rdatatype

from .records import RR

QR, AA, TC, RD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0010
OPT = 41
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
NAMES = {v: k for k, v in TYPES.items()} | {255: "ANY", 13: "HINFO", 252: "AXFR", 251: "IXFR"}
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


class Malformed(ValueError):
    pass


@dataclass(frozen=True)
class Query:
    flags: int
    qname: str  # as asked, with the trailing dot
    qtype: int
    question: bytes  # the question section as sent (echoed in the response)
    payload: int | None  # EDNS0 UDP payload size, None without OPT

    @property
    def type_name(self) -> str:
        return NAMES.get(self.qtype) or dns.rdatatype.to_text(self.qtype)


def parse_query(data: bytes) -> Query:
    if len(data) < 12:
        raise Malformed("short header")
    _, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    if flags & QR or qd != 1 or an or ns:
        raise Malformed("not a single-question query")
    i, labels = 12, []
    while True:
        if i >= len(data):
            raise Malformed("truncated name")
        n = data[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0:
            raise Malformed("compressed question")
        label = data[i + 1: i + 1 + n]
        if len(label) != n:
            raise Malformed("truncated label")
        labels.append(label)
        i += 1 + n
    if i + 4 > len(data):
        raise Malformed("truncated question")
    qtype = struct.unpack_from("!H", data, i)[0]
    question = data[12: i + 4]
    i += 4
    payload = None
    if ar:
        if data[i: i + 1] != b"\0" or i + 11 > len(data):
            raise Malformed("additional record is not an OPT")
        rtype, cls = struct.unpack_from("!HH", data, i + 1)
        if rtype != OPT:
            raise Malformed("additional record is not an OPT")
        payload = max(512, cls)
    if all(_PLAIN.issuperset(lb) for lb in labels):
        qname = ".".join(lb.decode() for lb in labels) + "."
    else:
        qname = dns.name.Name(labels + [b""]).to_text()
    return Query(flags, qname if labels else ".", qtype, question, payload)


def _name(text: str) -> bytes:
    if text == ".":
        return b"\0"
    out = bytearray()
    for label in text.rstrip(".").split("."):
        b = label.encode()
        out.append(len(b))
        out += b
    return bytes(out) + b"\0"


def _rdata(rr: RR) -> bytes:
    t, d = rr.type, rr.rdata
    if t == "A":
        return socket.inet_aton(d)
    if t == "AAAA":
        return socket.inet_pton(socket.AF_INET6, d)
    if t in ("CNAME", "PTR", "NS"):
        return _name(d)
    if t == "SRV":
        prio, weight, port, target = d.split()
        return struct.pack("!3H", int(prio), int(weight), int(port)) + _name(target)
    if t == "MX":
        pref, host = d.split()
        return struct.pack("!H", int(pref)) + _name(host)
    if t == "TXT":
        s = d.strip('"').encode()
        return bytes([len(s)]) + s
    if t == "SOA":
        mname, rname, *nums = d.split()
        return _name(mname) + _name(rname) + struct.pack("!5I", *(int(n) for n in nums))
    raise ValueError(f"no encoder for {t}")


def _rr(rr: RR, q: Query) -> bytes:
    owner = b"\xc0\x0c" if rr.name == q.qname else _name(rr.name)
    rd = _rdata(rr)
    return owner + struct.pack("!HHIH", TYPES[rr.type], 1, rr.ttl, len(rd)) + rd


def response(qid: bytes, q: Query, rcode: int, answer=(), authority=(), extra=(), *, aa: bool = False,
             limit: int = 65535, tc: bool = False) -> tuple[bytes, int]:
    """The response's wire bytes and how many answer records it holds; answers that do not fit
    in ``limit`` are dropped (from the end) with TC set, additional and authority first."""
    flags = QR | (q.flags & 0x7800) | (q.flags & (RD | CD)) | (AA if aa else 0) | (rcode & 0xF)
    opt = struct.pack("!BHHIH", 0, OPT, 1232, 0, 0) if q.payload is not None else b""
    ans = [_rr(r, q) for r in answer if r.type in TYPES]
    auth = [_rr(r, q) for r in authority if r.type in TYPES]
    add = [_rr(r, q) for r in extra if r.type in TYPES]
    base = 12 + len(q.question) + len(opt)
    if tc or base + sum(map(len, ans)) + sum(map(len, auth)) + sum(map(len, add)) > limit:
        flags |= TC
        auth, add = [], []
        room, kept = limit - base, []
        for a in ans:
            if len(a) > room:
                break
            kept.append(a)
            room -= len(a)
        ans = kept
    head = qid + struct.pack("!5H", flags, 1, len(ans), len(auth), len(add) + (1 if opt else 0))
    return head + q.question + b"".join(ans) + b"".join(auth) + b"".join(add) + opt, len(ans)


def formerr(data: bytes) -> bytes | None:
    if len(data) < 12:
        return None
    flags = QR | (struct.unpack_from("!H", data, 2)[0] & (0x7800 | RD)) | 1
    return data[:2] + struct.pack("!5H", flags, 0, 0, 0, 0)
