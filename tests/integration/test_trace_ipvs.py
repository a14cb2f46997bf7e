"""``trace`` in IPVS mode on a real cluster: the kernel's IPVS connection entry is part of the
trace. Marked ``ipvs``: ``scripts/test`` runs it in the kernel lane where this kernel has no
ip_vs (as tests/integration/test_ipvs.py).

The cluster is test_troubleshoot's (client on node1, the only web backend on node2, a NodePort
Service, one without endpoints); each trace sends one real connection.
"""

from __future__ import annotations

import os
import re

import pytest

from testbed.proxy.ipvs.preflight import ipvs_problem
from testbed.troubleshoot import explain, trace

from .test_troubleshoot import MANIFESTS, _no_trace_tables, settled

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROBLEM = ipvs_problem()
_LANE = os.access(os.path.join(REPO, "scripts", "kernel-lane"), os.X_OK)

pytestmark = [pytest.mark.root, pytest.mark.ipvs,
              pytest.mark.skipif(_PROBLEM is not None and _LANE,
                                 reason=f"{_PROBLEM} (scripts/test runs them through scripts/kernel-lane -m ipvs)")]

WANTED = {"client", "web-2", "web", "nobody"}


@pytest.fixture(scope="module")
def c():
    yield from settled("trcipvs", "ipvs", [m for m in MANIFESTS if m["metadata"]["name"] in WANTED])


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
