"""The Kubernetes DNS specification (schema 1.1.0) as CoreDNS answers it, from a table."""

from __future__ import annotations

import pytest

from testbed.dns.corefile import Kubernetes
from testbed.dns.records import FALLTHROUGH, NOERROR, NXDOMAIN, answer

from .fixtures import K8S, cluster, ep, eps, svc

Z = "cluster.local."

# (qname, qtype) -> (rcode, sorted answer as "type rdata", SOA in authority)
TABLE = [
    # ClusterIP Service
    (f"web.default.svc.{Z}", "A", NOERROR, ["A 10.96.0.20"]),
    (f"WEB.Default.SVC.cluster.LOCAL.", "A", NOERROR, ["A 10.96.0.20"]),
    (f"web.default.svc.{Z}", "AAAA", NOERROR, []),
    (f"web.default.svc.{Z}", "MX", NOERROR, []),
    (f"web.default.svc.{Z}", "TXT", NOERROR, []),
    (f"_http._tcp.web.default.svc.{Z}", "SRV", NOERROR, [f"SRV 0 100 80 web.default.svc.{Z}"]),
    (f"_dns._udp.web.default.svc.{Z}", "SRV", NOERROR, [f"SRV 0 100 53 web.default.svc.{Z}"]),
    (f"_http._udp.web.default.svc.{Z}", "SRV", NXDOMAIN, []),
    (f"_nope._tcp.web.default.svc.{Z}", "SRV", NXDOMAIN, []),
    (f"_http._tcp.web.default.svc.{Z}", "A", NOERROR, ["A 10.96.0.20"]),
    (f"web.default.svc.{Z}", "SRV", NOERROR, [f"SRV 0 33 53 web.default.svc.{Z}", f"SRV 0 33 80 web.default.svc.{Z}",
                                              f"SRV 0 33 9000 web.default.svc.{Z}"]),
    # an endpoint of a ClusterIP Service by its dashed address (CoreDNS); not-ready ones are absent
    (f"10-244-0-5.web.default.svc.{Z}", "A", NOERROR, ["A 10.244.0.5"]),
    (f"10-244-1-6.web.default.svc.{Z}", "A", NXDOMAIN, []),
    # headless: A per ready endpoint, per-hostname A, SRV per endpoint and port
    (f"db.default.svc.{Z}", "A", NOERROR, ["A 10.244.0.7", "A 10.244.1.8"]),
    (f"db-0.db.default.svc.{Z}", "A", NOERROR, ["A 10.244.0.7"]),
    (f"DB-1.db.default.svc.{Z}", "A", NOERROR, ["A 10.244.1.8"]),
    (f"db-2.db.default.svc.{Z}", "A", NXDOMAIN, []),
    (f"_pg._tcp.db.default.svc.{Z}", "SRV", NOERROR, [f"SRV 0 50 5432 db-0.db.default.svc.{Z}",
                                                      f"SRV 0 50 5432 db-1.db.default.svc.{Z}"]),
    (f"bare.default.svc.{Z}", "A", NOERROR, ["A 10.244.2.2"]),
    (f"bare.default.svc.{Z}", "SRV", NOERROR, []),
    (f"nobody.default.svc.{Z}", "A", NXDOMAIN, []),
    # ExternalName
    (f"ext.default.svc.{Z}", "A", NOERROR, ["CNAME client.ext.testbed."]),
    (f"ext.default.svc.{Z}", "CNAME", NOERROR, ["CNAME client.ext.testbed."]),
    (f"ext.default.svc.{Z}", "SRV", NOERROR, []),
    # names that do not exist, and names that exist without records
    (f"missing.default.svc.{Z}", "A", NXDOMAIN, []),
    (f"web.nons.svc.{Z}", "A", NXDOMAIN, []),
    (f"default.svc.{Z}", "A", NOERROR, []),
    (f"empty.svc.{Z}", "A", NOERROR, []),
    (f"nons.svc.{Z}", "A", NXDOMAIN, []),
    (f"svc.{Z}", "A", NOERROR, []),
    (f"{Z}", "A", NOERROR, []),
    (f"foo.{Z}", "A", NXDOMAIN, []),
    (f"a.b.c.web.default.svc.{Z}", "A", NXDOMAIN, []),
    (f"default.svc.{Z}", "TXT", NXDOMAIN, []),  # CoreDNS: TXT only for dns-version
    # pods insecure
    (f"10-244-0-5.default.pod.{Z}", "A", NOERROR, ["A 10.244.0.5"]),
    (f"1-2-3-4.empty.pod.{Z}", "A", NOERROR, ["A 1.2.3.4"]),
    (f"1-2-3-4.nons.pod.{Z}", "A", NXDOMAIN, []),
    (f"not-an-ip.default.pod.{Z}", "A", NXDOMAIN, []),
    (f"10-244-0-5.default.pod.{Z}", "AAAA", NOERROR, []),
    # schema version, apex
    (f"dns-version.{Z}", "TXT", NOERROR, ['TXT "1.1.0"']),
    (f"{Z}", "SOA", NOERROR, [f"SOA ns.dns.{Z} hostmaster.{Z} 1 7200 1800 86400 30"]),
    (f"{Z}", "NS", NOERROR, [f"NS ns.dns.{Z}"]),
    (f"ns.dns.{Z}", "A", NOERROR, ["A 10.96.0.10"]),
    # PTR: ClusterIP, endpoint with hostname, endpoint without (dashed)
    ("20.0.96.10.in-addr.arpa.", "PTR", NOERROR, [f"PTR web.default.svc.{Z}"]),
    ("7.0.244.10.in-addr.arpa.", "PTR", NOERROR, [f"PTR db-0.db.default.svc.{Z}"]),
    ("5.0.244.10.in-addr.arpa.", "PTR", NOERROR, [f"PTR 10-244-0-5.web.default.svc.{Z}"]),
]


