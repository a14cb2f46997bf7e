"""The hand-encoded wire format, checked by decoding it with dnspython."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import pytest

from testbed.dns import wire
from testbed.dns.records import RR


def test_parse_query_keeps_the_name_as_asked_and_edns():
    q = dns.message.make_query("Web.Default.svc.cluster.local", "SRV", use_edns=0, payload=4096)
    p = wire.parse_query(q.to_wire())
    assert (p.qname, p.type_name, p.payload) == ("Web.Default.svc.cluster.local.", "SRV", 4096)
    assert wire.parse_query(dns.message.make_query("x.", "A").to_wire()).payload is None
    odd = wire.parse_query(dns.message.make_query("a\\.b.example.", "TXT").to_wire())
    assert odd.qname == "a\\.b.example."


@pytest.mark.parametrize("data", [b"\0" * 5, b"\x12\x34\x81\x00\0\x01\0\0\0\0\0\0\x03abc\0\0\x01\0\x01",
                                  b"\x12\x34\x01\x00\0\x02\0\0\0\0\0\0\x03abc\0\0\x01\0\x01",
                                  b"\x12\x34\x01\x00\0\x01\0\0\0\0\0\0\xc0\x0c\0\x01\0\x01",
                                  b"\x12\x34\x01\x00\0\x01\0\0\0\0\0\0\x03ab"])
def test_malformed_queries(data):
    with pytest.raises(wire.Malformed):
        wire.parse_query(data)


def test_every_record_type_round_trips():
    q = wire.parse_query(dns.message.make_query("x.cluster.local.", "A", use_edns=0).to_wire())
    rrs = [RR("x.cluster.local.", "A", 30, "10.0.0.1"), RR("x.cluster.local.", "AAAA", 30, "fd00::1"),
           RR("x.cluster.local.", "CNAME", 30, "y.example."), RR("x.cluster.local.", "PTR", 30, "z.example."),
           RR("x.cluster.local.", "SRV", 30, "0 100 80 web.default.svc.cluster.local."),
           RR("x.cluster.local.", "TXT", 28800, '"1.1.0"'), RR("x.cluster.local.", "NS", 30, "ns.dns.cluster.local."),
           RR("x.cluster.local.", "MX", 30, "10 mail.example.")]
    soa = RR("cluster.local.", "SOA", 30, "ns.dns.cluster.local. hostmaster.cluster.local. 5 7200 1800 86400 30")
    out, kept = wire.response(b"\xab\xcd", q, 3, rrs, [soa], [RR("web.default.svc.cluster.local.", "A", 30, "10.0.0.2")],
                              aa=True)
    m = dns.message.from_wire(out)
    assert m.id == 0xABCD and m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.AA and m.edns == 0
    assert kept == len(rrs)
    got = sorted(f"{rr.name} {rr.ttl} {dns.rdatatype.to_text(rr.rdtype)} {rd}" for rr in m.answer for rd in rr)
    assert got == sorted(f"{r.name} {r.ttl} {r.type} {r.rdata}" for r in rrs)
    assert m.authority[0][0].to_text() == soa.rdata and m.additional[0][0].to_text() == "10.0.0.2"


def test_truncation_keeps_what_fits_and_sets_tc():
    q = wire.parse_query(dns.message.make_query("big.cluster.local.", "A").to_wire())
    rrs = [RR("big.cluster.local.", "A", 30, f"10.0.{i // 250}.{i % 250}") for i in range(100)]
    out, kept = wire.response(b"\0\1", q, 0, rrs, limit=512)
    m = dns.message.from_wire(out)
    assert len(out) <= 512 and m.flags & dns.flags.TC and 0 < kept < 100 and len(m.answer[0]) == kept


def test_formerr_echoes_the_id():
    out = wire.formerr(b"\x12\x34\x01\x00" + b"\0" * 8 + b"junk")
    assert out[:2] == b"\x12\x34" and out[3] & 0xF == dns.rcode.FORMERR and out[2] & 0x80
    assert wire.formerr(b"\x00") is None
