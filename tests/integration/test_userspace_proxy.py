"""Userspace mode with real packets: a node namespace running the proxier (its rules installed
with one iptables-restore) and a pods namespace with the backends and the client, joined by a
veth. Client -> Service IP -> PREROUTING REDIRECT -> proxier -> backend, and back."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import pytest

from testbed import netlink, netns
from testbed.proxy.model import EndpointInfo, ServicePortName, service_port_map
from testbed.proxy.userspace import UserspaceProxier, rules

pytestmark = pytest.mark.root

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

NODE_IP, POD_IP = "10.250.0.1", "10.250.0.2"
SERVICE_NET = "172.30.0.0"
EXTERNAL_NET, EXTERNAL_IP, LB_IP = "192.168.99.0", "192.168.99.11", "1.2.3.4"


def _node_side() -> None:
    b = netlink.Batch()
    b.link_set("node: lo up", index=1, up=True)
    b.apply()


def _pods_side(node_fd: int) -> None:
    b = netlink.Batch()
    b.link_set("pods: lo up", index=1, up=True)
    b.veth_add("pods: eth0 <-> node eth0", name="eth0", index=2, mtu=1500, mac=None,
               peer_name="eth0", peer_netns_fd=node_fd, peer_index=2, up=True)
    b.addr_add(f"pods: {POD_IP}/24", index=2, address=POD_IP, prefixlen=24)
    for dst in (f"{SERVICE_NET}/16", f"{EXTERNAL_NET}/24", f"{LB_IP}/32"):
        b.route_add(f"pods: {dst} via the node", dst=dst, oif=2, gateway=NODE_IP)
    b.apply()


def _finish_node() -> None:
    b = netlink.Batch()
    b.addr_add(f"node: {NODE_IP}/24", index=2, address=NODE_IP, prefixlen=24)
    b.link_set("node: eth0 up", index=2, up=True)
    b.apply()
    # the node's own connections to a Service need a route before nat OUTPUT can DNAT them
    b = netlink.Batch()
    b.route_add("node: service network", dst=f"{SERVICE_NET}/16", oif=2)
    b.apply()


class Backend:
    """A TCP server in the pods namespace: greets with ``name peer-ip``, then echoes lines."""

    def __init__(self, ns: str, name: str, port: int):
        self.name = name
        self.sock = netns.run_in(ns, self._listen, port)
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((POD_IP, port))
        s.listen(64)
        return s

    def _serve(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn, addr), daemon=True).start()

    def _echo(self, conn: socket.socket, addr) -> None:
        with conn:
            conn.sendall(f"{self.name} {addr[0]}\n".encode())
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


class UdpBackend:
    def __init__(self, ns: str, name: str, port: int):
        self.name = name
        self.sock = netns.run_in(ns, self._bind, port)
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _bind(port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((POD_IP, port))
        return s

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            self.sock.sendto(f"{self.name} {addr[0]}:{addr[1]} {data.decode()}".encode(), addr)

    def close(self) -> None:
        self.sock.close()


class NodeLoop:
    """The proxy process's one event loop, on a thread inside the node namespace."""

    def __init__(self, ns: str):
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ns,), daemon=True)
        self.thread.start()
        self._started.wait()

    def _run(self, ns: str) -> None:
        netns.enter(ns)
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        netns.enter_root()

    def call(self, fn, *args):
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def await_(self, coro_fn, *args):
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _svc(name, cluster_ip, ports, **spec):
    body = {"clusterIP": cluster_ip, "ports": ports}
    body.update(spec)
    return service_port_map({"metadata": {"namespace": "ns", "name": name}, "spec": body})


def _eps(*ports):
    return tuple(EndpointInfo(POD_IP, p) for p in ports)


