"""Queries to wire responses: rcodes with SOA, EDNS0, truncation, the replay cache, forwarding."""

from __future__ import annotations

import asyncio
import time

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

from testbed.dns.corefile import KUBEADM_COREFILE, parse
from testbed.dns.metrics import Metrics
from testbed.dns.responder import Responder
from testbed.dns.upstream import UpstreamZone

from .fixtures import cluster, ep, eps, svc

UPSTREAM = UpstreamZone({"client": "10.100.0.100"})


async def _upstream(wire: bytes) -> bytes:
    return UPSTREAM.answer(wire)


def responder(index=None, forward=_upstream) -> Responder:
    [block] = parse(KUBEADM_COREFILE.replace("/etc/resolv.conf", "10.100.0.1"))
    r = Responder(block, index or cluster(), Metrics("dns://:53"), forward)
    r.synced = True
    return r


def ask(r: Responder, name: str, qtype: str, proto: str = "udp", **kw) -> dns.message.Message:
    q = dns.message.make_query(name, qtype, **kw)
    data = q.to_wire()
    out = r.cached(data, proto, "1", time.perf_counter())
    if out is None:
        out = asyncio.run(r.respond(data, proto, "1", time.perf_counter()))
    m = dns.message.from_wire(out)
    assert m.id == q.id
    return m


def test_a_record_is_authoritative_and_replayed_with_the_new_id():
    r = responder()
    m1 = ask(r, "web.default.svc.cluster.local.", "A")
    assert m1.rcode() == dns.rcode.NOERROR and m1.flags & dns.flags.AA
    assert [rd.address for rr in m1.answer for rd in rr] == ["10.96.0.20"]
    assert len(r.cluster_cache) == 1
    m2 = ask(r, "web.default.svc.cluster.local.", "A")  # served from the cache with its own ID
    assert m2.answer == m1.answer
    assert sum(r.metrics.requests.values()) == 2


