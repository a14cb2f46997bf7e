"""IPVS mode's graceful termination of real servers (upstream graceful_termination.go): the pure
planning, and the syncer against a fake kernel that decodes the netlink requests it is sent."""

from __future__ import annotations

import errno
import socket
import struct

from testbed.proxy.ipvs import desired as D
from testbed.proxy.ipvs import kernel as K
from testbed.proxy.ipvs.desired import RealServer, VSKey
from testbed.proxy.ipvs.syncer import IpvsSyncer
from testbed.proxy.syncer import ProxyConfig
from testbed.proxy.tracker import ProxyState

from .conftest import NODE, ep, eps, svc

TCP = VSKey("10.96.0.10", "TCP", 80)
UDP = VSKey("10.96.0.10", "UDP", 53)
A, B = RealServer("10.244.0.5", 8080), RealServer("10.244.1.5", 8080)


# ----------------------------------------------------------------------------- pure planning

def test_udp_and_sctp_real_servers_go_at_once_tcp_ones_drain():
    assert not D.graceful_termination_needed("UDP") and not D.graceful_termination_needed("SCTP")
    assert D.graceful_termination_needed("TCP")
    sctp = VSKey("10.96.0.10", "SCTP", 80)
    plan = D.plan_retirement({UDP: {A}, sctp: {A}}, {})
    assert plan.delete == {UDP: {A}, sctp: {A}} and not plan.quiesce


def test_tcp_real_server_with_connections_is_set_to_weight_zero():
    plan = D.plan_retirement({TCP: {A, B}}, {(TCP, A.address, A.port): 2, (TCP, B.address, B.port): 0})
    assert plan.quiesce == {TCP: {RealServer(A.address, A.port, 0)}}
    assert plan.delete == {TCP: {B}}


def test_tcp_real_server_the_kernel_does_not_hold_is_left_alone():
    plan = D.plan_retirement({TCP: {A}}, {})
    assert not plan.delete and not plan.quiesce


def test_graceful_list_deletes_drained_forgets_vanished():
    g = D.GracefulList()
    g.add(TCP, RealServer(A.address, A.port, 0))
    g.add(TCP, RealServer(B.address, B.port, 0))
    assert len(g) == 2 and (TCP, A.address, A.port) in g
    # A still carries a connection, B is no longer in the kernel
    assert g.drained(TCP, {RealServer(A.address, A.port, 0): 1}) == set()
    assert (TCP, A.address, A.port) in g and (TCP, B.address, B.port) not in g
    # A drained: deleted (with the weight the kernel has) and out of the list
    assert g.drained(TCP, {RealServer(A.address, A.port, 0): 0}) == {RealServer(A.address, A.port, 0)}
    assert len(g) == 0 and g.virtual_servers() == []


def test_graceful_list_forgets_a_virtual_server_that_is_gone():
    g = D.GracefulList()
    g.add(TCP, A)
    assert g.drained(TCP, None) == set() and len(g) == 0


# ----------------------------------------------------------------------------- the syncer

def _key(attrs: dict) -> VSKey:
    proto = K.PROTO_NAME[struct.unpack("=H", attrs[K.SVC_PROTOCOL][:2])[0]]
    return VSKey(socket.inet_ntoa(attrs[K.SVC_ADDR][:4]), proto, struct.unpack("!H", attrs[K.SVC_PORT][:2])[0])


class FakeKernel(K.IpvsKernel):
    """IPVS services and destinations (with connection counts) in memory; the genl requests are
    decoded from the bytes the syncer would send."""

    def __init__(self):
        super().__init__()
        self.family = 42
        self.services: dict[VSKey, dict[tuple[str, int], list[int]]] = {}   # -> (addr, port) -> [weight, conns]
        self.log: list[str] = []

    def open(self):
        pass

    def close(self):
        pass

    def ensure_dummy(self, name):
        self.dummy_index = 7
        return 7

    def node_addresses(self, exclude_index):
        return ("192.168.0.2",)

    def ensure_sets(self):
        pass

    def list_services(self):
        return {k: D.VirtualServer(*k) for k in self.services}

    def dest_conns(self, key):
        if key not in self.services:
            raise OSError(errno.ESRCH, "no such service")
        return {RealServer(a, p, w): n for (a, p), (w, n) in self.services[key].items()}

    def read(self, dummy_index, wanted):
        st = K.KernelState(virtual_servers=self.list_services())
        for key in st.virtual_servers.keys() & wanted:
            conns = self.dest_conns(key)
            st.destinations[key] = set(conns)
            st.conns.update(((key, rs.address, rs.port), n) for rs, n in conns.items())
        return st

    def send(self, which, batch):
        failures = []
        for _mtype, _flags, body, what in batch.requests:
            if which != "genl":
                continue
            cmd = body[0]
            top = K.parse_attrs(body, 4)
            key = _key(K.parse_attrs(top[K.IPVS_CMD_ATTR_SERVICE]))
            if cmd == K.IPVS_CMD_NEW_SERVICE:
                self.services.setdefault(key, {})
            elif cmd == K.IPVS_CMD_DEL_SERVICE:
                self.services.pop(key, None)
            if K.IPVS_CMD_ATTR_DEST not in top:
                continue
            d = K.parse_attrs(top[K.IPVS_CMD_ATTR_DEST])
            rs = (socket.inet_ntoa(d[K.DEST_ADDR][:4]), struct.unpack("!H", d[K.DEST_PORT][:2])[0])
            dests = self.services[key]
            if cmd == K.IPVS_CMD_NEW_DEST:
                if rs in dests:
                    continue   # EEXIST: benign
                dests[rs] = [struct.unpack("=I", d[K.DEST_WEIGHT][:4])[0], 0]
            elif cmd == K.IPVS_CMD_SET_DEST:
                if rs not in dests:
                    failures.append((what, errno.ENOENT))
                    continue
                dests[rs][0] = struct.unpack("=I", d[K.DEST_WEIGHT][:4])[0]
            elif cmd == K.IPVS_CMD_DEL_DEST:
                dests.pop(rs, None)
            self.log.append(what)
        return failures


