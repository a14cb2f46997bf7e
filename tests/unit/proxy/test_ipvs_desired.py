"""The desired IPVS-mode state computed from Services and EndpointSlices (pure, no root), checked
against upstream's layout (/work/shared/reference/kube-proxy-ipvs.md)."""

from __future__ import annotations

import pytest

from testbed.proxy.ipvs import desired as D
from testbed.proxy.ipvs.desired import RealServer, VirtualServer, VSKey
from testbed.proxy.tracker import ProxyState

from .conftest import NODE, ep, eps, svc

NODE_IP = "192.168.0.2"
ADDRS = ("10.244.0.1", "192.168.0.2")


def cfg(**kw):
    base = dict(node_name=NODE, node_ip=NODE_IP, node_addresses=ADDRS, cluster_cidr="10.244.0.0/16")
    base.update(kw)
    return D.IpvsConfig(**base)


class Rig:
    def __init__(self, **kw):
        self.cfg = cfg(**kw)
        self.state = ProxyState(NODE)
        self.want = D.DesiredState(self.cfg)

    def full(self, *objects):
        self.state.apply(objects)
        self.state.checkout()
        self.want.rebuild(self.state)
        return self.want

    def partial(self, *objects, delete=()):
        self.state.apply(objects)
        for obj in delete:
            (self.state.delete_service if obj["kind"] == "Service" else self.state.delete_endpoint_slice)(obj)
        changes = self.state.checkout()
        delta = D.Delta()
        for nn in sorted(changes.updated_services):
            self.want.update(self.state, nn, delta)
        return delta

    def rules(self):
        return D.render_iptables(self.cfg, self.want.nonempty_sets(), self.want.out_filter())


def test_clusterip_virtual_server_real_servers_and_sets():
    r = Rig()
    w = r.full(svc("web", cip="10.96.0.10"),
               eps("web", "ns1", ep("10.244.0.5", NODE), ep("10.244.1.5", "other")))
    key = VSKey("10.96.0.10", "TCP", 80)
    assert w.virtual_servers == {key: VirtualServer("10.96.0.10", "TCP", 80, "rr", 0, 0)}
    assert w.destinations[key] == {RealServer("10.244.0.5", 80), RealServer("10.244.1.5", 80)}
    assert w.bound_addresses == {"10.96.0.10"}
    sets = w.set_entries()
    assert sets["KUBE-CLUSTER-IP"] == {"10.96.0.10,tcp:80"}
    # hairpin: only the local endpoint, upstream's hash:ip,port,ip format
    assert sets["KUBE-LOOP-BACK"] == {"10.244.0.5,tcp:80,10.244.0.5"}
    assert sets["KUBE-IPVS-IPS"] == {"10.96.0.10"}
    assert all(not v for k, v in sets.items() if k not in ("KUBE-CLUSTER-IP", "KUBE-LOOP-BACK", "KUBE-IPVS-IPS"))


def test_only_ready_endpoints_and_serving_terminating_fallback():
    r = Rig()
    w = r.full(svc("web", cip="10.96.0.10"),
               eps("web", "ns1", ep("10.244.0.5", NODE, ready=True),
                   ep("10.244.0.6", NODE, ready=False, serving=True, terminating=True)))
    assert w.destinations[VSKey("10.96.0.10", "TCP", 80)] == {RealServer("10.244.0.5", 80)}
    r2 = Rig()
    w2 = r2.full(svc("web", cip="10.96.0.10"),
                 eps("web", "ns1", ep("10.244.0.6", NODE, ready=False, serving=True, terminating=True)))
    assert w2.destinations[VSKey("10.96.0.10", "TCP", 80)] == {RealServer("10.244.0.6", 80)}


def test_no_endpoints_still_creates_the_virtual_server():
    w = Rig().full(svc("empty", cip="10.96.0.11"))
    assert VSKey("10.96.0.11", "TCP", 80) in w.virtual_servers
    assert w.destinations[VSKey("10.96.0.11", "TCP", 80)] == frozenset()


def test_session_affinity_is_persistence_with_timeout():
    w = Rig().full(svc("s", cip="10.96.0.12", sessionAffinity="ClientIP",
                       sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}}))
    vs = w.virtual_servers[VSKey("10.96.0.12", "TCP", 80)]
    assert (vs.flags, vs.timeout) == (D.FLAG_PERSISTENT, 300)
    w = Rig().full(svc("s", cip="10.96.0.12", sessionAffinity="ClientIP"))
    assert w.virtual_servers[VSKey("10.96.0.12", "TCP", 80)].timeout == 10800


