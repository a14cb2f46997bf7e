"""Hand-written cases for behaviour the goldens do not cover (rule text from upstream's logic)."""


import pytest

from testbed.proxy.iptables.render import IptablesRenderer, LocalDetector
from testbed.proxy.iptables.servicechains import compute_probability
from testbed.proxy.iptables.sortorder import sort_restore_text
from testbed.proxy.tracker import ProxyState

from .conftest import NODE, Rig, config, ep, eps, svc

H = "XPGD46QRK7WJZT7O"                 # ns1/svc1:p80 + tcp
SVC, SVL, EXT, FW = (f"KUBE-{p}-{H}" for p in ("SVC", "SVL", "EXT", "FW"))
SEP1 = "KUBE-SEP-SXIVWICOYRO3J4NJ"     # 10.180.0.1:80
SEP2 = "KUBE-SEP-ZX7GRIZKSNUQ3LAJ"     # 10.180.2.1:80
CIP = '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80'


def chain(lines, name):
    return [l for l in lines if l.startswith(f"-A {name} ")]


def table(text, name):
    return text.split(f"*{name}\n")[1].split("COMMIT\n")[0].splitlines()


@pytest.mark.parametrize("n,p", [(1, "1.0000000000"), (2, "0.5000000000"), (3, "0.3333333333"),
                                 (10, "0.1000000000"), (1000, "0.0010000000"),
                                 (100000, "0.0000100000"), (100001, "0.0000099999")])
def test_compute_probability(n, p):
    assert compute_probability(n) == p


def test_probability_cascade(rig):
    lines = rig.lines(svc("svc1"), eps("svc1", "ns1", ep("10.180.0.1"), ep("10.180.0.2"),
                                       ep("10.180.0.10")))
    rules = chain(lines, SVC)[1:]
    assert [r.split(" -> ")[1].split('"')[0] for r in rules] == \
        ["10.180.0.10:80", "10.180.0.1:80", "10.180.0.2:80"]   # sorted as strings
    assert "--probability 0.3333333333" in rules[0] and "--probability 0.5000000000" in rules[1]
    assert "statistic" not in rules[2]


def test_session_affinity(rig):
    s = svc("svc1", sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}})
    lines = rig.lines(s, eps("svc1", "ns1", ep("10.180.0.1"), ep("10.180.2.1")))
    assert chain(lines, SVC) == [
        f"-A {SVC} {CIP} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name {SEP1}'
        f" --rcheck --seconds 300 --reap -j {SEP1}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -m recent --name {SEP2}'
        f" --rcheck --seconds 300 --reap -j {SEP2}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random'
        f" --probability 0.5000000000 -j {SEP1}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j {SEP2}',
    ]
    assert chain(lines, SEP1) == [
        f"-A {SEP1} -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
        f"-A {SEP1} -m comment --comment ns1/svc1:p80 -m recent --name {SEP1} --set"
        " -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
    ]