def _fmt(rrs):
    return sorted(f"{r.type} {r.rdata}" for r in rrs)


@pytest.mark.parametrize("qname,qtype,rcode,expected", TABLE, ids=[f"{q}/{t}" for q, t, _, _ in TABLE])
def test_table(qname, qtype, rcode, expected):
    a = answer(cluster(), K8S, qname, qtype)
    assert a.rcode == rcode
    assert _fmt(a.answer) == sorted(expected)
    # a negative answer (NXDOMAIN, or NODATA: NOERROR without records) carries the zone's SOA
    assert a.soa == (not expected)
    for r in a.answer:
        assert r.name == qname, "the owner is the name as asked"
        assert r.ttl == (28800 if r.type == "TXT" else 30)


def test_srv_targets_resolve_in_additional():
    a = answer(cluster(), K8S, f"_pg._tcp.db.default.svc.{Z}", "SRV")
    assert sorted((r.name, r.rdata) for r in a.extra) == [(f"db-0.db.default.svc.{Z}", "10.244.0.7"),
                                                          (f"db-1.db.default.svc.{Z}", "10.244.1.8")]


def test_external_name_asks_for_the_target():
    assert answer(cluster(), K8S, f"ext.default.svc.{Z}", "A").cname_target == "client.ext.testbed."


def test_unknown_reverse_falls_through_and_outside_zone_is_not_ours():
    assert answer(cluster(), K8S, "9.9.9.9.in-addr.arpa.", "PTR").rcode == FALLTHROUGH
    assert answer(cluster(), K8S, "example.org.", "A").rcode == FALLTHROUGH
    strict = Kubernetes(zones=("cluster.local.", "in-addr.arpa."), ttl=5)
    assert answer(cluster(), strict, "9.9.9.9.in-addr.arpa.", "PTR").rcode == NXDOMAIN


def test_ttl_and_pods_disabled_come_from_the_corefile():
    k = Kubernetes(zones=("cluster.local.",), ttl=7)
    a = answer(cluster(), k, f"web.default.svc.{Z}", "A")
    assert [r.ttl for r in a.answer] == [7]
    assert answer(cluster(), k, f"10-244-0-5.default.pod.{Z}", "A").rcode == NXDOMAIN


def test_watch_events_change_answers():
    idx = cluster()
    gen = idx.generation
    idx.apply("EndpointSlice", "MODIFIED", eps("db-xyz", "db", [ep("10.244.3.3", hostname="db-0")],
                                                 ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    assert idx.generation > gen
    assert _fmt(answer(idx, K8S, f"db.default.svc.{Z}", "A").answer) == ["A 10.244.3.3"]
    idx.apply("Service", "DELETED", svc("web"))
    assert answer(idx, K8S, f"web.default.svc.{Z}", "A").rcode == NXDOMAIN
    assert answer(idx, K8S, "20.0.96.10.in-addr.arpa.", "PTR").rcode == FALLTHROUGH


def test_namespaces_option_limits_what_is_exposed():
    k = Kubernetes(zones=("cluster.local.",), ttl=5, namespaces=frozenset({"kube-system"}))
    assert answer(cluster(), k, f"web.default.svc.{Z}", "A").rcode == NXDOMAIN
    assert answer(cluster(), k, f"kube-dns.kube-system.svc.{Z}", "A").rcode == NOERROR


def test_endpoint_pod_names():
    from testbed.dns.records import ClusterIndex
    idx = ClusterIndex(endpoint_pod_names=True)
    for kind, obj in (("Namespace", {"metadata": {"name": "default"}}), ("Service", svc("h", cluster_ip="None")),
                      ("EndpointSlice", eps("h-1", "h", [ep("10.244.0.9", pod="h-abc12")]))):
        idx.apply(kind, "ADDED", obj)
    assert _fmt(answer(idx, K8S, f"h-abc12.h.default.svc.{Z}", "A").answer) == ["A 10.244.0.9"]


def test_pods_verified_answers_only_for_a_running_pods_address():
    k = Kubernetes(zones=("cluster.local.",), ttl=5, pods="verified")
    idx = cluster()
    pod = {"metadata": {"name": "p", "namespace": "default"}, "status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]}}
    assert answer(idx, k, f"10-244-0-5.default.pod.{Z}", "A").rcode == NXDOMAIN
    assert idx.apply("Pod", "ADDED", pod) == {("default", "pod")}
    assert _fmt(answer(idx, k, f"10-244-0-5.default.pod.{Z}", "A").answer) == ["A 10.244.0.5"]
    assert answer(idx, k, f"10-244-0-5.empty.pod.{Z}", "A").rcode == NXDOMAIN, "another namespace's pod"
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    idx.apply("Pod", "MODIFIED", pod)
    assert answer(idx, k, f"10-244-0-5.default.pod.{Z}", "A").rcode == NXDOMAIN, "terminating pods are dropped"
