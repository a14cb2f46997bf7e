"""kube-proxy (iptables and nftables mode) through the real flow: ``Cluster.up`` starts the control plane, the
daemon starts one supervised kube-proxy per node, Services and Pods go through the API, and
every behaviour of the proxy is proven by traffic from pods and from external clients. The module
runs once per mode (the ``lab`` fixture is parametrized); the few assertions on the rules
themselves read each mode's own rule text (``Lab.rules``).

Convergence is waited for on watches (``controllers.base.wait_for``) and on the proxies'
metrics files (``testbed.proxy.status.wait_programmed``: inotify on the state directory, no polling);
there are no fixed sleeps. Timeouts below are only used where the expected result *is* that
nothing answers (a dropped packet).
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import os
import re
import signal
import socket
import time

import pytest
from typer.testing import CliRunner

from testbed import lbnet, netns
from testbed.cli import app
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.proxy import status as proxy_status
from testbed.proxy.healthcheck import probe
from testbed.scenario import parse

pytestmark = pytest.mark.root

NAME = "kp4proxy"
HTTP, ALT, DNS = 8080, 9090, 5353
PORTS = [{"name": "http", "containerPort": HTTP}, {"name": "alt", "containerPort": ALT},
         {"name": "dns", "containerPort": DNS, "protocol": "UDP"}]


def pod(name: str, node: str, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "testbed/echo", "ports": PORTS}]}}


def svc(name: str, ports: list[dict], selector: dict | None = None, **spec) -> dict:
    s = {"ports": ports, **spec}
    if selector is not None:
        s["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": s}


P80 = {"name": "http", "port": 80, "targetPort": "http"}
MANIFESTS = [
    pod("web-1", "node1", app="web"), pod("web-2", "node2", app="web"),
    pod("local-1", "node1", app="local"), pod("cl-1", "node1", role="client"), pod("cl-2", "node2", role="client"),
    pod("udp-a", "node1", app="udp"), pod("conv-1", "node1", app="conv"),
    svc("web", [P80, {"name": "alt", "port": 81, "targetPort": ALT},
                {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}], {"app": "web"}),
    svc("web-np", [P80], {"app": "web"}, type="NodePort"),
    svc("web-eip", [{"name": "http", "port": 8081, "targetPort": "http"}], {"app": "web"},
        externalIPs=["172.20.10.3"]),
    svc("web-lb", [P80], {"app": "web"}, type="LoadBalancer"),
    svc("lb-ranges", [P80], {"app": "web"}, type="LoadBalancer", loadBalancerSourceRanges=["172.20.10.100/32"]),
    svc("local-lb", [P80], {"app": "local"}, type="LoadBalancer", externalTrafficPolicy="Local"),
    svc("itp-local", [P80], {"app": "local"}, internalTrafficPolicy="Local"),
    svc("solo", [P80], {"app": "local"}),
    svc("affinity", [P80], {"app": "web"}, sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
    svc("empty", [P80], {"app": "nothing"}),
    svc("term", [{"port": 80, "targetPort": HTTP}]),           # no selector: user-managed slice
    svc("udp", [{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}], {"app": "udp"}),
    svc("conv", [P80], {"app": "conv"}),
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext-name"},
     "spec": {"type": "ExternalName", "externalName": "example.org"}},
    svc("headless", [P80], {"app": "web"}, clusterIP="None"),
]


# ----------------------------------------------------------------------------- helpers

class Lab:
    def __init__(self, c: Cluster, mode: str):
        self.c = c
        self.mode = mode
        self.api = c.api()
        self._ns: dict[str, str] = {}
        self._probe_port = 20000

    def ns(self, target: str) -> str:
        if target not in self._ns:
            self._ns[target] = self.c.netns_of(target)
        return self._ns[target]

    def svc(self, name: str) -> dict:
        return self.api.get("Service", "default", name)

    def cip(self, name: str) -> str:
        return self.svc(name)["spec"]["clusterIP"]

    def lb_ip(self, name: str) -> str:
        return lbnet.ingress_ips(self.svc(name))[0]

    def node_ip(self, node: str) -> str:
        return self.c.plan.node(node).ip

    def programmed(self, *objs, nodes=None, timeout=10.0):
        return proxy_status.wait_programmed(self.c.name, objs, nodes, timeout)

    def slice_ready(self, service: str, ips: set[str], ready: bool = True, ports: set[str] | None = None) -> dict:
        """Wait for the Service's slices to list exactly ``ips`` (ready ones) and, if given,
        exactly the port names ``ports``; returns the newest slice."""
        def done(items):
            mine = [s for s in items if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == service]
            got = {a for s in mine for e in s.get("endpoints") or []
                   if not ready or (e.get("conditions") or {}).get("ready", True) for a in e["addresses"]}
            names = {p.get("name") or "" for s in mine for p in s.get("ports") or []}
            if not mine or got != ips or (ports is not None and names != ports):
                return None
            return max(mine, key=lambda s: int(s["metadata"]["resourceVersion"]))
        return wait_for(self.api, "EndpointSlice", done, namespace="default", timeout=10)

    # -- traffic (each call runs entirely inside the source namespace)
    def http(self, src: str, ip: str, port: int, path: str = "/hostname", n: int = 1, timeout: float = 2.0):
        def go():
            out = []
            for _ in range(n):
                with socket.create_connection((ip, port), timeout=timeout) as s:
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                out.append(data.split(b"\r\n\r\n", 1)[1].decode())
            return out
        res = netns.run_in(self.ns(src), go)
        return res[0] if n == 1 else collections.Counter(res)

    def fails(self, src: str, ip: str, port: int, timeout: float = 1.0) -> type[BaseException]:
        """Connect and expect no connection: returns the exception type (and checks how fast).

        The probe binds a source port outside the ephemeral range, so the conntrack entry it
        leaves on the node (un-NATed, unreplied) is never hit by a later connection's tuple."""
        self._probe_port += 1
        sport = self._probe_port

        def go():
            t = time.monotonic()
            try:
                with socket.create_connection((ip, port), timeout=timeout, source_address=("", sport)) as s:
                    return None, s.getpeername()
            except OSError as exc:
                return type(exc), time.monotonic() - t
        kind, info = netns.run_in(self.ns(src), go)
        assert kind is not None, f"{src} reached {ip}:{port} ({info})"
        return kind, info

    def udp(self, src: str):
        s = netns.run_in(self.ns(src), socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        return s

    def save(self, node: str, table: str = "nat") -> str:
        return self.c.exec(f"node/{node}", ["iptables-save", "-t", table],
                           check=True).stdout

    def rules(self, node: str) -> str:
        """The node's kube-proxy rules as text: the nat and filter tables (iptables mode), or
        ``table ip kube-proxy`` without its empty chains (nftables mode: stale chains are
        flushed at once and deleted by a later sync)."""
        if self.mode == "iptables":
            return self.save(node) + self.save(node, "filter")
        text = self.c.exec(f"node/{node}", ["nft", "list", "table", "ip", "kube-proxy"], check=True).stdout
        return re.sub(r"\n\s*chain \S+ \{\n\s*\}", "", text)

    def tag(self, service: str, port: str = "http", proto: str = "tcp") -> str:
        """How the mode's rules name a Service port."""
        return f"default/{service}:{port}" if self.mode == "iptables" else f"default/{service}/{proto}/{port}"

    def dnat(self, ip: str) -> str:
        return f"--to-destination {ip}:" if self.mode == "iptables" else f"dnat to {ip}:"


def udp_ask(s: socket.socket, target: tuple[str, int], cmd: bytes = b"hostname") -> str:
    for _ in range(3):   # a lost datagram is resent (not a wait for state)
        s.sendto(cmd, target)
        try:
            return s.recv(256).decode()
        except socket.timeout:
            continue
    raise AssertionError(f"no UDP answer from {target}")


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request):
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": NAME},
           "spec": {"nodes": 2, "externals": 2, "proxyMode": request.param,
                    "proxy": {"minSyncPeriod": "50ms", "syncPeriod": "10s"}},
           "manifests": MANIFESTS}
    c = Cluster.up(parse(doc))
    try:
        lab = Lab(c, request.param)
        lbs = {"web-lb", "lb-ranges", "local-lb"}
        svcs = wait_for(lab.api, "Service", lambda ss: ss if lbs <= {s["metadata"]["name"] for s in ss
                                                                      if lbnet.ingress_ips(s)} else None,
                        namespace="default", timeout=10)
        slices = [lab.slice_ready(n, {c.pod(p).ip for p in pods}) for n, pods in
                  (("web", ("web-1", "web-2")), ("local-lb", ("local-1",)), ("udp", ("udp-a",)),
                   ("conv", ("conv-1",)))]
        lab.programmed(*svcs, *slices, nodes=["node1", "node2"])
        yield lab
        lab.api.close()
    finally:
        c.down()


