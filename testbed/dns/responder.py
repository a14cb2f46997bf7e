"""Queries to responses on the wire: one server block's plugin chain, with its answer caches.

The hot path never parses a query: a response depends only on the bytes after the message
ID (flags, question, EDNS record), so a finished response is stored under those bytes and
replayed with the new ID.  Cluster answers are kept until the next watch event changes the
index; forwarded answers (the ``cache`` plugin) until their TTL, capped by the Corefile's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

import dns.message
import dns.rdatatype

from . import records, wire
from .corefile import ServerBlock, fqdn, in_zone
from .metrics import Metrics

MAX_CACHED = 100_000
_RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

Forward = Callable[[bytes], Awaitable[bytes | None]]


class Overloaded(Exception):
    """The forwarder is at ``max_concurrent``: CoreDNS answers REFUSED instead of queueing."""


class _Entry:
    """A finished response minus its ID, and what metrics need to know about it."""

    __slots__ = ("body", "qtype", "zone", "rcode", "shuffle", "expires")

    def __init__(self, body: bytes, qtype: str, zone: str, rcode: str, shuffle: tuple | None, expires: float):
        self.body, self.qtype, self.zone, self.rcode = body, qtype, zone, rcode
        self.shuffle, self.expires = shuffle, expires


def _address_run(wire: bytes, question_end: int, count: int) -> tuple | None:
    """(start, size, count) when the answer section is ``count`` A/AAAA records owned by the
    question name (a compression pointer to offset 12), so their bytes can be reordered."""
    for size in (16, 28):
        ok = all(wire[question_end + i * size: question_end + i * size + 2] == b"\xc0\x0c" for i in range(count))
        if ok and len(wire) >= question_end + count * size:
            rtype = int.from_bytes(wire[question_end + 2: question_end + 4], "big")
            if (size, rtype) in ((16, 1), (28, 28)):
                return question_end, size, count
    return None


class Responder:
    def __init__(self, block: ServerBlock, index: records.ClusterIndex, metrics: Metrics,
                 forward: Forward | None = None):
        self.block = block
        self.k8s = block.kubernetes
        self.index = index
        self.metrics = metrics
        self.forward = forward
        self.cluster_cache: dict[bytes, _Entry] = {}
        # Which cached cluster answers hang on which Service, so one Service's change (an
        # endpoint flapping) does not flush every other answer; untagged ones go on any change.
        self.tagged: dict[tuple[str, str], list[bytes]] = {}
        self.untagged: list[bytes] = []
        self.forward_cache: dict[bytes, _Entry] = {}
        self.synced = False  # before the first list, a name the index lacks is SERVFAIL, not NXDOMAIN
        self.loop_probe: bytes | None = None
        self.loop_hits = 0

    def invalidate(self, affected: set[tuple[str, str]] | None = None) -> None:
        if affected is None:
            self.cluster_cache.clear()
            self.tagged.clear()
            self.untagged.clear()
            return
        cache = self.cluster_cache
        for key in self.untagged:
            cache.pop(key, None)
        self.untagged.clear()
        for tag in affected:
            for key in self.tagged.pop(tag, ()):
                cache.pop(key, None)

    # --- the hot path -------------------------------------------------------------

    def cached(self, data: bytes, proto: str, family: str, started: float) -> bytes | None:
        key = data[2:]
        cache = self.cluster_cache
        e = cache.get(key) if proto == "udp" else None
        if e is None:
            e = self.forward_cache.get(key) if proto == "udp" else None
            if e is None:
                return None
            if e.expires < time.monotonic():
                del self.forward_cache[key]
                return None
            self.metrics.cache_hits += 1
        body = e.body
        if e.shuffle is not None:
            start, size, count = e.shuffle
            rrs = [body[start - 2 + i * size: start - 2 + (i + 1) * size] for i in range(count)]
            random.shuffle(rrs)
            body = body[: start - 2] + b"".join(rrs) + body[start - 2 + count * size:]
        self.metrics.observe(e.zone, proto, family, e.qtype, e.rcode, time.perf_counter() - started)
        return data[:2] + body

    # --- the slow path ------------------------------------------------------------

    async def respond(self, data: bytes, proto: str, family: str, started: float) -> bytes | None:
        try:
            q = wire.parse_query(data)
        except wire.Malformed:
            return wire.formerr(data)
        qtype, lname = q.type_name, q.qname.lower()
        if q.flags & 0x7800:  # an opcode other than QUERY (NOTIFY, UPDATE, ...)
            return self._finish(data, q, records.NOTIMP, proto, family, ".", started)
        if self.loop_probe is not None and lname.encode() == self.loop_probe:
            self.loop_hits += 1
        zone = next((z for z in sorted(self.block.zones, key=len, reverse=True) if in_zone(lname, z)), None)
        if zone is None:
            return self._finish(data, q, records.REFUSED, proto, family, zone or ".", started)
        kzone = records.zone_of(lname, self.k8s) if self.k8s is not None else None
        if kzone is None:
            return await self._forward(data, q, proto, family, zone, started)
        if not self.synced:
            return self._finish(data, q, records.SERVFAIL, proto, family, zone, started)
        ans = records.answer(self.index, self.k8s, q.qname, qtype)
        if ans.rcode == records.FALLTHROUGH:
            return await self._forward(data, q, proto, family, zone, started)
        answer, cache, tag_free = list(ans.answer), True, False
        if ans.cname_target and in_zone(fqdn(ans.cname_target), kzone):
            # an ExternalName pointing into the cluster: CoreDNS follows it itself
            answer += records.answer(self.index, self.k8s, ans.cname_target, qtype).answer
            tag_free = True
        elif ans.cname_target and self.forward:
            # ExternalName: CoreDNS resolves the target through its own chain (forward); the
            # result is not kept with the cluster's answers, the forward cache holds it.
            try:
                sub = await self._forward_wire(dns.message.make_query(ans.cname_target, q.qtype).to_wire())
            except Overloaded:
                sub = None
            if sub is not None:
                answer += [records.RR(rr.name.to_text(), dns.rdatatype.to_text(rr.rdtype), rr.ttl, rd.to_text())
                           for rr in dns.message.from_wire(sub).answer for rd in rr]
            cache = False
        authority = [records.soa_rr(kzone, self.k8s.ttl, self.index.generation)] if ans.soa else []
        return self._finish(data, q, ans.rcode, proto, family, zone, started, answer, authority, ans.extra,
                            aa=True, cache=cache, tag_free=tag_free)

    async def _forward(self, data: bytes, q: wire.Query, proto, family, zone, started) -> bytes:
        fwd = self.block.forward
        if self.forward is None or fwd is None or not in_zone(q.qname.lower(), fwd.zone):
            return self._finish(data, q, records.SERVFAIL, proto, family, zone, started)
        try:
            resp = await self._forward_wire(data)
        except Overloaded:
            return self._finish(data, q, records.REFUSED, proto, family, zone, started)
        if resp is None:
            return self._finish(data, q, records.SERVFAIL, proto, family, zone, started)
        out = data[:2] + resp[2:]
        rcode = resp[3] & 0xF
        if proto == "udp" and len(out) > (q.payload or 512):
            return self._finish(data, q, rcode, proto, family, zone, started, aa=bool(resp[2] & 0x04), tc=True)
        rname = _RCODE_NAMES.get(rcode, str(rcode))
        self.metrics.observe(zone, proto, family, q.type_name, rname, time.perf_counter() - started)
        if self.block.cache_ttl and proto == "udp" and rcode in (0, 3):
            msg = dns.message.from_wire(resp)
            ttls = [rr.ttl for sec in (msg.answer, msg.authority) for rr in sec] or [self.block.cache_ttl]
            if len(self.forward_cache) >= MAX_CACHED:
                self.forward_cache.clear()
            self.forward_cache[data[2:]] = _Entry(out[2:], q.type_name, zone, rname, None,
                                                  time.monotonic() + min(min(ttls), self.block.cache_ttl))
            self.metrics.cache_misses += 1
        return out

    async def _forward_wire(self, data: bytes) -> bytes | None:
        return await self.forward(data) if self.forward else None

    def _finish(self, data: bytes, q: wire.Query, rcode: int, proto: str, family: str, zone: str, started: float,
                answer=(), authority=(), extra=(), *, aa=False, tc=False, cache=False, tag_free=False) -> bytes:
        limit = 65535 if proto == "tcp" else (q.payload or 512)
        out, kept = wire.response(data[:2], q, rcode, answer, authority, extra, aa=aa, limit=limit, tc=tc)
        rname = _RCODE_NAMES.get(rcode, str(rcode))
        self.metrics.observe(zone, proto, family, q.type_name, rname, time.perf_counter() - started)
        if cache and proto == "udp":
            key = data[2:]
            if len(self.cluster_cache) >= MAX_CACHED:  # random names must not grow memory without bound
                self.invalidate(None)
            shuffle = None
            if self.block.loadbalance and kept > 1 and all(rr.type in ("A", "AAAA") for rr in answer[:kept]):
                shuffle = _address_run(out, 12 + len(q.question), kept)
            self.cluster_cache[key] = _Entry(out[2:], q.type_name, zone, rname, shuffle, 0.0)
            tag = None if tag_free else records.cache_tag(q.qname.lower(), self.k8s)
            (self.tagged.setdefault(tag, []) if tag else self.untagged).append(key)
        return out


class Router:
    """The server blocks sharing one port: a query goes to the block whose zone is the longest
    suffix of its name, as CoreDNS picks; with one block (kubeadm's) that is no work at all."""

    def __init__(self, responders: list[Responder]):
        self.responders = responders

    def cached(self, data: bytes, proto: str, family: str, started: float) -> bytes | None:
        for r in self.responders:
            out = r.cached(data, proto, family, started)
            if out is not None:
                return out
        return None

    async def respond(self, data: bytes, proto: str, family: str, started: float) -> bytes | None:
        chosen = self.responders[0]
        if len(self.responders) > 1:
            try:
                name = wire.parse_query(data).qname.lower()
            except wire.Malformed:
                return wire.formerr(data)
            zones = [(len(z), r) for r in self.responders for z in r.block.zones if in_zone(name, z)]
            if zones:
                chosen = max(zones, key=lambda zr: zr[0])[1]
        return await chosen.respond(data, proto, family, started)