def test_scheduler_configurable_and_mh_sets_source_hash():
    w = Rig(scheduler="wrr").full(svc("s", cip="10.96.0.13"))
    assert w.virtual_servers[VSKey("10.96.0.13", "TCP", 80)].scheduler == "wrr"
    w = Rig(scheduler="mh").full(svc("s", cip="10.96.0.13"))
    assert w.virtual_servers[VSKey("10.96.0.13", "TCP", 80)].flags == D.FLAG_SOURCE_HASH


def test_nodeport_one_virtual_server_per_node_address_never_bound():
    w = Rig().full(svc("np", cip="10.96.0.14", type="NodePort", ports=(("p80", 80, "TCP", 30080),)),
                   eps("np", "ns1", ep("10.244.1.5", "other")))
    keys = set(w.virtual_servers)
    assert keys == {VSKey("10.96.0.14", "TCP", 80), VSKey("10.244.0.1", "TCP", 30080),
                    VSKey("192.168.0.2", "TCP", 30080)}
    assert w.bound_addresses == {"10.96.0.14"}
    sets = w.set_entries()
    assert sets["KUBE-NODE-PORT-TCP"] == {"30080"}
    assert sets["KUBE-NODE-PORT-LOCAL-TCP"] == set()


def test_nodeport_udp_and_sctp_sets():
    w = Rig().full(svc("u", cip="10.96.0.15", type="NodePort",
                       ports=(("dns", 53, "UDP", 30053), ("s", 99, "SCTP", 30099))))
    sets = w.set_entries()
    assert sets["KUBE-NODE-PORT-UDP"] == {"30053"}
    assert sets["KUBE-NODE-PORT-SCTP-HASH"] == {"10.244.0.1,sctp:30099", "192.168.0.2,sctp:30099"}
    assert sets["KUBE-CLUSTER-IP"] == {"10.96.0.15,udp:53", "10.96.0.15,sctp:99"}


def test_external_traffic_policy_local_falls_back_to_cluster_endpoints():
    """Upstream PR #97081: unlike iptables mode (DROP), IPVS mode keeps the cluster endpoints
    for a Local-policy VIP that has no local endpoint."""
    spec = dict(type="NodePort", externalTrafficPolicy="Local", ports=(("p80", 80, "TCP", 30080),))
    w = Rig().full(svc("l", cip="10.96.0.16", **spec), eps("l", "ns1", ep("10.244.1.5", "other")))
    assert w.destinations[VSKey("192.168.0.2", "TCP", 30080)] == {RealServer("10.244.1.5", 80)}
    sets = w.set_entries()
    assert sets["KUBE-NODE-PORT-LOCAL-TCP"] == {"30080"} and sets["KUBE-NODE-PORT-TCP"] == {"30080"}
    # with a local endpoint only the local one
    w = Rig().full(svc("l", cip="10.96.0.16", **spec),
                   eps("l", "ns1", ep("10.244.1.5", "other"), ep("10.244.0.7", NODE)))
    assert w.destinations[VSKey("192.168.0.2", "TCP", 30080)] == {RealServer("10.244.0.7", 80)}
    # the ClusterIP keeps using every endpoint (eTP does not apply to it)
    assert len(w.destinations[VSKey("10.96.0.16", "TCP", 80)]) == 2


def test_internal_traffic_policy_local_uses_local_endpoints_for_cluster_ip():
    w = Rig().full(svc("i", cip="10.96.0.17", internalTrafficPolicy="Local"),
                   eps("i", "ns1", ep("10.244.1.5", "other"), ep("10.244.0.7", NODE)))
    assert w.destinations[VSKey("10.96.0.17", "TCP", 80)] == {RealServer("10.244.0.7", 80)}


def test_external_ips_and_load_balancer():
    lb = svc("lb", cip="10.96.0.18", type="LoadBalancer", externalIPs=["1.2.3.4", NODE_IP],
             ports=(("p80", 80, "TCP", 30081),), loadBalancerSourceRanges=["203.0.113.0/24"],
             status={"loadBalancer": {"ingress": [{"ip": "172.20.10.240"}]}})
    w = Rig().full(lb)
    sets = w.set_entries()
    assert sets["KUBE-EXTERNAL-IP"] == {"1.2.3.4,tcp:80", "192.168.0.2,tcp:80"}
    assert sets["KUBE-LOAD-BALANCER"] == {"172.20.10.240,tcp:80"}
    assert sets["KUBE-LOAD-BALANCER-FW"] == {"172.20.10.240,tcp:80"}
    assert sets["KUBE-LOAD-BALANCER-SOURCE-CIDR"] == {"172.20.10.240,tcp:80,203.0.113.0/24"}
    assert sets["KUBE-LOAD-BALANCER-SOURCE-IP"] == set()
    assert w.out_filter() == [("172.20.10.240", "TCP", 80)]
    # a node address is not bound to kube-ipvs0 again
    assert w.bound_addresses == {"10.96.0.18", "1.2.3.4", "172.20.10.240"}
    assert sets["KUBE-IPVS-IPS"] == w.bound_addresses
    assert VSKey("172.20.10.240", "TCP", 80) in w.virtual_servers
    assert VSKey("1.2.3.4", "TCP", 80) in w.virtual_servers