# ----------------------------------------------------------------------------- ClusterIP

def test_clusterip_tcp_spreads_over_all_endpoints_named_target_port(lab):
    ip = lab.cip("web")
    for src in ("pod/cl-1", "pod/cl-2"):
        assert set(lab.http(src, ip, 80, n=30)) == {"web-1", "web-2"}


def test_clusterip_multi_port_and_udp(lab):
    ip = lab.cip("web")
    # port 81 -> targetPort 9090 (numeric); the body shows the port the connection arrived on
    assert lab.http("pod/cl-1", ip, 81, "/") .count(f":{ALT}") >= 1
    s = lab.udp("pod/cl-2")
    try:
        assert udp_ask(s, (ip, 53)) in ("web-1", "web-2")
        peers = {udp_ask(lab.udp("pod/cl-1"), (ip, 53)) for _ in range(20)}
        assert peers == {"web-1", "web-2"}
    finally:
        s.close()


def test_spread_uses_upstream_endpoint_selection(lab):
    if lab.mode == "nftables":
        chain = re.search(r"chain service-\w+-default/web/tcp/http \{\n(.*?)\n\s*\}", lab.rules("node1"), re.S)
        assert re.search(r"numgen random mod 2 vmap \{ 0 : goto endpoint-\w+-default/web/tcp/http__[\d.]+/8080, "
                         r"1 : goto endpoint-", chain.group(1)), chain.group(1)
        return
    nat = lab.save("node1")
    svc_chain = [ln for ln in nat.splitlines() if '"default/web:http -> ' in ln]
    assert len(svc_chain) == 2
    assert "-m statistic --mode random --probability 0.50000000000" in svc_chain[0]
    assert "statistic" not in svc_chain[1]


