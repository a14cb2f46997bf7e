"""The ``rules`` check in nftables mode reads ``nft list table ip kube-proxy``: live service
chains count, flushed (stale) ones do not."""

import subprocess

from testbed.verify import rules

LISTING = """table ip kube-proxy {
\tcomment "rules for kube-proxy"
\tchain service-ULMVA6XW-default/web/tcp/http {
\t\tip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
\t\tnumgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-default/web/tcp/http__10.244.1.2/8080, 1 : goto endpoint-X/x }
\t}
\tchain service-AAAAAAAA-default/gone/tcp/http {
\t}
\tchain service-BBBBBBBB-kube-system/dns/udp/dns {
\t\tnumgen random mod 1 vmap { 0 : goto endpoint-Y/y }
\t}
}
"""


def test_live_service_chains_and_the_services_rules(monkeypatch):
    calls = []

    def run(argv, netns=None, check=True):
        calls.append((argv, netns))
        return subprocess.CompletedProcess(argv, 0, LISTING, "")
    monkeypatch.setattr(rules.exec, "run", run)
    assert rules._nftables("tb.c.node.node1", "default/web") == (2, 2)
    assert rules._nftables("tb.c.node.node1", "default/gone") == (2, 0)
    assert calls[0] == (["nft", "list", "table", "ip", "kube-proxy"], "tb.c.node.node1")
