"""kube-proxy IPVS mode end to end: a full 2-node cluster (control plane, kubelet, the pods'
workload, one ``--mode ipvs`` proxy per node) and traffic proving each behaviour.

Needs a kernel with ip_vs and dummy interfaces: ``scripts/test`` runs these natively where the
kernel has them and through ``scripts/kernel-lane -m ipvs`` (a VM) where it does not.
Programming is waited for through each proxy's metrics file, never with fixed sleeps.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from testbed import netns, scenario, state
from testbed.cluster import Cluster
from testbed.proxy.ipvs import kernel as K

from .netutil import uniq

from testbed.proxy.ipvs.preflight import ipvs_problem

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROBLEM = ipvs_problem()
# Skipped natively only where the kernel cannot run them AND the kernel lane can (scripts/test
# then runs them there: `scripts/kernel-lane -m ipvs`); anywhere else they run, and fail loudly.
_LANE = os.access(os.path.join(REPO, "scripts", "kernel-lane"), os.X_OK)

pytestmark = [pytest.mark.root, pytest.mark.ipvs, pytest.mark.slow,
              pytest.mark.skipif(_PROBLEM is not None and _LANE,
                                 reason=f"{_PROBLEM} (scripts/test runs them through scripts/kernel-lane -m ipvs)")]

CLUSTER = uniq("ipvs7")
PORT = 8080


def wait_for(cond, timeout: float = 60.0, what: str = "condition", step: float = 0.05):
    deadline = time.monotonic() + timeout
    ev = threading.Event()
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        ev.wait(step)


def pod(name, node, **labels):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"pod": name, **labels}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "testbed/echo"}]}}


def service(name, selector, port=80, proto="TCP", **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": selector, "ports": [{"name": "p", "port": port, "targetPort": PORT,
                                                      "protocol": proto}], **spec}}


SERVICES = [
    service("web", {"app": "web"}),
    service("web-np", {"app": "web"}, type="NodePort"),
    service("web-local", {"pod": "web-1"}, type="NodePort", externalTrafficPolicy="Local"),
    service("sticky", {"app": "web"}, sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}),
    service("empty", {"app": "nothing"}),
    service("hair", {"pod": "web-1"}),
    service("dns", {"pod": "web-1"}, port=53, proto="UDP"),
]


class Lab:
    def __init__(self, c: Cluster):
        self.c = c

    def api(self):
        return self.c.api()

    def get(self, name):
        with self.api() as api:
            return api.get("Service", "default", name)

    def cip(self, name):
        return self.get(name)["spec"]["clusterIP"]

    def node_port(self, name):
        return self.get(name)["spec"]["ports"][0]["nodePort"]

    def node_ip(self, node):
        return self.c.plan.node(node).ip

    def metrics(self, node):
        try:
            with open(os.path.join(state.directory(self.c.name), f"proxy-{node}.json")) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def wait_programmed(self, kind, rv, nodes=("node1", "node2")):
        def done():
            for n in nodes:
                m = self.metrics(n)
                if not m or int(m["applied_resource_versions"].get(kind, 0)) < int(rv) \
                        or not (m.get("last_sync") or {}).get("ok"):
                    return False
            return True
        wait_for(done, 60, f"{kind} rv {rv} programmed")

    def wait_endpoints(self, svc, ips):
        """Wait until the Service's EndpointSlice lists exactly ``ips``, then until both proxies
        applied it."""
        def sl():
            with self.api() as api:
                items, _ = api.list("EndpointSlice", "default", label_selector=f"kubernetes.io/service-name={svc}")
            for it in items:
                got = {a for e in it.get("endpoints") or [] for a in e["addresses"]
                       if (e.get("conditions") or {}).get("ready", True)}
                if got == set(ips):
                    return it
            return None
        obj = wait_for(sl, 60, f"endpoints of {svc} = {ips}")
        self.wait_programmed("EndpointSlice", obj["metadata"]["resourceVersion"])

    # -- traffic
    def http(self, src, ip, port, path="/hostname", timeout=3.0) -> str:
        s = self.c.run_in(src, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        with s:
            s.settimeout(timeout)
            s.connect((ip, port))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1."), head
        return body.decode().strip()


@pytest.fixture(scope="module")
def lab():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": CLUSTER},
           "spec": {"nodes": 2, "externals": 1},
           "manifests": [pod("web-1", "node1", app="web"), pod("web-2", "node2", app="web"),
                         pod("client1", "node1"), pod("client2", "node2"), *SERVICES]}
    c = Cluster.up(scenario.parse(doc), name=CLUSTER, proxy_mode="ipvs", timeout=240)
    lab = Lab(c)
    try:
        lab.ips = {p: c.pod(p).ip for p in ("web-1", "web-2", "client1", "client2")}
        for name, pods in (("web", ["web-1", "web-2"]), ("web-np", ["web-1", "web-2"]),
                           ("web-local", ["web-1"]), ("sticky", ["web-1", "web-2"]), ("hair", ["web-1"]),
                           ("dns", ["web-1"])):
            lab.wait_endpoints(name, [lab.ips[p] for p in pods])
        with lab.api() as api:
            items, _ = api.list("Service")
        lab.wait_programmed("Service", max(int(o["metadata"]["resourceVersion"]) for o in items))
    except BaseException:
        _dump_logs(c.name)
        c.down()
        raise
    try:
        yield lab
    finally:
        if os.environ.get("IPVS_TEST_LOGS"):
            _dump_logs(c.name)
        c.down()


def _dump_logs(cluster):
    """The proxies' and the control plane's logs, for a failed set-up (the lane's VM is gone after)."""
    d = state.directory(cluster)
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if name.endswith(".log"):
            with open(os.path.join(d, name), errors="replace") as f:
                print(f"----- {name} (last 60 lines)\n" + "".join(f.readlines()[-60:]))


def _ipvs_table(netns_name):
    def read():
        k = K.IpvsKernel()
        try:
            svcs = k.list_services()
            return {key: (vs, k.list_dests(key)) for key, vs in svcs.items()}, k.addresses(), \
                socket.if_nametoindex("kube-ipvs0"), k.list_sets()
        finally:
            k.close()
    return netns.run_in(netns_name, read)


def test_kernel_objects_match_upstream_layout(lab):
    table, addrs, dummy, sets = _ipvs_table(lab.c.plan.node("node1").netns)
    web = lab.cip("web")
    vs, dests = table[K.VSKey(web, "TCP", 80)]
    assert (vs.scheduler, vs.flags, vs.timeout) == ("rr", 0, 0)
    assert {(d.address, d.port, d.weight) for d in dests} == {(lab.ips["web-1"], PORT, 1), (lab.ips["web-2"], PORT, 1)}
    sticky, _ = table[K.VSKey(lab.cip("sticky"), "TCP", 80)]
    assert (sticky.flags, sticky.timeout) == (1, 600)           # persistent 600
    np = lab.node_port("web-np")
    assert K.VSKey(lab.node_ip("node1"), "TCP", np) in table      # per node address
    assert web in addrs[dummy] and lab.node_ip("node1") not in addrs[dummy]
    assert f"{web},tcp:80" in sets["KUBE-CLUSTER-IP"]
    assert str(np) in sets["KUBE-NODE-PORT-TCP"]
    assert str(lab.node_port("web-local")) in sets["KUBE-NODE-PORT-LOCAL-TCP"]
    assert f"{lab.ips['web-1']},tcp:{PORT},{lab.ips['web-1']}" in sets["KUBE-LOOP-BACK"]
    assert web in sets["KUBE-IPVS-IPS"]
    # the IPVS sysctls, per node netns
    vals = lab.c.run_in("node/node1", lambda: (netns.read_sysctl("net.ipv4.vs.conntrack"),
                                                netns.read_sysctl("net.ipv4.vs.expire_nodest_conn"),
                                                netns.read_sysctl("net.ipv4.vs.expire_quiescent_template")))
    assert vals == ("1", "1", "1")
    m = lab.metrics("node1")
    assert m["mode"] == "ipvs" and m["sync_failures_total"] == 0 and m["full_syncs_total"] >= 1
    nat = lab.c.exec("node/node1", ["iptables-save", "-t", "nat"]).stdout
    assert "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT" in nat
    assert nat.count('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES') == 1


def test_clusterip_spreads_over_endpoints_from_both_nodes(lab):
    web = lab.cip("web")
    for src in ("pod/client1", "pod/client2"):
        assert {lab.http(src, web, 80) for _ in range(12)} == {"web-1", "web-2"}, src


def test_nodeport_cluster_policy_from_external_client(lab):
    np = lab.node_port("web-np")
    for node in ("node1", "node2"):
        ip = lab.node_ip(node)
        assert {lab.http("external/client", ip, np) for _ in range(12)} == {"web-1", "web-2"}, node
        # eTP Cluster: masqueraded, the pod does not see the external client's address
        ext_ip = lab.c.plan.externals[0].ip
        assert all(not lab.http("external/client", ip, np, "/clientip").startswith(ext_ip + ":") for _ in range(4))


def test_nodeport_local_policy(lab):
    np = lab.node_port("web-local")
    ext_ip = lab.c.plan.externals[0].ip
    # node1 has the local endpoint: served, and the client's address is preserved
    assert lab.http("external/client", lab.node_ip("node1"), np) == "web-1"
    assert lab.http("external/client", lab.node_ip("node1"), np, "/clientip").startswith(ext_ip + ":")
    # node2 has none: upstream IPVS mode falls back to the cluster endpoints (PR #97081) where
    # iptables mode drops; a pod on node2 is served ...
    assert lab.http("pod/client2", lab.node_ip("node2"), np) == "web-1"
    # ... and so is an external client, because flannel's ip-masq rule (FLANNEL-POSTRTG: from
    # outside the pod network to a remote pod subnet) masquerades what kube-proxy did not: the
    # connection works but the client's address is lost (see the README's IPVS section)
    assert lab.http("external/client", lab.node_ip("node2"), np) == "web-1"
    seen = lab.http("external/client", lab.node_ip("node2"), np, "/clientip")
    assert not seen.startswith(ext_ip + ":"), seen


def test_session_affinity_client_ip(lab):
    sticky = lab.cip("sticky")
    for src in ("pod/client1", "pod/client2"):
        assert len({lab.http(src, sticky, 80) for _ in range(10)}) == 1, src


def test_hairpin_pod_reaches_itself_via_cluster_ip(lab):
    hair = lab.cip("hair")
    assert {lab.http("pod/web-1", hair, 80) for _ in range(3)} == {"web-1"}
    # KUBE-LOOP-BACK masquerades: the pod sees the bridge's address, not its own
    seen = lab.http("pod/web-1", hair, 80, "/clientip")
    assert not seen.startswith(lab.ips["web-1"] + ":"), seen


def test_no_endpoints_is_refused_at_once(lab):
    t = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        lab.http("pod/client1", lab.cip("empty"), 80, timeout=5)
    assert time.monotonic() - t < 1.5


def test_udp_backend_replaced_same_client_socket(lab):
    s = lab.c.run_in("pod/client2", socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    target = (lab.cip("dns"), 53)

    def ask():
        for _ in range(5):
            s.sendto(b"hostname", target)
            try:
                return s.recv(64).decode()
            except socket.timeout:
                continue
        raise AssertionError("no UDP answer")
    try:
        assert ask() == "web-1" and ask() == "web-1"
        before = lab.metrics("node2")["conntrack_entries_deleted_total"]
        with lab.api() as api:
            obj = api.get("Service", "default", "dns")
            obj["spec"]["selector"] = {"pod": "web-2"}
            api.update(obj)
        lab.wait_endpoints("dns", [lab.ips["web-2"]])
        # web-1 keeps running: without the cleanup the flow would stay on it
        assert ask() == "web-2"
        # the proxy ran the same UDP cleanup as in iptables mode, but with expire_nodest_conn=1 a
        # kernel >= 5.9 already expired the IPVS connection of the removed real server and its
        # conntrack entry when the destination was deleted: nothing is left for it to delete
        assert lab.metrics("node2")["conntrack_entries_deleted_total"] >= before
        table, *_ = _ipvs_table(lab.c.plan.node("node2").netns)
        _, dests = table[K.VSKey(target[0], "UDP", 53)]
        assert {d.address for d in dests} == {lab.ips["web-2"]}
    finally:
        s.close()


def _keepalive_get(s) -> str:
    """One HTTP/1.1 request on an open connection, which stays open: the body."""
    s.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(v for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                      if k.strip().lower() == b"content-length"))
    while len(body) < length:
        chunk = s.recv(4096)
        assert chunk, "connection closed in the body"
        body += chunk
    return body.decode().strip()


def test_removed_endpoint_drains_at_weight_zero_keeping_its_connection(lab):
    """Upstream's graceful termination: a TCP real server that leaves while a connection uses it
    is set to weight 0, not deleted (which expire_nodest_conn=1 would make drop the connection)."""
    with lab.api() as api:
        api.create(service("drain", {"app": "web"}))
    try:
        lab.wait_endpoints("drain", [lab.ips["web-1"], lab.ips["web-2"]])
        cip = lab.cip("drain")
        s = lab.c.run_in("pod/client1", socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        with s:
            s.settimeout(5.0)
            s.connect((cip, 80))
            first = _keepalive_get(s)
            other = "web-2" if first == "web-1" else "web-1"
            with lab.api() as api:
                obj = api.get("Service", "default", "drain")
                obj["spec"]["selector"] = {"pod": other}
                api.update(obj)
            lab.wait_endpoints("drain", [lab.ips[other]])
            table, *_ = _ipvs_table(lab.c.plan.node("node1").netns)
            _, dests = table[K.VSKey(cip, "TCP", 80)]
            assert {(d.address, d.weight) for d in dests} == {(lab.ips[first], 0), (lab.ips[other], 1)}
            assert lab.metrics("node1")["ipvs"]["draining_real_servers"] >= 1
            # the established connection still reaches the endpoint that left, new ones do not
            assert _keepalive_get(s) == first
            assert {lab.http("pod/client1", cip, 80) for _ in range(4)} == {other}
    finally:
        with lab.api() as api:
            api.delete("Service", "default", "drain")


def test_service_deleted_is_removed_from_kernel(lab):
    with lab.api() as api:
        api.create(service("gone", {"app": "web"}))
    lab.wait_endpoints("gone", [lab.ips["web-1"], lab.ips["web-2"]])
    gone = lab.cip("gone")
    assert lab.http("pod/client1", gone, 80) in ("web-1", "web-2")
    with lab.api() as api:
        api.delete("Service", "default", "gone")
        # the deletion's resourceVersion: a marker Service created right after it
        marker = api.create(service("marker", {"app": "nothing"}))
    lab.wait_programmed("Service", marker["metadata"]["resourceVersion"])
    table, addrs, dummy, sets = _ipvs_table(lab.c.plan.node("node1").netns)
    assert not any(k.address == gone for k in table)
    assert gone not in addrs.get(dummy, set()) and gone not in sets["KUBE-IPVS-IPS"]
    assert not any(e.startswith(gone + ",") for e in sets["KUBE-CLUSTER-IP"])
    m = lab.metrics("node1")
    assert m["partial_syncs_total"] >= 1 and m["sync_failures_total"] == 0


def test_rules_command_shows_ipvs_table_and_ipsets(lab):
    from testbed.proxy.status import dump_rules

    text = dump_rules(lab.c.name, "node/node1")
    web = lab.cip("web")
    assert f"TCP  {web}:80 rr" in text
    assert f"  -> {lab.ips['web-1']}:{PORT}" in text and "Masq    1" in text
    assert f"TCP  {lab.cip('sticky')}:80 rr persistent 600" in text
    assert "Name: KUBE-CLUSTER-IP" in text and f"{web},tcp:80" in text
