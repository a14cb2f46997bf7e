"""``trace`` in IPVS mode on a real cluster: the kernel's IPVS connection entry is part of the
trace. Marked ``ipvs``: ``scripts/test`` runs it in the kernel lane where this kernel has no
ip_vs (as tests/integration/test_ipvs.py).

The cluster is test_troubleshoot's (client on node1, the only web backend on node2, a NodePort
Service, an externalTrafficPolicy Local one, one without endpoints, the seeds' mistakes: a
selector typo, a wrong targetPort, a pod never Ready; hairpin-veth); each trace sends one real
connection. doctor's tests are test_troubleshoot's own, run here on this cluster, and one of
IPVS mode's: a virtual server missing, real servers not the EndpointSlices' endpoints.
"""

from __future__ import annotations

import os
import re
import shlex

import pytest

from testbed import exec as ex
from testbed import netlink, netns
from testbed.proxy.ipvs import kernel as K
from testbed.proxy.ipvs.desired import RealServer, VSKey
from testbed.proxy.ipvs.preflight import ipvs_problem
from testbed.troubleshoot import doctor, explain, trace

# doctor's checks of the seeds' mistakes and of a stopped proxy, collected here as well: they
# run on this module's IPVS cluster (its fixture ``c``)
from .test_troubleshoot import (MANIFESTS, _by_check, _no_trace_tables, settled,  # noqa: F401
                                test_doctor_not_ready_pod, test_doctor_selector_typo, test_doctor_stopped_proxy,
                                test_doctor_wrong_target_port)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROBLEM = ipvs_problem()
_LANE = os.access(os.path.join(REPO, "scripts", "kernel-lane"), os.X_OK)

pytestmark = [pytest.mark.root, pytest.mark.ipvs,
              pytest.mark.skipif(_PROBLEM is not None and _LANE,
                                 reason=f"{_PROBLEM} (scripts/test runs them through scripts/kernel-lane -m ipvs)")]

WANTED = {"client", "web-2", "web", "local", "nobody", "typo", "wrong-port", "sick"}


@pytest.fixture(scope="module")
def c():
    # without the coredns add-on: its two replicas are most of a bring-up under emulation, and
    # nothing here resolves a name
    yield from settled("trcipvs", "ipvs", [m for m in MANIFESTS if m["metadata"]["name"] in WANTED],
                       hairpinMode="hairpin-veth", addons=[])


def _vip(c, name):
    with c.api() as api:
        return api.get("Service", "default", name)["spec"]["clusterIP"]


def _ipvs_step(res, netns):
    steps = [s for s in res.steps if s.kind == "ipvs" and s.netns == netns]
    assert steps, "no IPVS step in the trace:\n" + explain.table(res)
    return steps[0]


def test_trace_clusterip_across_nodes_shows_the_ipvs_connection(c):
    res = trace(c, "pod/client", "service/web")
    shown = explain.table(res)
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2", shown
    n1, n2 = c.plan.node("node1").netns, c.plan.node("node2").netns
    client, web2 = c.pod("client").ip, c.pod("web-2").ip
    # the real server IPVS gave this client socket, on the client's node
    conn = _ipvs_step(res, n1).rule
    assert re.fullmatch(rf"TCP {re.escape(client)}:\d+ -> {re.escape(_vip(c, 'web'))}:80 -> "
                        rf"{re.escape(web2)}:8080 \S+ \d+s", conn), conn
    ct = next(s for s in res.steps if s.kind == "conntrack" and s.netns == n1)
    assert f"reply {web2}:8080 -> {client}" in ct.rule and "dnat" in ct.verdict, shown
    vx = next(s for s in res.steps if s.kind == "vxlan")
    assert f"> {c.plan.node('node2').ip} udp/8472" in vx.rule, shown
    order = list(dict.fromkeys(s.netns for s in res.steps if s.kind == "rule" and not s.packet["reply"]))
    assert order == [c.pod("client").netns, n1, n2, c.pod("web-2").netns], shown
    assert res.result["detail"].startswith(f"client seen as {client}:"), "ClusterIP traffic from a pod is not masqueraded"
    _no_trace_tables(c)