# ----------------------------------------------------------------------------- node ports, external IPs, LB

def test_nodeport_on_every_node_from_pods_and_external(lab):
    np = lab.svc("web-np")["spec"]["ports"][0]["nodePort"]
    for node in ("node1", "node2"):
        for src in ("pod/cl-1", "external/client1"):
            assert set(lab.http(src, lab.node_ip(node), np, n=20)) == {"web-1", "web-2"}, (node, src)


def test_external_ips(lab):
    assert set(lab.http("external/client1", "172.20.10.3", 8081, n=20)) == {"web-1", "web-2"}
    assert set(lab.http("pod/cl-1", "172.20.10.3", 8081, n=10)) <= {"web-1", "web-2"}


def test_load_balancer_answers_from_the_underlay(lab):
    ip = lab.lb_ip("web-lb")
    pool = ipaddress.ip_network(lab.c.plan.lb_pool)
    assert ipaddress.ip_address(ip) in pool
    assert not pool.overlaps(ipaddress.ip_network(f"{lab.c.plan.underlay.gateway}/{lab.c.plan.underlay.prefixlen}",
                                                  strict=False))
    routes = lbnet.current_routes(lab.c.plan.underlay.netns)
    assert routes[ip] == (lab.node_ip("node1"), lab.node_ip("node2"))
    for client in ("external/client1", "external/client2"):
        assert set(lab.http(client, ip, 80, n=20)) == {"web-1", "web-2"}
    # kube-proxy's own rules for the ingress IP, on every node
    for node in ("node1", "node2"):
        want = (f"-d {ip}/32 -p tcp -m comment --comment \"default/web-lb:http loadbalancer IP\"" if lab.mode == "iptables"
                else f"{ip} . tcp . 80 : goto external-")
        assert want in lab.rules(node)
    # and from inside the cluster (pods use the node's KUBE-SERVICES rules)
    assert lab.http("pod/cl-2", ip, 80) in ("web-1", "web-2")