class FakeIptables:
    def save(self):
        return ""

    def restore(self, text):
        return 0, ""


class Rig:
    def __init__(self):
        self.kernel = FakeKernel()
        self.syncer = IpvsSyncer(ProxyConfig(cluster="c", node_name=NODE, node_ip="192.168.0.2"),
                                 iptables=FakeIptables(), kernel=self.kernel, random_fully=False,
                                 graceful_interval=None)
        self.state = ProxyState(NODE)
        self.t = 0.0

    def sync(self, *objects, full=False):
        self.state.apply(objects)
        changes = self.state.checkout()
        self.t += 1
        out = self.syncer.sync(self.state, changes, full or self.syncer.needs_full_sync, self.t)
        assert out.ok, out.error
        return out

    def dests(self, key=TCP):
        return {a: w for (a, _p), (w, _n) in self.kernel.services[key].items()}

    def conns(self, address, n, key=TCP):
        self.kernel.services[key][(address, 8080)][1] = n


WEB = svc("web", cip="10.96.0.10", ports=(("http", 80, "TCP", 0),))


def web_eps(*endpoints):
    return eps("web", "ns1", *endpoints, ports=(("http", 8080, "TCP"),))


def test_endpoint_leaving_with_connections_drains_at_weight_zero_then_is_deleted():
    r = Rig()
    r.sync(WEB, web_eps(ep(A.address, NODE), ep(B.address, "other")))
    assert r.dests() == {A.address: 1, B.address: 1}
    r.conns(B.address, 3)
    # B terminating (still serving) while A is ready: B leaves the virtual server
    r.sync(web_eps(ep(A.address, NODE), ep(B.address, "other", ready=False, serving=True, terminating=True)))
    assert r.dests() == {A.address: 1, B.address: 0}
    assert r.syncer.metrics()["ipvs"]["draining_real_servers"] == 1
    # a periodic check while connections remain deletes nothing
    assert r.syncer.reap() == 0 and r.dests() == {A.address: 1, B.address: 0}
    # a full sync leaves a draining real server as it is
    r.sync(full=True)
    assert r.dests() == {A.address: 1, B.address: 0}
    r.conns(B.address, 0)
    assert r.syncer.reap() == 1
    assert r.dests() == {A.address: 1} and len(r.syncer.graceful) == 0


def test_endpoint_leaving_without_connections_is_deleted_at_once():
    r = Rig()
    r.sync(WEB, web_eps(ep(A.address, NODE), ep(B.address, "other")))
    r.sync(web_eps(ep(A.address, NODE)))
    assert r.dests() == {A.address: 1} and len(r.syncer.graceful) == 0


def test_udp_endpoint_leaving_is_deleted_at_once_even_with_connections():
    r = Rig()
    dns = svc("dns", cip="10.96.0.10", ports=(("dns", 53, "UDP", 0),))
    slices = eps("dns", "ns1", ep(A.address, NODE), ep(B.address, "other"), ports=(("dns", 8080, "UDP"),))
    r.sync(dns, slices)
    r.conns(B.address, 1, key=UDP)
    r.sync(eps("dns", "ns1", ep(A.address, NODE), ports=(("dns", 8080, "UDP"),)))
    assert r.dests(UDP) == {A.address: 1}


def test_draining_endpoint_back_is_set_to_weight_one_in_place():
    r = Rig()
    r.sync(WEB, web_eps(ep(A.address, NODE), ep(B.address, "other")))
    r.conns(B.address, 1)
    r.sync(web_eps(ep(A.address, NODE), ep(B.address, "other", ready=False)))
    assert r.dests() == {A.address: 1, B.address: 0}
    r.sync(web_eps(ep(A.address, NODE), ep(B.address, "other")))
    assert r.dests() == {A.address: 1, B.address: 1} and len(r.syncer.graceful) == 0
    assert r.kernel.log[-1] == f"set real server {B.address}:8080 of {TCP} to weight 1"


def test_full_sync_after_restart_drains_what_it_finds_and_restores_weights():
    r = Rig()
    r.sync(WEB, web_eps(ep(A.address, NODE)))
    # left by a previous proxy: B draining (not wanted), A lowered to 0 (wanted)
    r.kernel.services[TCP][(B.address, 8080)] = [1, 2]
    r.kernel.services[TCP][(A.address, 8080)][0] = 0
    r.sync(full=True)
    assert r.dests() == {A.address: 1, B.address: 0}
    assert (TCP, B.address, 8080) in r.syncer.graceful


def test_service_deleted_forgets_its_draining_real_servers():
    r = Rig()
    r.sync(WEB, web_eps(ep(A.address, NODE), ep(B.address, "other")))
    r.conns(B.address, 1)
    r.sync(web_eps(ep(A.address, NODE)))
    assert len(r.syncer.graceful) == 1
    r.state.delete_service(WEB)
    r.sync()
    assert TCP not in r.kernel.services and len(r.syncer.graceful) == 0