def test_trace_nodeport_from_outside_is_masqueraded(c):
    res = trace(c, "external/client", "service/web/nodePort@node1")
    shown = explain.table(res)
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2", shown
    n1 = c.plan.node("node1")
    ext = c.plan.externals[0].ip
    with c.api() as api:
        node_port = api.get("Service", "default", "web")["spec"]["ports"][0]["nodePort"]
    conn = _ipvs_step(res, n1.netns).rule
    assert re.fullmatch(rf"TCP {re.escape(ext)}:\d+ -> {re.escape(n1.ip)}:{node_port} -> "
                        rf"{re.escape(c.pod('web-2').ip)}:8080 \S+ \d+s", conn), conn
    # upstream's KUBE-NODE-PORT marks it for masquerade (KUBE-MARK-MASQ), POSTROUTING SNATs it
    assert any(s.netns == n1.netns and re.search(r"0x0*4000", s.rule) for s in res.steps if s.kind == "rule"), shown
    ct = next(s for s in res.steps if s.kind == "conntrack" and s.netns == n1.netns)
    assert "snat" in ct.verdict and "dnat" in ct.verdict, shown
    assert ext not in res.result["detail"], "the backend saw the node, not the client"
    _no_trace_tables(c)


def test_trace_no_endpoint_reject(c):
    """A virtual server without real servers: the kernel answers ICMP port unreachable; the
    trace names that virtual server as what refused the connection."""
    res = trace(c, "pod/client", "service/nobody")
    shown = explain.table(res)
    n1 = c.plan.node("node1").netns
    assert res.result["outcome"] == "rejected" and res.result["netns"] == n1, shown
    assert f"TCP {_vip(c, 'nobody')}:80" in res.result["rule"] and "no real server" in res.result["rule"], shown
    _no_trace_tables(c)


def test_trace_etp_local_on_a_node_without_endpoints_falls_back(c):
    """Where iptables and nftables mode drop (test_troubleshoot), upstream's IPVS proxier gives
    node1's Local-policy NodePort the cluster's endpoints (PR #97081; README, parity
    ``ipvs-etp-local``): the IPVS entry on node1 sends the connection to web-2 on node2, kube-proxy
    does not mark it for masquerade, flannel's rule SNATs it (an outside source to a pod)."""
    res = trace(c, "external/client", "service/local/nodePort@node1")
    shown = explain.table(res)
    n1 = c.plan.node("node1")
    ext, web2 = c.plan.externals[0].ip, c.pod("web-2").ip
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2", shown
    with c.api() as api:
        node_port = api.get("Service", "default", "local")["spec"]["ports"][0]["nodePort"]
    conn = _ipvs_step(res, n1.netns).rule
    assert re.fullmatch(rf"TCP {re.escape(ext)}:\d+ -> {re.escape(n1.ip)}:{node_port} -> "
                        rf"{re.escape(web2)}:8080 \S+ \d+s", conn), conn
    mine = [s for s in res.steps if s.kind == "rule" and s.netns == n1.netns]
    assert not any(re.search(r"0x0*4000", s.rule) for s in mine), shown
    assert any(s.chain == "FLANNEL-POSTRTG" and "masquerade" in s.rule for s in mine), shown
    assert ext not in res.result["detail"], "the backend saw flannel's SNAT, not the client"
    [note] = [n for n in res.notes if "externalTrafficPolicy Local" in n]
    assert note.startswith(f"{n1.netns}: ") and f"{web2} on node2" in note, res.notes
    _no_trace_tables(c)


def test_trace_hairpin(c):
    """web-2 through its own Service: IPVS on node2 sends the translated request out of cni0
    to web-2's port (routed, not hairpinned by the bridge), and KUBE-LOOP-BACK masquerades it."""
    res = trace(c, "pod/web-2", "service/web")
    shown = explain.table(res)
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2", shown
    n2, web2 = c.plan.node("node2").netns, c.pod("web-2")
    conn = _ipvs_step(res, n2).rule
    assert re.fullmatch(rf"TCP {re.escape(web2.ip)}:\d+ -> {re.escape(_vip(c, 'web'))}:80 -> "
                        rf"{re.escape(web2.ip)}:8080 \S+ \d+s", conn), conn
    assert any(s.netns == n2 and s.hook == "postrouting" and s.chain == "KUBE-POSTROUTING" and "masquerade" in s.rule
               for s in res.steps if s.kind == "rule"), shown
    ct = next(s for s in res.steps if s.kind == "conntrack" and s.netns == n2)
    assert "dnat" in ct.verdict and "snat" in ct.verdict, shown
    bridge = next(s for s in res.steps if s.kind == "bridge")
    assert bridge.netns == n2 and web2.host_veth in bridge.rule, shown
    assert any("ipset KUBE-LOOP-BACK" in n for n in res.notes), res.notes
    [hairpin] = [n for n in res.notes if n.startswith("hairpin:")]
    assert "through the node's routing" in hairpin, hairpin
    _no_trace_tables(c)


