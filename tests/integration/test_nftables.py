"""nftables mode against the real kernel: rendered transactions applied with ``nft -f`` in
throwaway namespaces, and real TCP connections proving where a ClusterIP is DNATed to.

Layout: namespace ``node`` (client, the ``ip kube-proxy`` table) joined by a veth to namespace
``pod``, which holds both endpoint addresses and answers each connection with the local address
it was accepted on (so the client learns which endpoint the DNAT chose).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from pathlib import Path

import pytest

from testbed import netlink, netns
from testbed.proxy.nftables.apply import NftApplier, check
from testbed.proxy.nftables.golden import load, render_steps
from testbed.proxy.nftables.render import NftablesConfig
from testbed.proxy.nftables.sync import NftablesSyncer
from testbed.proxy.tracker import ProxyState
from tests.unit.proxy.conftest import ep, eps, svc

from .netutil import uniq

pytestmark = pytest.mark.root

NODE_IP, EP1, EP2 = "10.250.0.2", "10.250.0.1", "10.250.0.3"
CIP_A, CIP_B, CIP_EMPTY = "172.30.0.10", "172.30.0.11", "172.30.0.12"
PORT, TARGET = 80, 8080
GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _pod_side() -> None:
    b = netlink.Batch()
    b.link_set("pod: lo up", index=1, up=True)
    b.apply()


def _node_side(pod_fd: int) -> None:
    b = netlink.Batch()
    b.link_set("node: lo up", index=1, up=True)
    b.veth_add("node: eth0 <-> pod eth0", name="eth0", index=2, mtu=1500, mac=None,
               peer_name="eth0", peer_netns_fd=pod_fd, peer_index=2, up=True)
    b.addr_add(f"node: {NODE_IP}/24", index=2, address=NODE_IP, prefixlen=24)
    # Service IPs must be routable for the output hook's DNAT to see the packet at all.
    b.route_add("node: default dev eth0", dst="0.0.0.0/0", oif=2)
    b.apply()


def _finish_pod_side() -> None:
    b = netlink.Batch()
    b.addr_add(f"pod: {EP1}/24", index=2, address=EP1, prefixlen=24)
    b.addr_add(f"pod: {EP2}/24", index=2, address=EP2, prefixlen=24)
    b.link_set("pod: eth0 up", index=2, up=True)
    b.apply()


class WhoAmI:
    """TCP server answering every connection with the address:port it was accepted on."""

    def __init__(self, ns: str, port: int):
        self.sock = netns.run_in(ns, self._listen, port)
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        return s

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(("%s:%d" % conn.getsockname()).encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def connect(ns: str, ip: str, port: int = PORT) -> str:
    """Who answered a connection from ``ns`` to ip:port, or the errno name if it failed."""
    def go() -> str:
        try:
            with socket.create_connection((ip, port), timeout=2) as s:
                return s.recv(100).decode()
        except OSError as exc:
            return errno.errorcode.get(exc.errno, "timeout") if exc.errno else "timeout"
    return netns.run_in(ns, go)


@pytest.fixture
def lab():
    base = f"tb.{uniq('nft')}"
    node, pod = f"{base}.node.n1", f"{base}.pod.default.p1"
    created: list[str] = []
    server = None
    try:
        with netns.Runner(1) as r:
            created.append(pod)
            r.run_new(pod, _pod_side)
            fd = netns.open_fd(pod)
            try:
                created.append(node)
                r.run_new(node, _node_side, fd)
            finally:
                os.close(fd)
            r.run_in(pod, _finish_pod_side)
        server = WhoAmI(pod, TARGET)
        yield base, node, pod
    finally:
        if server:
            server.close()
        for name in created:
            netns.delete(name)
        assert not netns.list_names(base + ".")


def _config() -> NftablesConfig:
    return NftablesConfig(node_name="n1", node_ip=NODE_IP, detect_local_mode="ClusterCIDR",
                          detect_local_value="10.0.0.0/8", nodeport_addresses=(f"{NODE_IP}/32",),
                          node_addresses=(NODE_IP,), service_cidrs=("172.30.0.0/16",))


def _services():
    ports = (("http", PORT, "TCP", 0),)
    return [svc("a", cip=CIP_A, ports=ports), svc("b", cip=CIP_B, ports=ports),
            svc("empty", cip=CIP_EMPTY, ports=ports),
            eps("a", "ns1", ep(EP1), ports=(("http", TARGET, "TCP"),)),
            eps("b", "ns1", ep(EP2), ports=(("http", TARGET, "TCP"),))]


def test_clusterip_dnat_and_partial_sync(lab):
    base, node, _ = lab
    applier = NftApplier(node)
    syncer = NftablesSyncer(_config())
    state = ProxyState("n1")
    state.apply(_services())

    ex = applier.existing()
    plan = syncer.plan(state, now=0.0, existing_chains=ex.chains, existing_sets=ex.sets)
    assert plan.full
    applier.run(plan.text)
    syncer.committed()

    assert connect(node, CIP_A) == f"{EP1}:{TARGET}"
    assert connect(node, CIP_B) == f"{EP2}:{TARGET}"
    assert connect(node, CIP_EMPTY) == "ECONNREFUSED"       # no endpoints: reject-chain
    assert connect(node, CIP_A, 81) == "ECONNREFUSED"      # not a port of the ClusterIP
    assert connect(node, "172.30.0.99") == "timeout"       # unallocated ClusterIP: dropped
    assert check(applier, syncer.dump(), f"{base}.scratch")[0] == []
    assert "table ip kube-proxy {" in applier.list_text()

    # One endpoint change: the partial transaction names only Service ns1/a's objects.
    state.apply([eps("a", "ns1", ep(EP2), ports=(("http", TARGET, "TCP"),))])
    plan = syncer.plan(state, now=1.0)
    assert not plan.full and plan.updated_services == {("ns1", "a")}
    lines = plan.text.splitlines()
    assert lines and all("ns1/a/" in ln for ln in lines), plan.text
    applier.run(plan.text)
    syncer.committed()
    assert connect(node, CIP_A) == f"{EP2}:{TARGET}"
    assert connect(node, CIP_B) == f"{EP2}:{TARGET}"
    assert check(applier, syncer.dump(), f"{base}.scratch")[0] == []

    # A kube-proxy restart: a new syncer takes the table over with one full sync; the
    # chains of a Service deleted meanwhile are found in the kernel, flushed, kept as stale.
    state.delete_service(svc("b", cip=CIP_B))
    fresh = NftablesSyncer(_config())
    ex = applier.existing()
    plan = fresh.plan(state, now=2.0, existing_chains=ex.chains, existing_sets=ex.sets)
    applier.run(plan.text)
    fresh.committed()
    assert any("ns1/b/" in c for c in fresh.kernel.stale)
    assert connect(node, CIP_A) == f"{EP2}:{TARGET}"
    assert check(applier, fresh.dump(), f"{base}.scratch")[0] == []

    # Stale chains go with the first sync more than a second later.
    plan = fresh.plan(state, now=3.5)
    applier.run(plan.text)
    fresh.committed()
    assert not any("ns1/b/" in c for c in applier.existing().chains)

    applier.delete_table()
    assert applier.list_json() is None
    applier.delete_table()                                  # idempotent
    assert connect(node, CIP_A) == "timeout"                # nothing left to DNAT


def test_bad_transaction_fails_whole_and_reports_one_line(lab):
    _, node, _ = lab
    applier = NftApplier(node)
    syncer = NftablesSyncer(_config())
    state = ProxyState("n1")
    state.apply(_services())
    plan = syncer.plan(state, now=0.0)
    applier.run(plan.text)
    syncer.committed()
    bad = "flush chain ip kube-proxy services\nadd rule ip kube-proxy no-such-chain accept\n"
    with pytest.raises(Exception) as info:
        applier.run(bad)
    assert "\n" not in str(info.value) and "nft -f - in netns" in str(info.value)
    assert connect(node, CIP_A) == f"{EP1}:{TARGET}"        # the flush did not happen either


def test_every_golden_transaction_is_valid_nft(lab):
    base, node, _ = lab
    for inputs in sorted(GOLDEN.glob("nftables-*.inputs.yaml")):
        harness, cfg = load(inputs)
        state = ProxyState(cfg.node_name, cfg.ip_family)
        state.apply(harness.objects)
        syncer = NftablesSyncer(cfg)
        plan = syncer.plan(state, now=0.0)
        applier = NftApplier(node)
        applier.run(plan.text)
        syncer.committed()
        assert check(applier, syncer.dump(), f"{base}.scratch")[0] == [], inputs.name
        applier.delete_table()
    applier = NftApplier(node)
    for step in render_steps(GOLDEN / "nftables-sync-repeated.steps.txt"):
        for text in step.transactions:
            applier.run(text)
    applier.delete_table()
