"""Corefile parsing: kubeadm's default, and CoreDNS's kind of error for everything else."""

from __future__ import annotations

import pytest

from testbed.dns.corefile import KUBEADM_COREFILE, CorefileError, load, parse


def test_kubeadm_default(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example\nnameserver 10.100.0.1\nnameserver 10.100.0.2\n")
    [b] = parse(KUBEADM_COREFILE, resolv_conf=str(resolv))
    assert (b.zones, b.port) == ((".",), 53)
    k = b.kubernetes
    assert k.zones == ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    assert (k.ttl, k.pods, k.fallthrough) == (30, "insecure", ("in-addr.arpa.", "ip6.arpa."))
    assert k.falls_through("1.0.0.10.in-addr.arpa.") and not k.falls_through("x.cluster.local.")
    assert b.forward.zone == "." and b.forward.upstreams == (("10.100.0.1", 53), ("10.100.0.2", 53))
    assert (b.cache_ttl, b.health, b.ready, b.prometheus) == (30, ":8080", ":8181", ":9153")
    assert b.loadbalance and b.loop and b.reload and b.errors and b.lameduck == 5.0
    assert (b.forward.policy, b.forward.max_concurrent) == ("random", 1000)


def test_forward_policy_and_durations():
    [b] = parse(".:53 {\n health {\n  lameduck 1m30s\n }\n forward . 10.0.0.1 {\n  policy sequential\n }\n}\n")
    assert b.lameduck == 90.0 and b.forward.policy == "sequential" and b.forward.max_concurrent is None


def test_forward_to_addresses_and_ports_and_zones():
    [b] = parse("cluster.local:1053 example.org:1053 {\n forward . 10.0.0.1:5353 dns://10.0.0.2\n cache\n}\n")
    assert b.port == 1053 and b.zones == ("cluster.local.", "example.org.")
    assert b.forward.upstreams == (("10.0.0.1", 5353), ("10.0.0.2", 53))
    assert b.cache_ttl == 3600


def test_comments_quotes_and_glued_braces():
    [b] = parse("# a comment\n.:53{\n  kubernetes \"cluster.local\" {  # zones\n  ttl 5 }\n}\n")
    assert b.kubernetes.zones == ("cluster.local.",) and b.kubernetes.ttl == 5


@pytest.mark.parametrize("text,message", [
    (".:53 {\n    errors\n    foo\n}\n", "Corefile:3 - Error during parsing: Unknown directive 'foo'"),
    (".:53 {\n    errors\n", "Corefile:1 - Error during parsing: Unexpected EOF"),
    (".:53\n    errors\n}\n", "Corefile:1 - Error during parsing: Unexpected token"),
    (".:53 {\n kubernetes cluster.local {\n  pods maybe\n }\n}\n",
     "plugin/kubernetes: Corefile:3 - Error during parsing: wrong value for pods: maybe,  must be one of: disabled, verified, insecure"),
    (".:53 {\n kubernetes cluster.local {\n  ttl 4000\n }\n}\n",
     "plugin/kubernetes: Corefile:3 - Error during parsing: ttl must be in range [0, 3600]: 4000"),
    (".:53 {\n kubernetes cluster.local {\n  bogus\n }\n}\n",
     "plugin/kubernetes: Corefile:3 - Error during parsing: unknown property 'bogus'"),
    (".:53 {\n forward .\n}\n", "plugin/forward: Corefile:2 - Error during parsing: Wrong argument count"),
    (".:53 {\n forward . not-an-ip\n}\n",
     'plugin/forward: Corefile:2 - Error during parsing: not an IP address or file: "not-an-ip"'),
    (".:53 {\n hosts\n}\n", "plugin/hosts: Corefile:2 - Error during parsing: not supported by the testbed's DNS server"),
    (".:53 {\n cache\n cache\n}\n", "plugin/cache: Corefile:3 - Error during parsing: this plugin can only be used once"),
    (".:99999 {\n errors\n}\n", "Corefile:1 - Error during parsing: invalid port '99999'"),
    (".:53 {\n loop now\n}\n", "plugin/loop: Corefile:2 - Error during parsing: Wrong argument count"),
    ("", "Corefile:1 - Error during parsing: no server blocks"),
    (".:53 {\n errors\n}\n.:53 {\n errors\n}\n", "cannot serve dns://.:53 - it is already defined"),
    (".:53 {\n health {\n  lameduck 5\n }\n}\n",
     'plugin/health: Corefile:3 - Error during parsing: time: missing unit in duration "5"'),
    (".:53 {\n forward . 10.0.0.1 {\n  policy fastest\n }\n}\n",
     "plugin/forward: Corefile:3 - Error during parsing: unknown policy 'fastest'"),
])
def test_errors_read_like_coredns(text, message):
    with pytest.raises(CorefileError) as e:
        parse(text)
    assert str(e.value).startswith(message), str(e.value)


def test_load_names_the_file(tmp_path):
    p = tmp_path / "Corefile"
    p.write_text(".:53 {\n foo\n}\n")
    with pytest.raises(CorefileError, match=rf"^{p}:2 - Error during parsing: Unknown directive 'foo'$"):
        load(str(p))
    with pytest.raises(CorefileError, match="No such file"):
        load(str(tmp_path / "missing"))