def test_etp_cluster_masquerades_the_client(lab):
    plan = lab.c.plan
    node_addrs = {a for n in plan.nodes for a in (n.ip, n.cni_ip, n.vtep_ip)}
    seen = collections.Counter(lab.http("external/client1", lab.lb_ip("web-lb"), 80, "/clientip", n=20))
    sources = {s.rsplit(":", 1)[0] for s in seen}
    assert sources <= node_addrs, sources
    np = lab.svc("web-np")["spec"]["ports"][0]["nodePort"]
    sources = {s.rsplit(":", 1)[0] for s in lab.http("external/client1", lab.node_ip("node2"), np, "/clientip", n=10)}
    assert sources <= node_addrs and "172.20.10.100" not in sources


def test_load_balancer_source_ranges(lab):
    ip = lab.lb_ip("lb-ranges")
    assert set(lab.http("external/client1", ip, 80, n=10)) <= {"web-1", "web-2"}     # 172.20.10.100: allowed
    kind, _ = lab.fails("external/client2", ip, 80, timeout=1.0)                  # 172.20.10.101: dropped
    assert kind in (socket.timeout, TimeoutError)
    if lab.mode == "nftables":
        assert re.search(r"ip saddr != \{? ?172.20.10.100 ?\}? drop", lab.rules("node1"))
        return
    nat = lab.save("node1")
    assert re.search(r"-A KUBE-FW-\w+ -s 172.20.10.100/32 .*-j KUBE-EXT-", nat)
    assert "-A KUBE-PROXY-FIREWALL" in lab.save("node1", "filter")


def test_etp_local_keeps_client_ip_and_drops_without_endpoint(lab):
    s = lab.svc("local-lb")
    ip, np, hc = lbnet.ingress_ips(s)[0], s["spec"]["ports"][0]["nodePort"], s["spec"]["healthCheckNodePort"]
    # the cloud (lbnet) routes a Local LB only to nodes with a ready endpoint
    assert lbnet.current_routes(lab.c.plan.underlay.netns)[ip] == (lab.node_ip("node1"),)
    for client, cip in (("external/client1", "172.20.10.100"), ("external/client2", "172.20.10.101")):
        assert {a.rsplit(":", 1)[0] for a in lab.http(client, ip, 80, "/clientip", n=5)} == {cip}
        assert lab.http(client, lab.node_ip("node1"), np, "/clientip").startswith(cip + ":")
    kind, _ = lab.fails("external/client1", lab.node_ip("node2"), np, timeout=1.0)
    assert kind in (socket.timeout, TimeoutError)
    status, headers, body = netns.run_in(lab.ns("external/client1"), probe, lab.node_ip("node1"), hc)
    assert (status, body["localEndpoints"], headers["x-load-balancing-endpoint-weight"]) == (200, 1, "1")
    assert body["service"] == {"namespace": "default", "name": "local-lb"} and body["serviceProxyHealthy"]
    status, headers, body = netns.run_in(lab.ns("external/client1"), probe, lab.node_ip("node2"), hc)
    assert (status, body["localEndpoints"], headers["x-load-balancing-endpoint-weight"]) == (503, 0, "0")


def test_itp_local(lab):
    ip = lab.cip("itp-local")
    assert set(lab.http("pod/cl-1", ip, 80, n=10)) == {"local-1"}     # node1 has the endpoint
    kind, _ = lab.fails("pod/cl-2", ip, 80, timeout=1.0)               # node2 has none: dropped
    assert kind in (socket.timeout, TimeoutError)


# ----------------------------------------------------------------------------- special services

def test_external_name_and_headless_have_no_rules(lab):
    assert lab.svc("headless")["spec"]["clusterIP"] == "None"
    for node in ("node1", "node2"):
        text = lab.rules(node)
        assert "default/ext-name" not in text and "default/headless" not in text
        assert lab.tag("web") in text


