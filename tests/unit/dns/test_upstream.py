"""The underlay's resolver: external clients under ext.testbed., REFUSED for the rest."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import pytest

from testbed.dns.upstream import UpstreamZone
from testbed.errors import TestbedError

Z = UpstreamZone({"client": "10.100.0.100", "Other": "10.100.0.101"})


def ask(name, qtype):
    return dns.message.from_wire(Z.answer(dns.message.make_query(name, qtype).to_wire()))


def test_known_names_and_their_ptr():
    m = ask("CLIENT.ext.testbed.", "A")
    assert m.flags & dns.flags.AA and [rd.address for rr in m.answer for rd in rr] == ["10.100.0.100"]
    assert [rd.to_text() for rr in ask("101.0.100.10.in-addr.arpa.", "PTR").answer for rd in rr] == ["other.ext.testbed."]


def test_nxdomain_and_nodata_inside_the_zone():
    assert ask("nobody.ext.testbed.", "A").rcode() == dns.rcode.NXDOMAIN
    m = ask("client.ext.testbed.", "AAAA")
    assert m.rcode() == dns.rcode.NOERROR and not m.answer and m.authority


@pytest.mark.parametrize("name", ["example.org.", "ext.testbed.example.", "8.8.8.8.in-addr.arpa.", "."])
def test_everything_else_is_refused(name):
    assert ask(name, "A").rcode() == dns.rcode.REFUSED


def test_bad_address_is_a_clear_error():
    with pytest.raises(TestbedError, match="upstream record c: 'x' is not an IPv4 address"):
        UpstreamZone({"c": "x"})
