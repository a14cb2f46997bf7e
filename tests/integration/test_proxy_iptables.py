"""kube-proxy (iptables mode) end to end: a 2-node cluster, an API server, one proxy process
per node started inside its node's netns, and traffic proving each behaviour.

Rules are waited for through each proxy's metrics file (``applied_resource_versions`` reaching
the resourceVersion of the write, and a successful last sync), never with fixed sleeps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from testbed import netns, scenario
from testbed.apiserver import MemoryStore
from testbed.apiserver.server import serve
from testbed.cluster import Cluster
from testbed.k8s.admission import Admission, AdmissionConfig
from testbed.proxy.apply import TRIGGER_ANNOTATION
from testbed.proxy.healthcheck import probe

pytestmark = [pytest.mark.root, pytest.mark.slow]

CLUSTER = "kptestproxy"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POD_CIDR = "10.244.0.0/16"
TCP_PORT, UDP_PORT = 8080, 5353
PODS = {"a1": "node1", "c1": "node1", "a2": "node2", "c2": "node2"}


# ----------------------------------------------------------------------------- helpers

def wait_for(cond, timeout: float = 15.0, what: str = "condition", step: float = 0.02):
    """Poll ``cond`` with short waits until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    ev = threading.Event()
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        ev.wait(step)


def _serve_tcp(sock: socket.socket, name: bytes) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            with contextlib.suppress(OSError):
                conn.sendall(name)


def _serve_udp(sock: socket.socket, name: bytes) -> None:
    while True:
        try:
            _, addr = sock.recvfrom(2048)
            if addr is None:     # shut down
                return
            sock.sendto(name, addr)
        except OSError:
            return