def test_nxdomain_and_nodata_carry_the_soa():
    r = responder()
    nx = ask(r, "missing.default.svc.cluster.local.", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and not nx.answer
    assert nx.authority[0].rdtype == dns.rdatatype.SOA and nx.authority[0].name.to_text() == "cluster.local."
    nodata = ask(r, "web.default.svc.cluster.local.", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


def test_not_synced_is_servfail():
    r = responder()
    r.synced = False
    assert ask(r, "web.default.svc.cluster.local.", "A").rcode() == dns.rcode.SERVFAIL


def test_watch_event_invalidates_the_cache():
    idx = cluster()
    r = responder(idx)
    assert ask(r, "web.default.svc.cluster.local.", "A").answer
    assert ask(r, "db.default.svc.cluster.local.", "A").answer
    assert ask(r, "new.default.svc.cluster.local.", "A").rcode() == dns.rcode.NXDOMAIN
    assert len(r.cluster_cache) == 3
    r.invalidate(idx.apply("Service", "DELETED", svc("web")))
    assert len(r.cluster_cache) == 2, "only the deleted Service's answers are dropped"
    assert ask(r, "web.default.svc.cluster.local.", "A").rcode() == dns.rcode.NXDOMAIN
    r.invalidate(idx.apply("Service", "ADDED", svc("new", cluster_ip="10.96.0.99")))
    assert answers(ask(r, "new.default.svc.cluster.local.", "A")) == ["10.96.0.99"], "a negative answer goes too"
    r.invalidate(idx.apply("EndpointSlice", "MODIFIED", eps("db-xyz", "db", [ep("10.244.5.5")])))
    assert answers(ask(r, "db.default.svc.cluster.local.", "A")) == ["10.244.5.5"]
    r.invalidate(idx.apply("Namespace", "DELETED", {"metadata": {"name": "default"}}))
    assert not r.cluster_cache


def answers(m):
    return sorted(rd.to_text() for rr in m.answer for rd in rr)


def test_external_name_inside_the_cluster_is_followed():
    idx = cluster()
    idx.apply("Service", "ADDED", svc("alias", cluster_ip="", ports=[], type="ExternalName",
                                      externalName="web.default.svc.cluster.local"))
    m = ask(responder(idx), "alias.default.svc.cluster.local.", "A")
    assert answers(m) == ["10.96.0.20", "web.default.svc.cluster.local."]


def _big_headless(n: int):
    idx = cluster()
    idx.apply("Service", "ADDED", svc("big", cluster_ip="None"))
    idx.apply("EndpointSlice", "ADDED", eps("big-1", "big", [ep(f"10.244.{i // 250}.{i % 250 + 1}") for i in range(n)]))
    return idx


def test_udp_truncates_large_answers_and_tcp_does_not():
    r = responder(_big_headless(100))
    udp = ask(r, "big.default.svc.cluster.local.", "A")
    assert udp.flags & dns.flags.TC and len(udp.to_wire()) <= 512
    tcp = ask(r, "big.default.svc.cluster.local.", "A", proto="tcp")
    assert not tcp.flags & dns.flags.TC and sum(len(rr) for rr in tcp.answer) == 100


def test_edns0_payload_raises_the_udp_limit():
    r = responder(_big_headless(60))
    m = ask(r, "big.default.svc.cluster.local.", "A", use_edns=0, payload=4096)
    assert m.edns == 0 and not m.flags & dns.flags.TC and sum(len(rr) for rr in m.answer) == 60


def test_loadbalance_shuffles_cached_address_records():
    r = responder(_big_headless(8))
    orders = {tuple(rd.address for rd in ask(r, "big.default.svc.cluster.local.", "A").answer[0])
              for _ in range(30)}
    assert len(orders) > 1
    assert all(sorted(o) == sorted(next(iter(orders))) for o in orders)


def test_forward_for_names_outside_the_cluster_and_refused_stays_refused():
    r = responder()
    m = ask(r, "client.ext.testbed.", "A")
    assert [rd.address for rr in m.answer for rd in rr] == ["10.100.0.100"]
    assert ask(r, "example.org.", "A").rcode() == dns.rcode.REFUSED
    ptr = ask(r, "100.0.100.10.in-addr.arpa.", "PTR")  # falls through the cluster's reverse zone
    assert [rd.target.to_text() for rr in ptr.answer for rd in rr] == ["client.ext.testbed."]


def test_external_name_is_chased_through_the_upstream():
    m = ask(responder(), "ext.default.svc.cluster.local.", "A")
    assert [(rr.rdtype, rd.to_text()) for rr in m.answer for rd in rr] == [
        (dns.rdatatype.CNAME, "client.ext.testbed."), (dns.rdatatype.A, "10.100.0.100")]


def test_upstream_unreachable_is_servfail():
    async def dead(wire):
        return None
    assert ask(responder(forward=dead), "client.ext.testbed.", "A").rcode() == dns.rcode.SERVFAIL


def test_garbage_gets_formerr_or_nothing():
    r = responder()
    out = asyncio.run(r.respond(b"\x12\x34" + b"\x01\x00" + b"\x00\x05" + b"\xff" * 20, "udp", "1", 0.0))
    assert out[:2] == b"\x12\x34" and out[3] & 0xF == dns.rcode.FORMERR
    assert asyncio.run(r.respond(b"\x00", "udp", "1", 0.0)) is None


def test_metrics_render_coredns_names():
    r = responder()
    ask(r, "web.default.svc.cluster.local.", "A")
    ask(r, "missing.default.svc.cluster.local.", "A")
    text = r.metrics.render()
    assert 'coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",type="A",view="",zone="."} 2' in text
    assert 'rcode="NXDOMAIN"' in text and 'rcode="NOERROR"' in text
    assert 'coredns_dns_request_duration_seconds_count{server="dns://:53",type="A",view="",zone="."} 2' in text


def test_forwarded_answers_are_cached_until_their_ttl():
    calls = []

    async def counting(wire):
        calls.append(wire)
        return UPSTREAM.answer(wire)
    r = responder(forward=counting)
    ask(r, "client.ext.testbed.", "A")
    ask(r, "client.ext.testbed.", "A")
    assert len(calls) == 1 and r.metrics.cache_hits == 1
    for e in r.forward_cache.values():
        e.expires = 0.0  # as if 30 s (the Corefile's cap) had passed
    ask(r, "client.ext.testbed.", "A")
    assert len(calls) == 2


def test_forwarder_at_max_concurrent_is_refused():
    from testbed.dns.responder import Overloaded

    async def busy(wire):
        raise Overloaded(1000)
    assert ask(responder(forward=busy), "client.ext.testbed.", "A").rcode() == dns.rcode.REFUSED


def test_router_sends_each_name_to_the_block_with_the_longest_zone():
    from testbed.dns.corefile import parse as parse_corefile
    from testbed.dns.responder import Router
    blocks = parse_corefile(".:53 {\n forward . 10.100.0.1\n}\ncluster.local:53 {\n kubernetes\n}\n")
    m = Metrics("dns://:53")
    router = Router([Responder(b, cluster(), m, _upstream) for b in blocks])
    for r in router.responders:
        r.synced = True

    def via(name):
        q = dns.message.make_query(name, "A")
        return dns.message.from_wire(asyncio.run(router.respond(q.to_wire(), "udp", "1", time.perf_counter())))
    assert [rd.to_text() for rr in via("web.default.svc.cluster.local.").answer for rd in rr] == ["10.96.0.20"]
    assert [rd.to_text() for rr in via("client.ext.testbed.").answer for rd in rr] == ["10.100.0.100"]


def test_other_opcodes_are_not_implemented():
    q = dns.message.make_query("web.default.svc.cluster.local.", "A")
    q.set_opcode(dns.opcode.UPDATE)
    out = asyncio.run(responder().respond(q.to_wire(), "udp", "1", time.perf_counter()))
    assert out[3] & 0xF == dns.rcode.NOTIMP and out[2] & 0x80