RR = ServicePortName("ns", "rr", "http", "TCP")
STICKY = ServicePortName("ns", "sticky", "http", "TCP")
LB = ServicePortName("ns", "lb", "http", "TCP")
DNS = ServicePortName("ns", "dns", "dns", "UDP")
SERVICES = {
    **_svc("rr", "172.30.0.41", [{"name": "http", "port": 80, "nodePort": 30080}],
           type="NodePort", externalIPs=[EXTERNAL_IP]),
    **_svc("sticky", "172.30.0.42", [{"name": "http", "port": 80}], sessionAffinity="ClientIP",
           sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
    **_svc("dns", "172.30.0.10", [{"name": "dns", "port": 53, "protocol": "UDP"}]),
}
LB_SERVICE = service_port_map({
    "metadata": {"namespace": "ns", "name": "lb"},
    "spec": {"type": "LoadBalancer", "clusterIP": "172.30.0.43",
             "ports": [{"name": "http", "port": 8000, "nodePort": 30081}]},
    "status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}})
REFUSED_PORT = 8089          # nothing listens there: the dialer must move on


@pytest.fixture
def lab():
    base = f"tb.usp{os.getpid() % 100000}"
    node, pods = f"{base}.node", f"{base}.pods"
    created, servers = [], []
    node_loop = proxier = None
    try:
        with netns.Runner(1) as r:
            created.append(node)
            r.run_new(node, _node_side)
            fd = netns.open_fd(node)
            try:
                created.append(pods)
                r.run_new(pods, _pods_side, fd)
            finally:
                os.close(fd)
            r.run_in(node, _finish_node)
        servers += [Backend(pods, "a", 8081), Backend(pods, "b", 8082),
                    UdpBackend(pods, "u1", 5353), UdpBackend(pods, "u2", 5354)]
        node_loop = NodeLoop(node)
        proxier = node_loop.call(UserspaceProxier, NODE_IP)
        yield node, pods, node_loop, proxier
    finally:
        if proxier is not None:
            node_loop.await_(proxier.close)
        if node_loop is not None:
            node_loop.stop()
        for s in servers:
            s.close()
        for name in created:
            netns.delete(name)
        assert not netns.list_names(base + ".")


def _connect(pods: str, ip: str, port: int) -> tuple[socket.socket, str]:
    """A connection from the pods namespace; the backend's greeting line."""
    def go():
        s = socket.create_connection((ip, port), timeout=5)
        f = s.makefile("rb")
        line = f.readline().decode().strip()
        f.close()
        return s, line
    return netns.run_in(pods, go)


def _greeting(pods, ip, port=80) -> str:
    s, line = _connect(pods, ip, port)
    s.close()
    return line


def _echo(s: socket.socket, text: str) -> str:
    s.sendall(text.encode())
    return s.recv(4096).decode()


def test_userspace_proxy_end_to_end(lab):
    node, pods, loop, proxier = lab
    endpoints = {RR: _eps(8081, 8082), STICKY: _eps(8081, 8082), DNS: _eps(5353, 5354)}
    pm = loop.call(proxier.update, SERVICES, endpoints)
    assert set(pm.ports) == {RR, STICKY, DNS} and not pm.notices
    assert len(set(pm.ports.values())) == 3

    # one iptables-restore into the node namespace, then a second sync adds no jump twice
    text = loop.await_(proxier.sync_rules)
    assert "-I PREROUTING" in text and "-m physdev ! --physdev-is-in" in text
    assert "-I PREROUTING" not in loop.await_(proxier.sync_rules)
    saved = netns.run_in(node, rules.save)
    assert saved.rules["nat"].count(rules.JUMPS[0].saved_form()) == 1
    portal = [r for r in saved.rules["nat"]
              if r.startswith("-A KUBE-PORTALS-CONTAINER") and "172.30.0.41" in r]
    assert portal and portal[0].endswith(f"--to-ports {pm.ports[RR]}")

    # ClusterIP through REDIRECT, round robin, the backend sees the node's address
    got = [_greeting(pods, "172.30.0.41") for _ in range(4)]
    assert sorted(got) == ["a 10.250.0.1", "a 10.250.0.1", "b 10.250.0.1", "b 10.250.0.1"]
    assert got[0] != got[1] and got[0] == got[2]
    # NodePort, from the other namespace to the node's address
    assert sorted(_greeting(pods, NODE_IP, 30080) for _ in range(2)) == \
        ["a 10.250.0.1", "b 10.250.0.1"]

    # ClientIP affinity: every connection of this client reaches one backend
    assert len({_greeting(pods, "172.30.0.42") for _ in range(5)}) == 1

    # a refused endpoint is skipped: every connection still lands on the live one
    loop.call(proxier.update, SERVICES, {**endpoints, RR: _eps(8081, REFUSED_PORT)})
    assert {_greeting(pods, "172.30.0.41") for _ in range(4)} == {"a 10.250.0.1"}

    # UDP: replies come back from the Service address, one session per client socket
    def udp_exchange():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.connect(("172.30.0.10", 53))      # accepts only replies from the Service address
        try:
            out = []
            for msg in ("q1", "q2"):
                s.send(msg.encode())
                out.append(s.recv(4096).decode())
            return out
        finally:
            s.close()
    r1, r2 = netns.run_in(pods, udp_exchange)
    assert r1.endswith(" q1") and r2.endswith(" q2")
    assert r1.split()[:2] == r2.split()[:2]            # same backend, same proxy socket
    assert r1.split()[1].startswith(NODE_IP + ":")
    other = netns.run_in(pods, udp_exchange)[0]
    assert other.split()[0] != r1.split()[0]           # next client session: next endpoint


def test_external_ip_load_balancer_ip_and_the_nodes_own_traffic(lab):
    node, pods, loop, proxier = lab
    loop.call(proxier.update, {**SERVICES, **LB_SERVICE}, {RR: _eps(8081), LB: _eps(8082)})
    loop.await_(proxier.sync_rules)
    assert _greeting(pods, EXTERNAL_IP) == "a 10.250.0.1"       # physdev rule (not bridged)
    assert _greeting(pods, LB_IP, 8000) == "b 10.250.0.1"
    assert _greeting(pods, NODE_IP, 30081) == "b 10.250.0.1"
    # from the node itself: nat OUTPUT DNATs to node address:proxy port
    assert _greeting(node, "172.30.0.41") == "a 10.250.0.1"
    assert _greeting(node, "172.30.0.43", 8000) == "b 10.250.0.1"
    assert _greeting(node, NODE_IP, 30080) == "a 10.250.0.1"


def test_restarted_proxier_takes_over_the_rules(lab):
    """A new proxier (a restarted proxy process) gets new ports; its first sync replaces the
    old chains' rules wholesale and adds no second set of jumps."""
    node, pods, loop, proxier = lab
    old = loop.call(proxier.update, SERVICES, {RR: _eps(8081)})
    loop.await_(proxier.sync_rules)
    loop.await_(proxier.close)
    fresh = loop.call(UserspaceProxier, NODE_IP)
    try:
        new = loop.call(fresh.update, SERVICES, {RR: _eps(8082)})
        text = loop.await_(fresh.sync_rules)
        assert "-I " not in text and new.ports[RR] != old.ports[RR]
        saved = netns.run_in(node, rules.save)
        assert not any(f"--to-ports {old.ports[RR]}" in r for r in saved.rules["nat"])
        assert all(saved.rules[j.table].count(j.saved_form()) == 1 for j in rules.JUMPS)
        assert _greeting(pods, "172.30.0.41") == "b 10.250.0.1"
    finally:
        loop.await_(fresh.close)


def test_endpoint_removal_mid_traffic(lab):
    node, pods, loop, proxier = lab
    loop.call(proxier.update, SERVICES, {RR: _eps(8081, 8082)})
    loop.await_(proxier.sync_rules)
    conn, first = _connect(pods, "172.30.0.41", 80)
    try:
        name = first.split()[0]
        assert _echo(conn, "before\n") == "before\n"
        keep = 8082 if name == "a" else 8081
        loop.call(proxier.update, SERVICES, {RR: _eps(keep)})
        # the established connection carries on through the proxy ...
        assert _echo(conn, "after\n") == "after\n"
        # ... new ones all go to the remaining endpoint
        assert {_greeting(pods, "172.30.0.41").split()[0] for _ in range(3)} == \
            {"b" if name == "a" else "a"}
        assert _echo(conn, "still\n") == "still\n"
        # half-close: our EOF reaches the backend, which closes; we read its EOF
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(10) == b""
    finally:
        conn.close()


def test_removed_service_stops_listening_and_rules_go(lab):
    node, pods, loop, proxier = lab
    pm = loop.call(proxier.update, SERVICES, {RR: _eps(8081)})
    loop.await_(proxier.sync_rules)
    pm2 = loop.call(proxier.update, {k: v for k, v in SERVICES.items() if k != RR}, {})
    assert RR not in pm2.ports and pm2.ports[DNS] == pm.ports[DNS]
    text = loop.await_(proxier.sync_rules)
    assert "ns/rr:http" not in text
    saved = netns.run_in(node, rules.save)
    assert not any("ns/rr:http" in r for t in saved.rules.values() for r in t)
    # the listener is gone with the service
    with pytest.raises(ConnectionRefusedError):
        _greeting(pods, NODE_IP, pm.ports[RR])
    # cleanup leaves no userspace chain or jump behind
    netns.run_in(node, lambda: rules.restore(rules.cleanup_text(rules.save())))
    after = netns.run_in(node, rules.save)
    assert not any(after.has_chain(t, c) for t, cs in (("nat", rules.NAT_CHAINS),
                                                       ("filter", rules.FILTER_CHAINS))
                   for c in cs)


def test_service_without_endpoints_accepts_then_closes(lab):
    """As upstream's userspace proxy: the client's connection is accepted, then closed when no
    endpoint can be dialled (the kernel modes REJECT instead)."""
    node, pods, loop, proxier = lab
    loop.call(proxier.update, SERVICES, {})
    loop.await_(proxier.sync_rules)

    def go():
        with socket.create_connection(("172.30.0.41", 80), timeout=5) as s:
            return s.recv(10)
    assert netns.run_in(pods, go) == b""


def test_taken_node_port_is_reported_and_gets_no_rules(lab):
    node, pods, loop, proxier = lab

    def squat():
        s = socket.socket()
        s.bind(("0.0.0.0", 30080))
        s.listen(1)
        return s
    squatter = netns.run_in(node, squat)
    try:
        pm = loop.call(proxier.update, SERVICES, {RR: _eps(8081)})
        [n] = pm.notices
        assert n.field == "spec.ports.nodePort" and "30080/TCP" in n.message
        text = loop.call(proxier.rules_text)
        assert "--dport 30080" not in text and "-d 172.30.0.41/32" in text
    finally:
        squatter.close()
    # freed: the next update claims it and its rules come back
    pm = loop.call(proxier.update, SERVICES, {RR: _eps(8081)})
    assert not pm.notices and "--dport 30080" in loop.call(proxier.rules_text)


@pytest.mark.parametrize("case", sorted(GOLDEN.glob("userspace-*.expected.txt")),
                         ids=lambda p: p.name.removesuffix(".expected.txt"))
def test_golden_restores_and_reads_back(case):
    """Every golden restores into a fresh namespace and the kernel holds each rule, in order,
    with the same matches and target (iptables-nft prints ``-p`` first and quotes comments,
    so the words of each rule are compared, not their order)."""
    text = case.read_text()
    jumps = ""
    if "-I PREROUTING" not in text:      # a later-sync case: the jumps exist already
        jumps = "".join(f"*{t}\n" + "".join(j.restore_line() + "\n" for j in rules.JUMPS
                                            if j.table == t) + "COMMIT\n"
                        for t in ("filter", "nat"))

    def install():
        rules.restore(text)
        rules.restore(jumps)
        return rules.save()
    name = f"tb.usg{os.getpid() % 100000}.node"
    with netns.Runner(1) as r:
        try:
            saved = r.run_new(name, install)
        finally:
            netns.delete(name)
    ours = rules.NAT_CHAINS + rules.FILTER_CHAINS
    want = [ln for ln in case.read_text().splitlines()
            if ln.startswith("-A ") and ln.split()[1] in ours]
    got = [ln for t in ("filter", "nat") for ln in saved.rules[t] if ln.split()[1] in ours]
    def by_chain(lines):
        out = {}
        for ln in lines:
            out.setdefault(ln.split()[1], []).append(sorted(ln.replace('"', "").split()))
        return out
    assert by_chain(got) == by_chain(want)
    assert all(saved.rules[j.table].count(j.saved_form()) == 1 for j in rules.JUMPS)
