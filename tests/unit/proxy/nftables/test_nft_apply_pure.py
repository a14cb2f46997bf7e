"""The applier's pure parts: read-back normalisation, errors, names."""

from testbed.proxy.nftables import names
from testbed.proxy.nftables.apply import (
    _first_error,
    canonical,
    diff_canonical,
)

LISTING = {"nftables": [
    {"metainfo": {"version": "1.0.6"}},
    {"table": {"family": "ip", "name": "kube-proxy", "handle": 3}},
    {"chain": {"family": "ip", "table": "kube-proxy", "name": "services", "handle": 1}},
    {"chain": {"family": "ip", "table": "kube-proxy", "name": "service-X-ns/s/tcp/p", "handle": 9}},
    {"set": {"family": "ip", "name": "affinity-X-ns/s/tcp/p__1.1.1.1/80", "table": "kube-proxy",
             "handle": 4, "elem": [{"elem": {"val": "10.0.0.1", "expires": 100}}]}},
    {"set": {"family": "ip", "name": "cluster-ips", "table": "kube-proxy", "handle": 5,
             "elem": ["172.30.0.2", "172.30.0.1"]}},
]}


def test_canonical_ignores_handles_order_and_affinity_entries():
    other = {"nftables": [dict(o) for o in LISTING["nftables"]]}
    other["nftables"][4] = {"set": {**LISTING["nftables"][4]["set"], "handle": 40, "elem": []}}
    other["nftables"][5] = {"set": {**LISTING["nftables"][5]["set"],
                                    "elem": ["172.30.0.1", "172.30.0.2"]}}
    assert canonical(LISTING) == canonical(other)
    changed = {"nftables": LISTING["nftables"][:5]}
    d = diff_canonical(canonical(LISTING), canonical(changed))
    assert len(d) == 1 and d[0].startswith("- ") and "cluster-ips" in d[0]


def test_first_error_is_one_line():
    stderr = "/dev/stdin:3:1-20: Error: Could not process rule: No such file or directory\nadd x\n^^^\n"
    assert _first_error(stderr).startswith("/dev/stdin:3:1-20: Error: Could not process rule")
    assert _first_error("") == "no error output"


def test_names_match_upstream():
    base = names.service_base
    assert "service-" + base("ns1", "svc1", "tcp", "p80") == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert names.endpoint_base("ns1", "svc1", "tcp", "p80", "10.0.1.1", 80) == \
        "5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80"
    assert names.endpoint_base("ns1", "svc1", "tcp", "p80", "10.180.0.1", 80).startswith("5OJB2KTY-")
    assert base("ns2", "svc2", "tcp", "p80").startswith("42NFTM6N-")
    assert names.endpoint_base("ns5", "svc5", "tcp", "p80", "10.180.0.3", 80).startswith("GTK6MW7G-")
    v6 = names.endpoint_base("ns", "s", "tcp", "p", "2001:db8::1", 80)
    assert ":" not in v6 and v6.endswith("__2001.db8..1/80")
    long = names.hash_and_truncate("n" * 300)
    assert len(long) == 240 and long.endswith("...")
    assert names.is_service_chain("endpoint-X-a/b/tcp/p__1.1.1.1/80")
    assert not names.is_service_chain("services")