def test_session_affinity_client_ip(lab):
    ip = lab.cip("affinity")
    for src in ("pod/cl-1", "pod/cl-2"):
        assert len(lab.http(src, ip, 80, n=20)) == 1, src
    if lab.mode == "nftables":
        text = lab.rules("node2")
        sets = re.findall(r"set (affinity-\w+-default/affinity/tcp/http__[\d.]+/8080) \{(.*?)\}", text, re.S)
        assert len(sets) == 2 and all("timeout 1m" in body for _, body in sets), sets
        cl2 = lab.c.pod("cl-2").ip
        # remembered for exactly one backend
        assert sum(cl2 in body.split("elements", 1)[-1] for _, body in sets if "elements" in body) == 1
        return
    nat = lab.save("node2")
    rules = [ln for ln in nat.splitlines() if "default/affinity:http" in ln and "--rcheck" in ln]
    assert len(rules) == 2 and all("--seconds 60 --reap" in r for r in rules), rules
    assert len([ln for ln in nat.splitlines() if "default/affinity:http" in ln and "--set" in ln]) == 2
    seps = sorted({m for r in rules for m in re.findall(r"--name (KUBE-SEP-\w+)", r)})
    assert len(seps) == 2
    cl2 = lab.c.pod("cl-2").ip
    holders = [sep for sep in seps if f"src={cl2} " in lab.c.exec(
        "node/node2", ["cat", f"/proc/net/xt_recent/{sep}"]).stdout]
    assert len(holders) == 1   # remembered for exactly one backend, for timeoutSeconds


def test_no_ready_endpoints_is_refused_at_once(lab):
    kind, elapsed = lab.fails("pod/cl-1", lab.cip("empty"), 80, timeout=5.0)
    assert kind is ConnectionRefusedError and elapsed < 1.0
    np_svc = lab.api.create(svc("empty-np", [P80], {"app": "nothing"}, type="NodePort"))
    lab.programmed(np_svc)
    kind, elapsed = lab.fails("external/client1", lab.node_ip("node1"), np_svc["spec"]["ports"][0]["nodePort"], 5.0)
    assert kind is ConnectionRefusedError and elapsed < 1.0


def test_serving_terminating_fallback(lab):
    web1, web2 = lab.c.pod("web-1"), lab.c.pod("web-2")

    def eps(*items):
        return [{"addresses": [p.ip], "nodeName": p.node, "conditions": cond} for p, cond in items]
    terminating = {"ready": False, "serving": True, "terminating": True}
    ready = {"ready": True, "serving": True, "terminating": False}
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "term-manual", "namespace": "default",
                       "labels": {"kubernetes.io/service-name": "term",
                                  "endpointslice.kubernetes.io/managed-by": "tests.example.org"}},
          "addressType": "IPv4", "endpoints": eps((web1, terminating)),
          "ports": [{"name": "", "port": HTTP, "protocol": "TCP"}]}
    obj = lab.api.create(sl)
    lab.programmed(obj)
    ip = lab.cip("term")
    assert set(lab.http("pod/cl-2", ip, 80, n=10)) == {"web-1"}       # only a terminating one: used
    obj["endpoints"] = eps((web1, terminating), (web2, ready))
    obj = lab.api.update(obj)
    lab.programmed(obj)
    assert set(lab.http("pod/cl-2", ip, 80, n=20)) == {"web-2"}       # a ready one wins


def test_hairpin_pod_reaches_itself(lab):
    local = lab.c.pod("local-1")
    gw = lab.c.plan.node(local.node).cni_ip
    for _ in range(3):
        assert lab.http("pod/local-1", lab.cip("solo"), 80, "/clientip").split(":")[0] == gw
    assert lab.http("pod/local-1", lab.cip("solo"), 80) == "local-1"


# ----------------------------------------------------------------------------- convergence

def test_endpoints_added_and_removed_converge(lab):
    ip = lab.cip("conv")
    assert set(lab.http("pod/cl-2", ip, 80, n=5)) == {"conv-1"}
    lab.api.create(pod("conv-2", "node2", app="conv"))
    wait_for(lab.api, "Pod", lambda ps: any(p["metadata"]["name"] == "conv-2" and (p.get("status") or {}).get("podIP")
                                            for p in ps), namespace="default", timeout=10)
    sl = lab.slice_ready("conv", {lab.c.pod("conv-1").ip, lab.c.pod("conv-2").ip})
    lab.programmed(sl)
    assert set(lab.http("pod/cl-1", ip, 80, n=30)) == {"conv-1", "conv-2"}
    conv1 = lab.c.pod("conv-1").ip
    lab.api.delete("Pod", "default", "conv-1", grace_seconds=0)
    sl = lab.slice_ready("conv", {lab.c.pod("conv-2").ip})
    lab.programmed(sl)
    assert set(lab.http("pod/cl-1", ip, 80, n=20)) == {"conv-2"}
    assert lab.dnat(conv1) not in lab.rules("node1")