def test_load_balancer_source_range_containing_node_ip_and_local_policy():
    lb = svc("lb", cip="10.96.0.19", type="LoadBalancer", externalTrafficPolicy="Local",
             healthCheckNodePort=32000, externalIPs=["1.2.3.5"], ports=(("p80", 80, "TCP", 30082),),
             loadBalancerSourceRanges=["192.168.0.0/24"],
             status={"loadBalancer": {"ingress": [{"ip": "172.20.10.241"}]}})
    w = Rig().full(lb)
    sets = w.set_entries()
    assert sets["KUBE-LOAD-BALANCER-SOURCE-IP"] == {"172.20.10.241,tcp:80,172.20.10.241"}
    assert sets["KUBE-LOAD-BALANCER-LOCAL"] == {"172.20.10.241,tcp:80"}
    assert sets["KUBE-EXTERNAL-IP-LOCAL"] == {"1.2.3.5,tcp:80"} and sets["KUBE-EXTERNAL-IP"] == set()
    assert sets["KUBE-HEALTH-CHECK-NODE-PORT"] == {"32000"}
    assert w.out_filter() == []


def test_partial_update_delta_and_reference_counts():
    r = Rig()
    r.full(svc("a", cip="10.96.0.20"), eps("a", "ns1", ep("10.244.0.5", NODE)),
           svc("b", cip="10.96.0.21"), eps("b", "ns1", ep("10.244.0.5", NODE)))
    # both services share the hairpin entry of the same pod port
    assert r.want.set_entries()["KUBE-LOOP-BACK"] == {"10.244.0.5,tcp:80,10.244.0.5"}
    d = r.partial(delete=[svc("a", cip="10.96.0.20")])
    assert d.del_vs == {VSKey("10.96.0.20", "TCP", 80)}
    assert d.unbind == {"10.96.0.20"}
    assert d.del_entries == {("KUBE-CLUSTER-IP", "10.96.0.20,tcp:80"), ("KUBE-IPVS-IPS", "10.96.0.20")}
    assert not d.add_vs and not d.bind
    # the shared hairpin entry survives
    assert r.want.set_entries()["KUBE-LOOP-BACK"] == {"10.244.0.5,tcp:80,10.244.0.5"}
    # endpoint change: only destinations move
    d = r.partial(eps("b", "ns1", ep("10.244.1.9", "other")))
    key = VSKey("10.96.0.21", "TCP", 80)
    assert d.add_dest == {key: {RealServer("10.244.1.9", 80)}}
    assert d.del_dest == {key: {RealServer("10.244.0.5", 80)}}
    assert d.del_entries == {("KUBE-LOOP-BACK", "10.244.0.5,tcp:80,10.244.0.5")}
    assert not d.add_vs and not d.del_vs
    # a settings change is an update of the existing virtual server
    d = r.partial(svc("b", cip="10.96.0.21", sessionAffinity="ClientIP"))
    assert d.update_vs == {key} and d.add_vs[key].flags == D.FLAG_PERSISTENT
    # nothing changed: empty delta
    assert r.partial().empty()


def test_partial_equals_full():
    objs = [svc("a", cip="10.96.0.30", type="NodePort", ports=(("p80", 80, "TCP", 30090),)),
            eps("a", "ns1", ep("10.244.0.5", NODE), ep("10.244.1.5", "x")),
            svc("c", cip="10.96.0.31"), eps("c", "ns1", ep("10.244.0.6", NODE))]
    r = Rig()
    r.full(*objs[:2])
    r.partial(*objs[2:])
    r.partial(eps("a", "ns1", ep("10.244.1.5", "x")))
    f = Rig()
    f.full(objs[0], objs[2], objs[3], eps("a", "ns1", ep("10.244.1.5", "x")))
    assert r.want.virtual_servers == f.want.virtual_servers
    assert r.want.destinations == f.want.destinations
    assert r.want.set_entries() == f.want.set_entries()
    assert r.want.bound_addresses == f.want.bound_addresses


def test_entry_formats():
    assert D.entry_ip_port("192.168.1.1", "UDP", 53) == "192.168.1.1,udp:53"
    assert D.entry_ip_port_ip("192.168.1.1", "udp", 53, "10.0.0.1") == "192.168.1.1,udp:53,10.0.0.1"
    assert D.entry_ip_port_net("192.168.1.2", "udp", 80, "10.0.1.0/24") == "192.168.1.2,udp:80,10.0.1.0/24"
    assert D.parse_entry("hash:ip,port,net", "192.168.1.2,udp:80,10.0.1.0/24") == \
        ("192.168.1.2", "udp", 80, "10.0.1.0/24")
    assert D.parse_entry("bitmap:port", "53") == (53,)