class Lab:
    def __init__(self, cluster: Cluster, store: MemoryStore, sock_path: str, tmp: str):
        self.c, self.store, self.sock_path, self.tmp = cluster, store, sock_path, tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, str] = {}
        self.listeners: list[socket.socket] = []

    # -- objects
    def node(self, name):
        return self.c.plan.node(name)

    def pod(self, name):
        return self.c.pod(name)

    def service(self, name, ports, **spec):
        obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
               "spec": {"type": "ClusterIP", "ports": ports, **spec}}
        return self.store.create(obj)

    def slice(self, service, pods, ports, name=None):
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": name or f"{service}-abc12", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": service},
                            "annotations": {TRIGGER_ANNOTATION: now}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": [self.pod(p).ip], "nodeName": self.pod(p).node,
                              "conditions": {"ready": True, "serving": True, "terminating": False}}
                             for p in pods],
               "ports": ports}
        try:
            live = self.store.get("EndpointSlice", "default", obj["metadata"]["name"])
        except Exception:  # noqa: BLE001 - NotFound
            return self.store.create(obj)
        obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        return self.store.update(obj)

    # -- proxies
    def metrics_path(self, node):
        return os.path.join(self.tmp, f"proxy-{node}.json")

    def metrics(self, node):
        try:
            with open(self.metrics_path(node)) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def start_proxy(self, node):
        n = self.node(node)
        log_path = os.path.join(self.tmp, f"proxy-{node}.log")
        log = open(log_path, "a")
        argv = [sys.executable, "-m", "testbed.proxy", "--cluster", CLUSTER, "--node", node,
                "--api", self.sock_path, "--mode", "iptables", "--node-ip", n.ip,
                "--cluster-cidr", POD_CIDR, "--metrics-file", self.metrics_path(node),
                "--min-sync-period", "0.1", "--sync-period", "5"]
        # a forked child inherits the calling thread's netns: fork from a thread inside the node's
        p = netns.run_in(n.netns, subprocess.Popen, argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[node], self.logs[node] = p, log_path
        return p

    def stop_proxy(self, node, timeout=10.0):
        p = self.procs.pop(node, None)
        if p is None or p.poll() is not None:
            return None if p is None else p.returncode
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise

    def log_text(self, node):
        with open(self.logs[node]) as f:
            return f.read()

    def wait_programmed(self, obj, nodes=("node1", "node2"), timeout=15.0):
        """Wait until every node's proxy applied ``obj``'s resourceVersion in a successful sync."""
        kind, rv = obj["kind"], int(obj["metadata"]["resourceVersion"])

        def done():
            for node in nodes:
                p = self.procs.get(node)
                if p is not None and p.poll() is not None:
                    raise AssertionError(f"proxy on {node} exited {p.returncode}:\n{self.log_text(node)}")
                m = self.metrics(node)
                if not m or m.get("pid") != p.pid or int(m["applied_resource_versions"].get(kind, 0)) < rv \
                        or not (m.get("last_sync") or {}).get("ok"):
                    return False
            return True
        wait_for(done, timeout, f"{kind} rv {rv} programmed on {', '.join(nodes)}")

    # -- traffic
    def tcp(self, src, ip, port, timeout=2.0) -> str:
        s = self.c.run_in(src, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        with s:
            s.settimeout(timeout)
            s.connect((ip, port))
            return s.recv(64).decode()

    def udp_socket(self, src):
        s = self.c.run_in(src, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        return s

    def nat_save(self, node) -> str:
        return self.c.exec(f"node/{node}", ["iptables-save", "-t", "nat"], check=True).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": CLUSTER},
           "spec": {"nodes": 2, "externals": 1},
           "manifests": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p},
                          "spec": {"nodeName": n, "containers": [{"name": "c", "image": "echo"}]}}
                         for p, n in PODS.items()]}
    tmp = str(tmp_path_factory.mktemp("kp"))
    # topology only (static pod namespaces): this test is the control plane and starts the proxies
    c = Cluster.up(scenario.parse(doc), name=CLUSTER, control_plane=False)
    server = None
    lab = None
    try:
        store = MemoryStore(admission=Admission(AdmissionConfig(service_network="10.96.0.0/12",
                                                                pod_network=POD_CIDR)))
        sock_path = os.path.join(tmp, "api.sock")
        server = serve(store, sock_path)
        lab = Lab(c, store, sock_path, tmp)
        for pod in ("a1", "a2"):
            ip = c.pod(pod).ip
            t = c.run_in(f"pod/{pod}", socket.socket, socket.AF_INET, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind((ip, TCP_PORT))
            t.listen(64)
            u = c.run_in(f"pod/{pod}", socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((ip, UDP_PORT))
            lab.listeners += [t, u]
            threading.Thread(target=_serve_tcp, args=(t, pod.encode()), daemon=True).start()
            threading.Thread(target=_serve_udp, args=(u, pod.encode()), daemon=True).start()

        http = [{"name": "http", "port": 80, "targetPort": TCP_PORT, "protocol": "TCP"}]
        http_ep = [{"name": "http", "port": TCP_PORT, "protocol": "TCP"}]
        lab.svc = {
            "web": lab.service("web", http),
            "web-np": lab.service("web-np", http, type="NodePort"),
            "empty": lab.service("empty", http),
            "dns": lab.service("dns", [{"name": "dns", "port": 53, "targetPort": UDP_PORT, "protocol": "UDP"}]),
            "lb-local": lab.service("lb-local", http, type="LoadBalancer", externalTrafficPolicy="Local"),
            "hair": lab.service("hair", http),
        }
        lab.http_ep = http_ep
        lab.slice("web", ["a1", "a2"], http_ep)
        lab.slice("web-np", ["a1", "a2"], http_ep)
        lab.slice("dns", ["a1"], [{"name": "dns", "port": UDP_PORT, "protocol": "UDP"}])
        lab.slice("lb-local", ["a1"], http_ep)
        last = lab.slice("hair", ["a1"], http_ep)
        for node in ("node1", "node2"):
            lab.start_proxy(node)
        lab.wait_programmed(last)
        yield lab
    finally:
        try:
            if lab is not None:
                for node in list(lab.procs):
                    with contextlib.suppress(Exception):
                        lab.stop_proxy(node)
                for s in lab.listeners:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
            if server is not None:
                server.close()
        finally:
            c.down()


def cip(lab, name):
    return lab.svc[name]["spec"]["clusterIP"]


# ----------------------------------------------------------------------------- tests

def test_first_sync_is_full_and_jump_rules_installed(lab):
    for node in ("node1", "node2"):
        m = lab.metrics(node)
        assert m["full_syncs_total"] >= 1 and m["sync_failures_total"] == 0
        nat = lab.nat_save(node)
        assert nat.count("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES") == 1
        assert ":KUBE-PROXY-CANARY" in nat
    # the sysctls upstream sets, in the node netns
    def read():
        return (netns.read_sysctl("net.ipv4.conf.all.route_localnet"),
                netns.read_sysctl("net.netfilter.nf_conntrack_tcp_timeout_established"),
                netns.read_sysctl("net.netfilter.nf_conntrack_tcp_timeout_close_wait"))
    assert lab.c.run_in("node/node1", read) == ("1", "86400", "3600")


def test_clusterip_from_other_node_spreads_over_endpoints(lab):
    seen = [lab.tcp("pod/c2", cip(lab, "web"), 80) for _ in range(40)]
    assert set(seen) == {"a1", "a2"}


def test_nodeport_from_external_client(lab):
    np = lab.svc["web-np"]["spec"]["ports"][0]["nodePort"]
    for node in ("node1", "node2"):
        seen = {lab.tcp("external/client", lab.node(node).ip, np) for _ in range(20)}
        assert seen == {"a1", "a2"}, (node, seen)


def test_no_endpoints_is_rejected_at_once(lab):
    t = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        lab.tcp("pod/c1", cip(lab, "empty"), 80, timeout=5)
    assert time.monotonic() - t < 1.0


def test_endpoint_removed_converges(lab):
    obj = lab.slice("web", ["a2"], lab.http_ep)
    lab.wait_programmed(obj)
    assert {lab.tcp(src, cip(lab, "web"), 80) for src in ("pod/c1", "pod/c2") for _ in range(10)} == {"a2"}
    obj = lab.slice("web", ["a1", "a2"], lab.http_ep)
    lab.wait_programmed(obj)
    assert {lab.tcp("pod/c2", cip(lab, "web"), 80) for _ in range(40)} == {"a1", "a2"}


def test_udp_backend_replaced_same_client_socket(lab):
    s = lab.udp_socket("pod/c2")
    target = (cip(lab, "dns"), 53)

    def ask():
        for _ in range(5):
            s.sendto(b"q", target)
            try:
                return s.recv(64).decode()
            except socket.timeout:
                continue
        raise AssertionError("no UDP answer")
    try:
        assert ask() == "a1"
        assert ask() == "a1"
        before = lab.metrics("node2")["conntrack_entries_deleted_total"]
        # a1 keeps running: without the conntrack cleanup the flow would stay on a1 forever
        obj = lab.slice("dns", ["a2"], [{"name": "dns", "port": UDP_PORT, "protocol": "UDP"}])
        lab.wait_programmed(obj)
        assert ask() == "a2"
        assert lab.metrics("node2")["conntrack_entries_deleted_total"] > before
    finally:
        s.close()


def test_health_check_node_port_local(lab):
    svc = lab.store.get("Service", "default", "lb-local")
    hc = svc["spec"]["healthCheckNodePort"]
    assert hc
    status, headers, body = lab.c.run_in("external/client", probe, lab.node("node1").ip, hc)
    assert status == 200
    assert body == {"service": {"namespace": "default", "name": "lb-local"}, "localEndpoints": 1,
                    "serviceProxyHealthy": True}
    assert headers["x-load-balancing-endpoint-weight"] == "1"
    status, headers, body = lab.c.run_in("external/client", probe, lab.node("node2").ip, hc)
    assert status == 503 and body["localEndpoints"] == 0
    assert headers["x-load-balancing-endpoint-weight"] == "0"


def test_hairpin_pod_reaches_itself_via_cluster_ip(lab):
    assert {lab.tcp("pod/a1", cip(lab, "hair"), 80) for _ in range(5)} == {"a1"}


def test_events_for_full_syncs_only(lab):
    events, _ = lab.store.list("Event")
    mine = [e for e in events if e["source"]["component"] == "kube-proxy"]
    assert {e["source"]["host"] for e in mine} == {"node1", "node2"}
    assert {e["reason"] for e in mine} == {"Synced"}
    per_node = {n: sum(1 for e in mine if e["source"]["host"] == n) for n in ("node1", "node2")}
    for node, n in per_node.items():
        assert n == lab.metrics(node)["full_syncs_total"]


def test_burst_of_changes_is_coalesced(lab):
    before = {n: lab.metrics(n)["syncs_total"] for n in ("node1", "node2")}
    t = time.monotonic()
    last = None
    for i in range(30):
        last = lab.service(f"burst-{i}", [{"name": "http", "port": 80, "targetPort": TCP_PORT}])
    lab.wait_programmed(last)
    elapsed = time.monotonic() - t
    for n in ("node1", "node2"):
        m = lab.metrics(n)
        syncs = m["syncs_total"] - before[n]
        print(f"{n}: 30 services in {elapsed:.3f}s -> {syncs} syncs; sync p50 "
              f"{m['sync_duration_seconds']['p50']}s max {m['sync_duration_seconds']['max']}s; "
              f"full p50 {m['full_sync_duration_seconds']['p50']}s, partial p50 "
              f"{m['partial_sync_duration_seconds']['p50']}s; programming latency "
              f"last {m['network_programming_latency_seconds']['last']}s "
              f"p50 {m['network_programming_latency_seconds']['p50']}s")
        assert 1 <= syncs < 30
    # a Service that existed during the burst is programmed and reachable
    assert lab.tcp("pod/c1", cip(lab, "web"), 80) in ("a1", "a2")


def test_restart_takes_over_without_flushing(lab):
    hair = cip(lab, "hair")
    assert lab.stop_proxy("node1") == 0
    # the stopped proxy left its rules: node1 keeps forwarding
    assert "KUBE-SVC-" in lab.nat_save("node1")
    assert lab.tcp("pod/c1", cip(lab, "web"), 80) in ("a1", "a2")
    # delete a service while node1's proxy is down: its chains are now stale on node1
    lab.store.delete("Service", "default", "hair")
    lab.store.delete("EndpointSlice", "default", "hair-abc12")
    assert f"-d {hair}/32" in lab.nat_save("node1")
    p = lab.start_proxy("node1")
    marker = lab.store.create({"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": "after-restart", "namespace": "default"},
                               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": TCP_PORT}]}})
    lab.wait_programmed(marker)
    m = lab.metrics("node1")
    assert m["pid"] == p.pid and m["full_syncs_total"] >= 1 and m["sync_failures_total"] == 0
    nat = lab.nat_save("node1")
    assert f"-d {hair}/32" not in nat
    assert nat.count("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES") == 1
    assert {lab.tcp("pod/c1", cip(lab, "web"), 80) for _ in range(20)} == {"a1", "a2"}