def _edit_ipvs(c, node, edit):
    """``edit(kernel, batch)`` fills a batch of IPVS requests for ``node``'s netns, which is then
    sent there; the failed requests."""
    def go():
        k = K.IpvsKernel()
        k.open()
        try:
            batch = netlink.Batch()
            edit(k, batch)
            return k.send("genl", batch)
        finally:
            k.close()
    return netns.run_in(c.plan.node(node).netns, go)


def _rules(c, target, node):
    return [f for f in _by_check(doctor(c, target), "rules") if f.subject == f"node/{node}"]


def test_doctor_finds_a_missing_virtual_server_and_wrong_real_servers(c):
    """Someone deletes web's real server and nobody's virtual server on node1 (the IPVS proxy
    does not watch its table): doctor fails node1's rules with the evidence, then passes once
    they are put back."""
    web, nobody = VSKey(_vip(c, "web"), "TCP", 80), VSKey(_vip(c, "nobody"), "TCP", 80)
    web2 = RealServer(c.pod("web-2").ip, 8080)
    before: dict = {}

    def damage(k, batch):
        before.update(k.list_services())
        assert web2 in k.list_dests(web)
        K.del_dest(batch, k.family, web, web2)
        K.del_service(batch, k.family, nobody)

    def repair(k, batch):
        K.add_service(batch, k.family, before[nobody])
        K.add_dest(batch, k.family, web, web2)

    assert _edit_ipvs(c, "node1", damage) == []
    try:
        [f] = _rules(c, "svc/web", "node1")
        assert f.level == "fail" and f.evidence == (f"svc/default/web virtual server {web} has real servers none; "
                                                    f"its EndpointSlices give {web2}"), f
        [g] = _rules(c, "svc/nobody", "node1")
        assert g.level == "fail" and f"no rule for svc/default/nobody (virtual server {nobody})" in g.evidence, g
        [other] = _rules(c, "svc/web", "node2")
        assert other.level == "ok", other
    finally:
        assert _edit_ipvs(c, "node1", repair) == []
    for svc in ("svc/web", "svc/nobody"):
        [ok] = _rules(c, svc, "node1")
        assert ok.level == "ok" and "KUBE-* chains kube-proxy wrote" in ok.evidence, ok


def test_rules_check_compares_the_iptables_rules_the_proxy_applied(c):
    """``rules --check`` in IPVS mode: the node matches the last input its proxy restored (the
    ipsets exist in the check's scratch namespace, so the rules that match them restore there);
    a rule someone deleted is reported, and doctor fails on it, until it is back."""
    from testbed.proxy import status
    assert status.check_rules(c.name, "node/node1") == []
    ns = c.plan.node("node1").netns
    last = ex.run(["iptables", "-t", "filter", "-S", "KUBE-IPVS-FILTER"], netns=ns).stdout.splitlines()[-1]
    assert last.startswith("-A KUBE-IPVS-FILTER ") and "KUBE-IPVS-IPS" in last, last
    args = shlex.split(last)[2:]
    ex.run(["iptables", "-t", "filter", "-D", "KUBE-IPVS-FILTER", *args], netns=ns)
    try:
        [d] = status.check_rules(c.name, "node/node1")
        assert (d.table, d.chain, d.problem) == ("filter", "KUBE-IPVS-FILTER", "rules differ"), d
        assert d.missing == [last] and d.unexpected == [], d
        [f] = _rules(c, "node/node1", "node1")
        assert f.level == "fail" and "KUBE-IPVS-FILTER" in f.evidence, f
    finally:
        ex.run(["iptables", "-t", "filter", "-A", "KUBE-IPVS-FILTER", *args], netns=ns)
    assert status.check_rules(c.name, "node/node1") == []
