"""kube-proxy in userspace mode through a real cluster: ``proxyMode: userspace``, the daemon's
supervised proxies, Services and Pods through the API, traffic from pods and external clients.

What sets this mode apart is asserted as such: the backend sees a node address as the source
(the proxy dials from the node), an established connection outlives its endpoint's removal
(the proxy only picks endpoints for new connections), a restarted proxy re-opens its listeners
on new ports and rewrites the rules to them, and what upstream's userspace proxier never
supported is reported as an Event on the Service. Waits are on watches and on the proxies'
metrics files, never sleeps.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket

import pytest

from testbed import lbnet, netns
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.proxy import status as proxy_status
from testbed.proxy.userspace.syncer import NOTICE_REASON
from testbed.scenario import parse

from .netutil import uniq
from .test_kube_proxy import P80, Lab, pod, svc, udp_ask

pytestmark = pytest.mark.root

NAME = uniq("usp4proxy")
EIP = "172.20.10.3"
MANIFESTS = [
    pod("web-1", "node1", app="web"), pod("web-2", "node2", app="web"),
    pod("cl-1", "node1", role="client"), pod("cl-2", "node2", role="client"),
    pod("churn-1", "node1", app="churn"), pod("churn-2", "node2", app="churn"),
    svc("web", [P80, {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}], {"app": "web"}),
    svc("web-np", [P80], {"app": "web"}, type="NodePort"),
    svc("web-eip", [{"name": "http", "port": 8081, "targetPort": "http"}], {"app": "web"}, externalIPs=[EIP]),
    svc("web-lb", [P80], {"app": "web"}, type="LoadBalancer"),
    svc("local-lb", [P80], {"app": "web"}, type="LoadBalancer", externalTrafficPolicy="Local"),
    svc("affinity", [P80], {"app": "web"}, sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
    svc("churn", [P80], {"app": "churn"}),
]


@pytest.fixture(scope="module")
def lab():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": NAME},
           "spec": {"nodes": 2, "externals": 2, "proxyMode": "userspace",
                    "proxy": {"minSyncPeriod": "50ms", "syncPeriod": "10s"}},
           "manifests": MANIFESTS}
    c = Cluster.up(parse(doc))
    try:
        lab = Lab(c, "userspace")
        lbs = {"web-lb", "local-lb"}
        svcs = wait_for(lab.api, "Service", lambda ss: ss if lbs <= {s["metadata"]["name"] for s in ss
                                                                      if lbnet.ingress_ips(s)} else None,
                        namespace="default", timeout=10)
        slices = [lab.slice_ready(n, {c.pod(p).ip for p in pods}) for n, pods in
                  (("web", ("web-1", "web-2")), ("churn", ("churn-1", "churn-2")))]
        lab.programmed(*svcs, *slices, nodes=["node1", "node2"])
        yield lab
        lab.api.close()
    finally:
        c.down()


def node_addresses(lab) -> set[str]:
    return {a for n in lab.c.plan.nodes for a in (n.ip, n.cni_ip, n.vtep_ip)}


def keepalive(s: socket.socket, path: str = "/hostname") -> str:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
    while len(body) < n:
        body += s.recv(4096)
    return body.decode()


def test_clusterip_tcp_from_both_nodes_with_the_node_as_source(lab):
    ip = lab.cip("web")
    for src in ("pod/cl-1", "pod/cl-2"):
        assert set(lab.http(src, ip, 80, n=20)) == {"web-1", "web-2"}, src
    sources = {s.rsplit(":", 1)[0] for s in lab.http("pod/cl-1", ip, 80, "/clientip", n=10)}
    assert sources <= node_addresses(lab) and lab.c.pod("cl-1").ip not in sources, sources


def test_clusterip_udp_sessions(lab):
    ip = lab.cip("web")
    s = lab.udp("pod/cl-2")
    try:
        first = udp_ask(s, (ip, 53))
        assert first in ("web-1", "web-2")
        assert udp_ask(s, (ip, 53), b"clientip").rsplit(":", 1)[0] in node_addresses(lab)
    finally:
        s.close()
    peers = set()
    for _ in range(20):     # a fresh client address each time: a new session, round robin
        s = lab.udp("pod/cl-1")
        try:
            peers.add(udp_ask(s, (ip, 53)))
        finally:
            s.close()
    assert peers == {"web-1", "web-2"}


def test_nodeport_on_every_node_from_pods_and_external(lab):
    np = lab.svc("web-np")["spec"]["ports"][0]["nodePort"]
    for node in ("node1", "node2"):
        for src in ("pod/cl-1", "external/client1"):
            assert set(lab.http(src, lab.node_ip(node), np, n=20)) == {"web-1", "web-2"}, (node, src)


def test_external_ips(lab):
    assert set(lab.http("external/client1", EIP, 8081, n=20)) == {"web-1", "web-2"}
    assert set(lab.http("pod/cl-1", EIP, 8081, n=10)) <= {"web-1", "web-2"}


def test_load_balancer_from_external_clients_and_pods(lab):
    ip = lab.lb_ip("web-lb")
    for client in ("external/client1", "external/client2"):
        assert set(lab.http(client, ip, 80, n=20)) == {"web-1", "web-2"}
    assert lab.http("pod/cl-2", ip, 80) in ("web-1", "web-2")


def test_session_affinity_client_ip(lab):
    ip = lab.cip("affinity")
    for src in ("pod/cl-1", "pod/cl-2"):
        assert len(lab.http(src, ip, 80, n=20)) == 1, src


def test_etp_local_is_reported_on_the_service_and_ignored(lab):
    def reported(events):
        mine = [e for e in events if e["reason"] == NOTICE_REASON
                and e["involvedObject"]["name"] == "local-lb"]
        return mine if {e["source"]["host"] for e in mine} == {"node1", "node2"} else None
    mine = wait_for(lab.api, "Event", reported, namespace="default", timeout=10)
    assert all(e["type"] == "Warning" and e["involvedObject"]["kind"] == "Service" for e in mine)
    assert "externalTrafficPolicy" in mine[0]["message"]
    # as upstream's userspace mode: every endpoint, and the client address is not kept
    got = lab.http("external/client1", lab.lb_ip("local-lb"), 80, "/clientip", n=10)
    assert {s.rsplit(":", 1)[0] for s in got} <= node_addresses(lab)


def test_endpoint_removal_mid_traffic(lab):
    ip = lab.cip("churn")

    def connect():
        return socket.create_connection((ip, 80), timeout=3)
    conn = netns.run_in(lab.ns("pod/cl-1"), connect)
    try:
        backend = keepalive(conn)
        stays = "churn-2" if backend == "churn-1" else "churn-1"
        gone = lab.api.get("Pod", "default", backend)
        gone["metadata"]["labels"] = {"app": "retired"}
        lab.api.update(gone)
        lab.programmed(lab.slice_ready("churn", {lab.c.pod(stays).ip}))
        assert keepalive(conn) == backend       # established: runs to its end
        assert keepalive(conn) == backend
    finally:
        conn.close()
    assert set(lab.http("pod/cl-2", ip, 80, n=10)) == {stays}   # new connections: the rest only


def test_rules_and_port_map(lab):
    out = proxy_status.dump_rules(lab.c.name, "node/node1")
    for chain in ("KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST", "KUBE-NODEPORT-CONTAINER",
                  "KUBE-NODEPORT-HOST", "KUBE-NODEPORT-NON-LOCAL"):
        assert f"-A {chain} " in out, chain
    rows = [ln.split() for ln in out.split("Service port -> proxy port", 1)[1].splitlines()[1:] if ln.strip()]
    assert {r[0] for r in rows} >= {"default/web:http", "default/web:dns", "default/web-np:http"}
    assert all(r[3] == "listening" for r in rows), rows
    m = proxy_status.proxy_metrics(lab.c.name, "node1")["node1"]
    assert m["mode"] == "userspace"
    assert {str(k) for k in m["userspace"]["listeners"]} == {r[0] for r in rows}
    assert {int(r[2]) for r in rows} == set(m["userspace"]["listeners"].values())
    assert proxy_status.check_rules(lab.c.name, "node/node1") == []


def test_restart_reopens_listeners_and_takes_the_rules_over(lab):
    before = proxy_status.proxy_metrics(lab.c.name, "node1")["node1"]
    os.kill(before["pid"], signal.SIGKILL)          # the daemon's supervisor starts a new proxy
    ms = proxy_status.wait_metrics(
        lab.c.name, lambda m: m if m["node1"]["pid"] != before["pid"]
        and (m["node1"].get("last_sync") or {}).get("ok") else None, timeout=15,
        what="a new kube-proxy on node1")
    after = ms["node1"]["userspace"]["listeners"]
    assert set(after) == set(before["userspace"]["listeners"])
    out = proxy_status.dump_rules(lab.c.name, "node/node1")
    rows = [ln.split() for ln in out.split("Service port -> proxy port", 1)[1].splitlines()[1:] if ln.strip()]
    assert {r[0]: int(r[2]) for r in rows} == after and all(r[3] == "listening" for r in rows)
    nat = lab.save("node1")
    assert collections.Counter(ln for ln in nat.splitlines() if ln.startswith("-A PREROUTING")
                               and "KUBE-PORTALS-CONTAINER" in ln).most_common(1)[0][1] == 1
    assert set(lab.http("pod/cl-1", lab.cip("web"), 80, n=20)) == {"web-1", "web-2"}
    np = lab.svc("web-np")["spec"]["ports"][0]["nodePort"]
    assert set(lab.http("external/client1", lab.node_ip("node1"), np, n=10)) == {"web-1", "web-2"}
    assert proxy_status.check_rules(lab.c.name, "node/node1") == []


# ----------------------------------------------------------------------------- cleanup

FOREIGN = ("*nat\n:FLANNEL-POSTRTG - [0:0]\n-A POSTROUTING -j FLANNEL-POSTRTG\n"
           "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN\nCOMMIT\n")


def _sync_clean_sync():
    from testbed.proxy import modes
    from testbed.proxy.iptables import apply
    from testbed.proxy.iptables.restore import HostIptables
    from testbed.proxy.loop import ProxyLoop
    from testbed.proxy.syncer import ProxyConfig
    from testbed.proxy.userspace import rules

    def ours(saved):
        chains = {c for t in ("nat", "filter") for c in saved.chains.get(t, {})
                  if c in rules.NAT_CHAINS + rules.FILTER_CHAINS}
        return chains, len(rules.JUMPS) - len(rules.missing_jumps(saved))

    ipt = HostIptables()
    assert ipt.restore(FOREIGN)[0] == 0
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="172.20.0.2", min_sync_period=0)
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "ns", "name": "s"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                    "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30080}]}}
    runs = []
    for _ in range(2):
        loop = ProxyLoop(cfg, modes.get("userspace").make_syncer(cfg))
        loop.state.update_service(svc)
        try:
            assert loop.sync().ok
        finally:
            loop.stop()
        runs.append(ours(apply.parse_save(ipt.save())))
        modes.get("userspace").cleanup()
        after = apply.parse_save(ipt.save())
        runs.append(ours(after))
        runs.append("-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN" in after.rules["nat"])
    return runs


def test_cleanup_removes_the_chains_and_jumps_only():
    name = f"tb.{uniq('uspclean')}.node.n1"
    with netns.Runner() as runner:
        runner.run_new(name, lambda: None)
        try:
            runs = runner.run_in(name, _sync_clean_sync)
        finally:
            netns.delete(name)
    full = ({"KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST", "KUBE-NODEPORT-CONTAINER",
             "KUBE-NODEPORT-HOST", "KUBE-NODEPORT-NON-LOCAL"}, 5)
    assert runs == [full, (set(), 0), True] * 2