def _lb(**spec):
    return svc("svc1", type="LoadBalancer", ports=(("p80", 80, "TCP", 3002),),
               status={"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}}, **spec)


def test_loadbalancer_source_ranges(rig):
    res = rig.sync(_lb(loadBalancerSourceRanges=["203.0.113.0/25"]),
                   eps("svc1", "ns1", ep("10.180.0.1")))
    nat, filt = table(res.text, "nat"), table(res.text, "filter")
    assert f'-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp' \
           f" -d 5.6.7.8 --dport 80 -j {FW}" in nat
    assert chain(filt, "KUBE-PROXY-FIREWALL") == [
        f'-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by {FW}"'
        " -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP"]
    assert chain(nat, FW) == [
        f'-A {FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j {EXT}',
        f'-A {FW} -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by'
        ' KUBE-PROXY-FIREWALL"']
    assert chain(nat, EXT) == [
        f'-A {EXT} -m comment --comment "masquerade traffic for ns1/svc1:p80 external'
        ' destinations" -j KUBE-MARK-MASQ',
        f"-A {EXT} -j {SVC}"]
    # NodePorts bypass the source ranges; localhost variant counted by nfacct
    assert chain(nat, "KUBE-NODEPORTS") == [
        "-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8"
        f" --dport 3002 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j {EXT}",
        f"-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3002 -j {EXT}"]
    assert res.written_chains == [EXT, FW, SVC, SEP1]


def test_loadbalancer_source_range_containing_node_ip(rig):
    lines = rig.lines(_lb(loadBalancerSourceRanges=["192.168.0.0/16"]),
                      eps("svc1", "ns1", ep("10.180.0.1")))
    assert chain(lines, FW)[:2] == [
        f'-A {FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 192.168.0.0/16 -j {EXT}',
        f'-A {FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 5.6.7.8 -j {EXT}']


def test_internal_traffic_policy_local(rig):
    s = svc("svc1", internalTrafficPolicy="Local")
    res = rig.sync(s, eps("svc1", "ns1", ep("10.180.0.1")))
    assert chain(table(res.text, "filter"), "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp'
        " -d 172.30.0.41 --dport 80 -j DROP"]
    assert res.written_chains == []
    res = rig.sync(eps("svc1", "ns1", ep("10.180.0.1"), ep("10.180.2.1", "test-node")))
    nat = table(res.text, "nat")
    assert f"-A KUBE-SERVICES {CIP} -j {SVL}" in nat
    assert chain(nat, SVL) == [
        f"-A {SVL} {CIP} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        f'-A {SVL} -m comment --comment "ns1/svc1:p80 -> 10.180.2.1:80" -j {SEP2}']
    assert res.written_chains == [SVL, SEP2] and not res.full


def test_external_traffic_policy_local_without_local_endpoints(rig):
    s = svc("svc1", type="NodePort", externalTrafficPolicy="Local",
            ports=(("p80", 80, "TCP", 3001),))
    res = rig.sync(s, eps("svc1", "ns1", ep("10.180.0.1")))
    nat, filt = table(res.text, "nat"), table(res.text, "filter")
    assert chain(filt, "KUBE-EXTERNAL-SERVICES") == [
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints"'
        " -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP"]
    ext = chain(nat, EXT)
    assert len(ext) == 3 and ext[0].endswith(f"-s 10.0.0.0/8 -j {SVC}")   # no final -j SVL
    assert SVL not in res.written_chains and SVC in res.written_chains
    assert f"-A KUBE-SERVICES {CIP} -j {SVC}" in nat


def test_serving_terminating_fallback(rig):
    res = rig.sync(svc("svc1"), eps("svc1", "ns1",
                                    ep("10.180.0.1", ready=False, serving=True, terminating=True),
                                    ep("10.180.2.1", ready=False, serving=False,
                                       terminating=True)))
    assert res.written_chains == [SVC, SEP1]
    res = rig.sync(eps("svc1", "ns1", ep("10.180.2.1", ready=False, serving=False,
                                         terminating=True)))
    assert '"ns1/svc1:p80 has no endpoints"' in res.text
    assert res.deleted_chains == [SEP1, SVC]


def test_udp_and_multi_port(rig):
    s = svc("svc1", ports=(("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 0)))
    lines = rig.lines(s, eps("svc1", "ns1", ep("10.180.0.1"),
                             ports=(("dns", 5353, "UDP"), ("dns-tcp", 5353, "TCP"))))
    svc_rules = chain(lines, "KUBE-SERVICES")
    assert svc_rules[0].startswith('-A KUBE-SERVICES -m comment --comment "ns1/svc1:dns cluster IP"'
                                   " -m udp -p udp -d 172.30.0.41 --dport 53 -j KUBE-SVC-")
    assert '"ns1/svc1:dns-tcp cluster IP" -m tcp -p tcp' in svc_rules[1]
    assert any(l.endswith("-m udp -p udp -j DNAT --to-destination 10.180.0.1:5353")
               for l in lines)


def test_no_endpoints_rejects_everything(rig):
    s = _lb(externalIPs=["192.168.99.11"])
    res = rig.sync(s)
    filt = table(res.text, "filter")
    c = '-m comment --comment "ns1/svc1:p80 has no endpoints"'
    assert chain(filt, "KUBE-SERVICES") == [
        f"-A KUBE-SERVICES {c} -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT"]
    assert chain(filt, "KUBE-EXTERNAL-SERVICES") == [
        f"-A KUBE-EXTERNAL-SERVICES {c} -m tcp -p tcp -d 192.168.99.11 --dport 80 -j REJECT",
        f"-A KUBE-EXTERNAL-SERVICES {c} -m tcp -p tcp -d 5.6.7.8 --dport 80 -j REJECT",
        f"-A KUBE-EXTERNAL-SERVICES {c} -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3002"
        " -j REJECT"]
    nat = table(res.text, "nat")
    assert chain(nat, "KUBE-NODEPORTS") == [] and len(chain(nat, "KUBE-SERVICES")) == 1


def test_parameters():
    r = Rig(mark_format="padded", random_fully=True, conntrack_tcp_be_liberal=True,
            masquerade_all=True, localhost_nodeports=False)
    text = r.sync(svc("svc1"), eps("svc1", "ns1", ep("10.180.0.1"))).text
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in text
    assert "-m mark ! --mark 0x00004000/0x00004000 -j RETURN" in text
    assert '"kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully' in text
    assert "--ctstate INVALID" not in text and "KUBE-FIREWALL" not in text
    assert f"-A {SVC} {CIP} -j KUBE-MARK-MASQ" in text
    assert "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS" in text


def test_no_local_detector_and_nodeport_addresses():
    r = Rig(local_detector=None, nodeport_addresses=("192.168.0.0/24", "fd00::/64"),
            node_ips=("192.168.0.2", "10.1.1.1"))
    lines = r.lines(svc("svc1", type="NodePort", ports=(("p80", 80, "TCP", 3001),)),
                    eps("svc1", "ns1", ep("10.180.0.1")))
    assert chain(lines, SVC) == [f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80"'
                                 f" -j {SEP1}"]
    assert chain(lines, "KUBE-SERVICES")[-1] == (
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be'
        ' the last rule in this chain" -d 192.168.0.2 -j KUBE-NODEPORTS')
    assert not any("127.0.0.0/8" in l for l in lines)   # localhost NodePorts forced off


def test_ipv6():
    r = Rig(ip_family="IPv6", node_ips=("fd00::2",),
            local_detector=LocalDetector("ClusterCIDR", "fd00:10::/64"))
    text = r.sync(svc("svc1", cip="fd00:30::41"),
                  eps("svc1", "ns1", ep("fd00:10::1"), family="IPv6")).text
    assert "-j DNAT --to-destination [fd00:10::1]:80" in text
    assert "! -s fd00:10::/64 -j KUBE-MARK-MASQ" in text
    assert "-m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS" in text
    assert "KUBE-FIREWALL" not in text


def test_partial_sync_and_full_sync_triggers(rig):
    assert rig.sync(svc("svc1"), eps("svc1", "ns1", ep("10.180.0.1"))).full
    res = rig.sync(svc("svc2", cip="172.30.0.42"))
    assert not res.full and res.written_chains == [] and f":{SVC} - [0:0]" not in res.text
    assert f"-A KUBE-SERVICES {CIP} -j {SVC}" in res.text
    rig.renderer.set_topology_labels({"topology.kubernetes.io/zone": "z"})
    assert rig.sync().full
    assert not rig.sync().full
    rig.now += 3601
    assert rig.sync().full
    rig.renderer.force_full_sync()
    assert rig.sync().written_chains == [SVC, SEP1]


def test_restore_failure_and_existing_chains(rig):
    rig.sync(svc("svc1"), eps("svc1", "ns1", ep("10.180.0.1")))
    assert rig.renderer.existing_chains == {SVC, SEP1}
    res = rig.sync(delete=[svc("svc1")])
    assert res.deleted_chains == [SEP1, SVC] and rig.renderer.existing_chains == set()
    rig.renderer.restore_failed()
    assert rig.renderer.existing_chains == {SVC, SEP1} and rig.renderer.needs_full_sync
    res = rig.sync()
    assert res.full and res.deleted_chains == [SEP1, SVC]
    res = rig.sync(existing_nat_chains={"KUBE-SVC-STALE", "KUBE-SERVICES", "DOCKER"})
    assert res.deleted_chains == ["KUBE-SVC-STALE"]
    assert ":KUBE-SVC-STALE - [0:0]" in res.text and "-X KUBE-SVC-STALE" in res.text
    sort_restore_text(res.text)          # parses: -X only for declared, rule-less chains


def test_large_cluster_mode():
    r = Rig()
    many = [ep(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(1002)]
    res = r.sync(svc("svc1"), eps("svc1", "ns1", *many))
    assert res.large_cluster_mode
    svc_rules = chain(res.text.splitlines(), SVC)
    assert svc_rules[0] == f"-A {SVC} {CIP} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"  # keeps comment
    assert all("comment" not in l for l in svc_rules[1:])
    assert all("comment" not in l for l in res.text.splitlines() if l.startswith("-A KUBE-SEP-"))
    res = r.sync(eps("svc1", "ns1", *many[:-1]))
    assert res.large_cluster_mode and res.deleted_chains == []   # cleanup once per sync_period
    r.now += 31
    assert len(r.sync().deleted_chains) == 1


def test_emission_is_sorted_order_modulo_chain_declarations(rig):
    text = rig.sync(svc("b", cip="172.30.0.2"), svc("a", cip="172.30.0.1"),
                    eps("a", "ns1", ep("10.0.0.1")), eps("b", "ns1", ep("10.0.0.2"))).text
    nat = table(text, "nat")
    assert [l.split('"')[1] for l in chain(nat, "KUBE-SERVICES")[:2]] == \
        ["ns1/a:p80 cluster IP", "ns1/b:p80 cluster IP"]


def test_scale_10k_services():
    """10k services x 2 endpoints: a full sync writes every chain, a change only its Service's
    (the time is scripts/bench/proxy-sync's to measure)."""
    st = ProxyState("n1")
    for i in range(10000):
        st.update_service(svc(f"s{i}", f"ns{i % 50}", cip=f"172.30.{i // 256}.{i % 256}"))
        st.update_endpoint_slice(eps(f"s{i}", f"ns{i % 50}", ep(f"10.1.{i // 256}.{i % 256}", "n1"),
                                     ep(f"10.2.{i // 256}.{i % 256}")))
    r = Rig(node_name="n1")
    res = r.renderer.sync(st, now=1.0)
    assert res.full and len(res.written_chains) == 30000
    st.update_endpoint_slice(eps("s5", "ns5", ep("10.9.9.9")))
    res = r.renderer.sync(st, now=2.0)
    assert not res.full and len(res.written_chains) == 2


def test_endpoint_chain_names_of_gone_endpoints_are_forgotten():
    st = ProxyState(NODE)
    st.update_service(svc("s0"))
    r = IptablesRenderer(config())
    for gen in range(4):   # every endpoint replaced each time
        st.update_endpoint_slice(eps("s0", "ns1", *[ep(f"10.{gen}.{i // 256}.{i % 256}") for i in range(1500)]))
        r.sync(st, changes=st.checkout(), now=float(gen))
    rules = r._rules
    assert rules._sep_count == sum(len(n) for n in rules._sep.values()) <= 2 * 1500
    assert set(n for names in rules._sep.values() for n in names.values()) >= \
        {c for c in r.active_chains if c.startswith("KUBE-SEP-")}


def test_stale_chains_a_large_cluster_sweeps_later_are_counted_when_due():
    st = ProxyState(NODE)
    for i in range(3):   # 1,800 endpoints: large cluster mode
        st.update_service(svc(f"s{i}", cip=f"172.30.0.{i + 1}"))
        st.update_endpoint_slice(eps(f"s{i}", "ns1", *[ep(f"10.{i}.{k // 256}.{k % 256}") for k in range(600)]))
    r = IptablesRenderer(config(sync_period=30.0))
    r.sync(st, changes=st.checkout(), full=True, now=0.0)
    st.delete_service(svc("s2", cip="172.30.0.3"))
    st.delete_endpoint_slice(eps("s2", "ns1"))
    res = r.sync(st, changes=st.checkout(), now=1.0)
    assert res.large_cluster_mode and res.deleted_chains == []   # swept later, as upstream
    assert r.stale_chains_due(2.0) == 0
    assert r.stale_chains_due(31.5) == 601                      # its KUBE-SVC- and 600 KUBE-SEP-
    assert len(r.sync(st, changes=st.checkout(), now=31.5).deleted_chains) == 601
    assert r.stale_chains_due(62.0) == 0
