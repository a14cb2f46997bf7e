"""Parsers for conntrack, routes and VXLAN forwarding, and parsing a trace's TO argument."""

import pytest

from testbed.errors import TestbedError
from testbed.troubleshoot import evidence
from testbed.troubleshoot.tracer import parse_dest

CT = ("tcp      6 119 TIME_WAIT src=172.20.10.100 dst=172.20.10.2 sport=36134 dport=30080 src=10.244.1.2 "
      "dst=10.244.0.0 sport=8080 dport=47757 [ASSURED] mark=0 use=1\n"
      "udp      17 29 src=10.244.0.2 dst=10.96.0.10 sport=5000 dport=53 [UNREPLIED] src=10.244.1.9 dst=10.244.0.2 "
      "sport=5353 dport=5000 mark=0 use=1\n")


def test_conntrack_entry_shows_dnat_and_snat():
    entries = evidence.parse_conntrack(CT)
    assert len(entries) == 2 and entries[0]["state"] == "TIME_WAIT" and entries[0]["flags"] == ["ASSURED"]
    e = evidence.find_conntrack(entries, "172.20.10.100", "36134", "172.20.10.2", "30080")
    assert evidence.nat_of(e) == {"dnat": "172.20.10.2:30080 -> 10.244.1.2:8080",
                                  "snat": "172.20.10.100:36134 -> 10.244.0.0:47757"}
    assert "reply 10.244.1.2:8080 -> 10.244.0.0:47757" in evidence.conntrack_text(e)
    assert evidence.find_conntrack(entries, "1.1.1.1", "1", "2.2.2.2", "2") is None
    assert entries[1]["reply"]["src"] == "10.244.1.9"


def test_route_vni_neigh_fdb():
    r = evidence.parse_route("10.244.1.2 via 10.244.1.0 dev flannel.1 src 10.244.0.0 uid 0\n    cache\n")
    assert (r["dst"], r["via"], r["dev"], r["src"]) == ("10.244.1.2", "10.244.1.0", "flannel.1", "10.244.0.0")
    assert evidence.parse_route("local 172.20.10.2 dev lo src 172.20.10.2 uid 0")["type"] == "local"
    assert evidence.parse_vni("vxlan id 1 local 172.20.10.2 dev eth0 srcport 0 0 dstport 8472") == "1"
    assert evidence.parse_neigh_mac("10.244.1.0 lladdr 0e:00:0a:f4:01:00 PERMANENT") == "0e:00:0a:f4:01:00"
    fdb = "0e:00:0a:f4:01:00 dst 172.20.10.3 self permanent\n"
    assert evidence.parse_fdb_dst(fdb, "0e:00:0a:f4:01:00") == "172.20.10.3"


@pytest.mark.parametrize("text,want", [
    ("service/web", ("service", "web", "default", None, "clusterIP", None)),
    ("service/web:http", ("service", "web", "default", "http", "clusterIP", None)),
    ("svc/prod/web:80/nodePort@node2", ("service", "web", "prod", "80", "nodePort", "node2")),
    ("service/web/loadBalancer", ("service", "web", "default", None, "loadBalancer", None)),
    ("pod/web-1:8080", ("pod", "web-1", "default", "8080", "clusterIP", None)),
])
def test_parse_dest(text, want):
    d = parse_dest(text)
    assert (d.kind, d.name, d.namespace, d.port, d.via, d.node) == want


def test_parse_dest_ip_and_errors():
    d = parse_dest("10.96.0.10:53")
    assert (d.kind, d.ip, d.port) == ("ip", "10.96.0.10", "53")
    with pytest.raises(TestbedError, match="VIA: clusterIP, nodePort, externalIP, loadBalancer"):
        parse_dest("web")
    with pytest.raises(TestbedError, match="numeric port"):
        parse_dest("pod/web-1")


def test_ipvs_connection_of_one_client_socket():
    text = ("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
            "TCP 0AF40002 9C40 0A60000A 0050 0AF40102 1F90 ESTABLISHED   899\n"
            "TCP 0AF40002 9C41 0A60000A 0050 0AF40103 1F90 TIME_WAIT     119\n")
    assert evidence.parse_ipvs_conn(text, "10.244.0.2", 40000) == [
        "TCP 10.244.0.2:40000 -> 10.96.0.10:80 -> 10.244.1.2:8080 ESTABLISHED 899s"]
    assert evidence.parse_ipvs_conn(text, "10.244.0.9", 40000) == []


@pytest.mark.parametrize("to, message", [
    ("service/web", "TO service/web: no UDP port; ports: http/TCP"),
    ("service/web:81", "TO service/web: no UDP port 81; ports: http/TCP"),
])
def test_service_without_the_protocol_names_what_it_has(to, message):
    from contextlib import contextmanager

    from testbed.troubleshoot.tracer import _resolve

    class Api:
        def get(self, kind, ns, name):
            return {"spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}

        def list(self, kind, ns, label_selector=None):
            return [], "1"

    class Cluster:
        @contextmanager
        def api(self):
            yield Api()

    with pytest.raises(TestbedError) as e:
        _resolve(Cluster(), parse_dest(to), "udp", [])
    assert str(e.value) == message


def test_ipvs_virtual_servers_and_their_real_servers():
    text = ("IP Virtual Server version 1.2.1 (size=4096)\n"
            "Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
            "TCP  0A60000A:0050 rr\n"
            "  -> 0AF40102:1F90      Masq    1      0          0\n"
            "  -> 0AF40203:1F90      Masq    1      1          0\n"
            "UDP  0A60000B:0035 rr persistent 10800 FFFFFFFF\n"
            "FWM  00000001 rr\n"
            "  -> 0AF40104:1F90      Masq    1      0          0\n"
            "TCP  AC120002:7918 rr\n")
    assert evidence.parse_ipvs_services(text) == {
        "TCP 10.96.0.10:80": ["10.244.1.2:8080", "10.244.2.3:8080"],
        "UDP 10.96.0.11:53": [],
        "TCP 172.18.0.2:31000": []}