def test_ports_added_and_removed_converge(lab):
    s = lab.svc("conv")
    ip = s["spec"]["clusterIP"]
    lab.fails("pod/cl-1", ip, 81, timeout=1.0)
    pods = {lab.c.pod("conv-2").ip}
    s["spec"]["ports"] = [P80, {"name": "alt", "port": 81, "targetPort": "alt"}]
    s = lab.api.update(s)
    lab.programmed(s, lab.slice_ready("conv", pods, ports={"http", "alt"}))
    assert f":{ALT}" in lab.http("pod/cl-1", ip, 81, "/")
    s["spec"]["ports"] = [{"name": "alt", "port": 81, "targetPort": "alt"}]
    s = lab.api.update(s)
    lab.programmed(s, lab.slice_ready("conv", pods, ports={"alt"}))
    assert f":{ALT}" in lab.http("pod/cl-2", ip, 81, "/")
    lab.fails("pod/cl-2", ip, 80, timeout=1.0)
    assert lab.tag("conv") not in lab.rules("node2")


def test_service_recreated_converges(lab):
    old = lab.svc("conv")
    lab.api.delete("Service", "default", "conv")
    new = lab.api.create(svc("conv", [P80], {"app": "conv"}))
    lab.programmed(new)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    sl = lab.slice_ready("conv", {lab.c.pod("conv-2").ip})
    lab.programmed(sl)
    assert set(lab.http("pod/cl-1", new["spec"]["clusterIP"], 80, n=10)) == {"conv-2"}
    if new["spec"]["clusterIP"] != old["spec"]["clusterIP"]:
        assert (f"-d {old['spec']['clusterIP']}/32" if lab.mode == "iptables"
                else f"{old['spec']['clusterIP']} . tcp") not in lab.rules("node1")


def test_udp_backend_replaced_with_conntrack_cleanup(lab):
    ip = lab.cip("udp")
    s = lab.udp("pod/cl-2")
    try:
        assert udp_ask(s, (ip, 53)) == "udp-a"
        assert udp_ask(s, (ip, 53)) == "udp-a"      # one conntrack entry, to udp-a
        before = proxy_status.proxy_metrics(lab.c.name, "node2")["node2"]["conntrack_entries_deleted_total"]
        lab.api.create(pod("udp-b", "node2", app="udp"))
        wait_for(lab.api, "Pod", lambda ps: any(p["metadata"]["name"] == "udp-b" and (p.get("status") or {}).get("podIP")
                                                for p in ps), namespace="default", timeout=10)
        # udp-a keeps running but leaves the Service: without the cleanup the flow stays on it
        a = lab.api.get("Pod", "default", "udp-a")
        a["metadata"]["labels"] = {"app": "retired"}
        lab.api.update(a)
        sl = lab.slice_ready("udp", {lab.c.pod("udp-b").ip})
        ms = lab.programmed(sl, nodes=["node2"])
        assert ms["node2"]["conntrack_entries_deleted_total"] > before
        assert udp_ask(s, (ip, 53)) == "udp-b"
        assert udp_ask(s, (ip, 53), b"clientip").startswith(lab.c.pod("cl-2").ip + ":")
    finally:
        s.close()


# ----------------------------------------------------------------------------- restart, tools

