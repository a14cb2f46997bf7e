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

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from . import records
from .corefile import ServerBlock, fqdn, in_zone
from .metrics import Metrics

OUR_PAYLOAD = 1232
MAX_CACHED = 100_000
_RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

Forward = Callable[[bytes], Awaitable[bytes | None]]


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
            if e is None or e.expires < time.monotonic():
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
            q = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - anything unparsable is a FORMERR
            return self._formerr(data)
        if len(q.question) != 1:
            return self._formerr(data)
        question = q.question[0]
        qname = question.name.to_text()
        qtype = dns.rdatatype.to_text(question.rdtype)
        lname = qname.lower()
        if self.loop_probe is not None and lname.encode() == self.loop_probe:
            self.loop_hits += 1
        zone = next((z for z in sorted(self.block.zones, key=len, reverse=True) if in_zone(lname, z)), None)
        if zone is None:
            return self._finish(data, q, dns.rcode.REFUSED, [], [], False, proto, family, qtype, ".", started, None)
        ans = None
        if self.k8s is not None and records.zone_of(lname, self.k8s) is not None:
            if not self.synced:
                return self._finish(data, q, dns.rcode.SERVFAIL, [], [], False, proto, family, qtype, zone, started, None)
            ans = records.answer(self.index, self.k8s, qname, qtype)
        if ans is None or ans.rcode == records.FALLTHROUGH:
            return await self._forward(data, q, proto, family, qtype, zone, started)
        answer = list(ans.answer)
        cacheable = self.cluster_cache
        tag_free = False
        kzone = records.zone_of(lname, self.k8s)
        if ans.cname_target and in_zone(fqdn(ans.cname_target), kzone):
            # an ExternalName pointing into the cluster: CoreDNS follows it itself
            sub = records.answer(self.index, self.k8s, ans.cname_target, qtype)
            answer += sub.answer
            tag_free = True
        elif ans.cname_target and self.forward:
            # ExternalName: CoreDNS resolves the target through its own chain (forward).
            sub = dns.message.make_query(ans.cname_target, question.rdtype)
            resp = await self._forward_wire(sub.to_wire())
            if resp is not None:
                answer += [records.RR(rr.name.to_text(), dns.rdatatype.to_text(rr.rdtype), rr.ttl, rd.to_text())
                           for rr in dns.message.from_wire(resp).answer for rd in rr]
            cacheable = None
        authority = [records.soa_rr(qname, kzone, self.k8s.ttl, self.index.generation)] if ans.soa else []
        return self._finish(data, q, ans.rcode, answer, ans.extra, True, proto, family, qtype, zone, started,
                            cacheable, authority, tag_free=tag_free)

    async def _forward(self, data, q, proto, family, qtype, zone, started) -> bytes:
        fwd = self.block.forward
        if self.forward is None or fwd is None or not in_zone(q.question[0].name.to_text().lower(), fwd.zone):
            return self._finish(data, q, dns.rcode.SERVFAIL, [], [], False, proto, family, qtype, zone, started, None)
        resp = await self._forward_wire(data)
        if resp is None:
            return self._finish(data, q, dns.rcode.SERVFAIL, [], [], False, proto, family, qtype, zone, started, None)
        wire = data[:2] + resp[2:]
        rcode = resp[3] & 0xF
        if proto == "udp":
            limit = q.payload if q.edns >= 0 else 512
            if len(wire) > limit:
                return self._truncate(data, q, wire, proto, family, qtype, zone, started)
        self.metrics.observe(zone, proto, family, qtype, _RCODE_NAMES.get(rcode, str(rcode)),
                             time.perf_counter() - started)
        if self.block.cache_ttl and proto == "udp" and rcode in (0, 3):
            msg = dns.message.from_wire(resp)
            ttls = [rr.ttl for sec in (msg.answer, msg.authority) for rr in sec] or [self.block.cache_ttl]
            self.forward_cache[data[2:]] = _Entry(wire[2:], qtype, zone, _RCODE_NAMES[rcode], None,
                                                  time.monotonic() + min(min(ttls), self.block.cache_ttl))
            self.metrics.cache_misses += 1
        return wire

    async def _forward_wire(self, wire: bytes) -> bytes | None:
        return await self.forward(wire) if self.forward else None

    def _truncate(self, data, q, wire, proto, family, qtype, zone, started) -> bytes:
        msg = dns.message.from_wire(wire)
        return self._finish(data, q, msg.rcode(), [], [], bool(msg.flags & dns.flags.AA), proto, family, qtype,
                            zone, started, None, truncated=True)

    def _formerr(self, data: bytes) -> bytes | None:
        if len(data) < 12:
            return None
        flags = (0x80 | (data[2] & 0x79)) << 8 | dns.rcode.FORMERR
        return data[:2] + flags.to_bytes(2, "big") + b"\0" * 8

    def _finish(self, data, q, rcode, answer, extra, aa, proto, family, qtype, zone, started, cache,
                authority=(), truncated=False, tag_free=False) -> bytes:
        r = dns.message.make_response(q, our_payload=OUR_PAYLOAD)
        r.set_rcode(rcode)
        if aa:
            r.flags |= dns.flags.AA
        for sec, rrs in ((r.answer, answer), (r.additional, extra), (r.authority, authority)):
            for rr in rrs:
                rrset = dns.rrset.from_text(rr.name, rr.ttl, "IN", rr.type, rr.rdata)
                existing = next((s for s in sec if s.match(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)), None)
                if existing is not None:
                    existing.union_update(rrset)
                else:
                    sec.append(rrset)
        limit = 65535 if proto == "tcp" else (max(512, q.payload) if q.edns >= 0 else 512)
        wire = r.to_wire(max_size=65535)
        if len(wire) > limit or truncated:
            wire = self._fit(r, limit)
        rname = _RCODE_NAMES.get(rcode, str(rcode))
        self.metrics.observe(zone, proto, family, qtype, rname, time.perf_counter() - started)
        if cache is not None and proto == "udp":
            qend = 12 + len(q.question[0].name.to_wire()) + 4
            shuffle = None
            if self.block.loadbalance and len(answer) > 1 and all(rr.type in ("A", "AAAA") for rr in answer):
                shuffle = _address_run(wire, qend, len(answer))
            key = data[2:]
            if len(cache) >= MAX_CACHED:  # random names must not grow memory without bound
                self.invalidate(None)
            cache[key] = _Entry(wire[2:], qtype, zone, rname, shuffle, 0.0)
            tag = None if tag_free else records.cache_tag(q.question[0].name.to_text().lower(), self.k8s)
            (self.tagged.setdefault(tag, []) if tag else self.untagged).append(key)
        return wire

    @staticmethod
    def _fit(r: dns.message.Message, limit: int) -> bytes:
        """Keep the records that fit and set TC, as CoreDNS's ``Scrub`` does over UDP."""
        r.flags |= dns.flags.TC
        r.additional = []
        rrs = [(s.name, s.ttl, s.rdclass, s.rdtype, rd) for s in r.answer for rd in s]
        while True:
            r.answer = []
            for name, ttl, cls, typ, rd in rrs:
                r.find_rrset(r.answer, name, cls, typ, create=True).add(rd, ttl)
            try:
                return r.to_wire(max_size=limit)
            except dns.exception.TooBig:
                if not rrs:
                    raise
                rrs = rrs[: len(rrs) // 2]