def test_ipsets_match_upstream():
    names = [s.name for s in D.IPSETS]
    assert len(names) == len(set(names)) == 17
    assert "KUBE-NODE-PORT-SCTP" not in names   # legacy name, must not be created
    assert D.SET_BY_NAME["KUBE-LOOP-BACK"].type == "hash:ip,port,ip"
    assert D.SET_BY_NAME["KUBE-LOAD-BALANCER-SOURCE-CIDR"].type == "hash:ip,port,net"
    assert D.SET_BY_NAME["KUBE-HEALTH-CHECK-NODE-PORT"].type == "bitmap:port"
    assert D.SET_BY_NAME["KUBE-IPVS-IPS"] == ("KUBE-IPVS-IPS", "hash:ip", "Addresses on the ipvs interface")


def test_sysctls():
    assert D.sysctls((6, 1)) == [("net.ipv4.vs.conntrack", 1), ("net.ipv4.vs.expire_nodest_conn", 1),
                                 ("net.ipv4.vs.expire_quiescent_template", 1), ("net.ipv4.ip_forward", 1)]
    assert ("net.ipv4.vs.conn_reuse_mode", 0) in D.sysctls((5, 4))
    assert ("net.ipv4.conf.all.arp_announce", 2) in D.sysctls((6, 1), strict_arp=True)


EXPECTED_RULES = """\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
-I INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
COMMIT
"""


def test_iptables_rules_upstream_text():
    r = Rig()
    r.full(svc("np", cip="10.96.0.14", type="NodePort", ports=(("p80", 80, "TCP", 30080),)),
           eps("np", "ns1", ep("10.244.0.5", NODE)))
    jumps = [j for j in D.JUMP_RULES if (j[1], j[2]) in (("OUTPUT", "KUBE-SERVICES"), ("INPUT", "KUBE-IPVS-FILTER"))]
    text = D.render_iptables(r.cfg, r.want.nonempty_sets(), r.want.out_filter(), jumps)
    assert text == EXPECTED_RULES


@pytest.mark.parametrize("kw,line", [
    (dict(masquerade_all=True), "-m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"),
    (dict(cluster_cidr=None), "-m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ"),
    (dict(random_fully=True), "-j MASQUERADE --random-fully"),
])
def test_iptables_rule_variants(kw, line):
    r = Rig(**kw)
    r.full(svc("a", cip="10.96.0.40"))
    assert line in r.rules()


def test_iptables_rules_for_external_ips_and_lb_filters():
    r = Rig()
    r.full(svc("lb", cip="10.96.0.18", type="LoadBalancer", externalIPs=["1.2.3.4"],
               ports=(("p80", 80, "TCP", 30081),), loadBalancerSourceRanges=["203.0.113.0/24"],
               status={"loadBalancer": {"ingress": [{"ip": "172.20.10.240"}]}}))
    text = r.rules()
    assert ('-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter '
            'purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! '
            '--src-type LOCAL -j ACCEPT') in text
    assert ('-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load '
            'balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL') in text
    assert "-A KUBE-IPVS-OUT-FILTER -s 172.20.10.240 -m ipvs --vaddr 172.20.10.240 --vproto tcp --vport 80 -j DROP" in text
    assert "-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT" in text


def test_missing_jump_rules():
    saved = {"nat": ['-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']}
    missing = D.missing_jump_rules(saved)
    assert ("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals") not in missing
    assert len(missing) == len(D.JUMP_RULES) - 1


def test_cluster_ip_destinations_for_doctor():
    """What doctor expects in a node's IPVS table for one Service: its ClusterIP virtual
    servers only (not the NodePort ones), with the real servers this node's proxy picks."""
    web = svc("web", type="NodePort", ports=(("p80", 80, "TCP", 30080),), internalTrafficPolicy="Local")
    slices = [eps("web", "ns1", ep("10.244.0.5", NODE, ready=True), ep("10.244.1.5", "other", ready=True)),
              eps("db", "ns1", ep("10.244.0.9", NODE, ready=True))]
    got = D.cluster_ip_destinations(cfg(), web, slices)
    assert got == {VSKey("172.30.0.41", "TCP", 80): frozenset({RealServer("10.244.0.5", 80)})}
    # on a node without a local endpoint, internalTrafficPolicy Local falls back as the proxy does
    other = D.cluster_ip_destinations(cfg(node_name="third"), web, slices)
    assert other == {VSKey("172.30.0.41", "TCP", 80): frozenset({RealServer("10.244.0.5", 80),
                                                                  RealServer("10.244.1.5", 80)})}
    assert D.cluster_ip_destinations(cfg(), svc("lonely"), []) == {VSKey("172.30.0.41", "TCP", 80): frozenset()}