def test_restart_keeps_established_connections_and_takes_over(lab):
    ip = lab.cip("web")
    old_pid = proxy_status.proxy_metrics(lab.c.name, "node1")["node1"]["pid"]

    def open_conn():
        s = socket.create_connection((ip, 80), timeout=3)
        return s

    def ask(s):
        s.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, body = data.split(b"\r\n\r\n", 1)
        n = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
        while len(body) < n:
            body += s.recv(4096)
        return body.decode()
    conn = netns.run_in(lab.ns("pod/cl-1"), open_conn)
    try:
        first = ask(conn)
        os.kill(old_pid, signal.SIGKILL)          # the daemon's supervisor starts a new proxy
        ms = proxy_status.wait_metrics(
            lab.c.name, lambda m: m if m["node1"]["pid"] != old_pid and (m["node1"].get("last_sync") or {}).get("ok")
            else None, timeout=15, what="a new kube-proxy on node1")
        new = ms["node1"]
        assert new["full_syncs_total"] == 1 and new["sync_failures_total"] == 0
        assert ask(conn) == first                  # the established connection survived, same backend
        assert ask(conn) == first
    finally:
        conn.close()
    if lab.mode == "iptables":
        nat = lab.save("node1")
        assert nat.count('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES') == 1
    else:
        assert lab.rules("node1").count("jump services") == 2     # nat-output, nat-prerouting
    assert set(lab.http("pod/cl-1", ip, 80, n=20)) == {"web-1", "web-2"}
    assert proxy_status.check_rules(lab.c.name, "node/node1") == []
    events, _ = lab.api.list("Event", "default")
    assert sum(e["reason"] == "Synced" and e["source"]["host"] == "node1" and e["source"]["component"] == "kube-proxy"
               for e in events) >= 2                # one full sync per process


def test_rules_and_metrics_commands(lab):
    r = CliRunner().invoke(app, ["rules", "node/node2", "-c", lab.c.name])
    want = ("*nat", "KUBE-SERVICES") if lab.mode == "iptables" else ("table ip kube-proxy {", "chain services {")
    assert r.exit_code == 0 and all(w in r.output for w in want), r.output[:500]
    r = CliRunner().invoke(app, ["rules", "node/node2", "--check", "-c", lab.c.name])
    assert r.exit_code == 0, r.output
    assert "holds exactly" in r.output
    r = CliRunner().invoke(app, ["metrics", "-c", lab.c.name])
    assert r.exit_code == 0 and "NPL P50 ms" in r.output and "node1" in r.output and "node2" in r.output
    r = CliRunner().invoke(app, ["metrics", "node/node1", "-o", "json", "-c", lab.c.name])
    assert r.exit_code == 0 and '"network_programming_latency_seconds"' in r.output
    if lab.mode == "nftables":
        tamper = ["nft", "add", "chain", "ip", "kube-proxy", "tamper"]
        lab.c.exec("node/node2", tamper, check=True)
        try:
            r = CliRunner().invoke(app, ["rules", "node/node2", "--check", "-c", lab.c.name])
            assert r.exit_code == 1 and "only in the kernel" in r.output and '"tamper"' in r.output, r.output
        finally:
            lab.c.exec("node/node2", ["nft", "delete", "chain", "ip", "kube-proxy", "tamper"], check=True)
        assert proxy_status.check_rules(lab.c.name, "node/node2") == []
        return
    # tamper with a chain of node2: the check reports it and exits 1
    nat = lab.save("node2")
    chain = re.search(r"-A (KUBE-SVC-\w+) .*default/web:http", nat).group(1)
    extra = ["iptables", "-w", "5", "-t", "nat", "-A", chain, "-j", "RETURN"]
    lab.c.exec("node/node2", extra, check=True)
    try:
        r = CliRunner().invoke(app, ["rules", "node/node2", "--check", "-c", lab.c.name])
        assert r.exit_code == 1
        assert f"nat {chain}: rules differ" in r.output and f"+ -A {chain} -j RETURN" in r.output
    finally:
        lab.c.exec("node/node2", [*extra[:5], "-D", *extra[6:]], check=True)
    assert proxy_status.check_rules(lab.c.name, "node/node2") == []


def test_lb_routes_removed_when_released(lab):
    ip = lab.lb_ip("web-lb")
    s = lab.svc("web-lb")
    s["spec"]["type"] = "ClusterIP"
    s["spec"].pop("externalTrafficPolicy", None)
    for p in s["spec"]["ports"]:
        p.pop("nodePort", None)
    lab.api.update(s)
    # the route controller records what it programmed in <state>/lb-routes.json (inotify wait)
    proxy_status.wait_state(lab.c.name, lambda: ip not in lbnet.read_state(lab.c.name), what=f"route {ip} removed")
    assert ip not in lbnet.current_routes(lab.c.plan.underlay.netns)
    assert lab.lb_ip("local-lb") in lbnet.current_routes(lab.c.plan.underlay.netns)
    kind, _ = lab.fails("external/client1", ip, 80, timeout=1.0)
    assert kind is not None
