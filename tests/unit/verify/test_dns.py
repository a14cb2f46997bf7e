"""DNS checks: the format (validation), and the stub resolver's rules the check follows."""

from __future__ import annotations

import pytest

from testbed.verify import model
from testbed.verify.dns import candidates, parse_resolv_conf


def one(raw: dict):
    checks, problems = model.validate([raw])
    return checks, [str(p) for p in problems]


def test_dns_check_parsed():
    [c], problems = one({"name": "a", "from": "pod/client", "dns": {"name": "web", "type": "SRV", "server": "10.96.0.10",
                                                                     "protocol": "TCP"},
                         "expect": {"answers": ["service/web"]}})
    assert not problems
    assert c.dns == model.DnsQuery("web", "SRV", "10.96.0.10", "TCP")
    assert (c.rcode, c.answers, c.to) == ("NOERROR", ("service/web",), None)


@pytest.mark.parametrize("raw, message", [
    ({"from": "node/node1", "dns": {"name": "web"}, "expect": {"rcode": "NOERROR"}},
     "checks[0].from: a DNS query is sent from a pod (pod/NAME), got node/node1"),
    ({"from": "pod/c", "dns": {"name": "web", "type": "AXFR"}, "expect": {"rcode": "NOERROR"}},
     "checks[0].dns.type: unsupported value 'AXFR'; allowed: A, AAAA, SRV, PTR, CNAME, TXT, SOA, NS, MX, ANY"),
    ({"from": "pod/c", "dns": {"name": "web", "server": "kube-dns"}, "expect": {"rcode": "NOERROR"}},
     "checks[0].dns.server: 'kube-dns' is not an IPv4 address"),
    ({"from": "pod/c", "dns": {"name": "web"}, "expect": {"rcode": "slow"}},
     "checks[0].expect.rcode: unsupported value 'slow'; allowed: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, NOTIMP, "
     "FORMERR, timeout"),
    ({"from": "pod/c", "dns": {"name": "web"}, "expect": {"rcode": "NXDOMAIN", "answers": ["1.2.3.4"]}},
     "checks[0].expect.answers: an answer needs rcode NOERROR, not NXDOMAIN"),
    ({"from": "pod/c", "dns": {"name": "web"}, "to": {"service": "web"}, "expect": {"rcode": "NOERROR"}},
     "checks[0].to: not with dns (the query says where it goes: dns.server, dns.protocol)"),
    ({"from": "pod/c", "dns": {"name": "web"}, "expect": {"reach": "answered"}},
     "checks[0].expect.reach: unknown field; allowed: rcode, answers"),
])
def test_dns_check_problems(raw, message):
    _, problems = one({"name": "a", **raw})
    assert message in problems


def test_resolv_conf_and_search_order():
    servers, search, ndots = parse_resolv_conf("search a.svc.cluster.local svc.cluster.local\n"
                                               "nameserver 10.96.0.10 # kube-dns\nnameserver 1.1.1.1\noptions ndots:5\n")
    assert (servers, search, ndots) == (["10.96.0.10", "1.1.1.1"], ["a.svc.cluster.local", "svc.cluster.local"], 5)
    assert candidates("web", search, 5) == ["web.a.svc.cluster.local.", "web.svc.cluster.local.", "web."]
    assert candidates("a.b.c.d.e.f", search, 5)[0] == "a.b.c.d.e.f."
    assert candidates("web.", search, 5) == ["web."]
    assert parse_resolv_conf("") == ([], [], 1)
