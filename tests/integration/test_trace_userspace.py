"""``trace`` and ``doctor`` in userspace mode, on a real cluster.

The client's connection is REDIRECTed by a portal rule to the node's kube-proxy, which accepts
it and opens its own connection to an endpoint; the trace shows the portal rule the kernel
traced, the proxy's accept and dial as the proxy reported them on its trace socket, then the
second connection through the kernel (VXLAN to node2, the bridge port) and the pod that
answered. Same cluster layout as test_troubleshoot.py.
"""

from __future__ import annotations

import pytest

from testbed.proxy import modes
from testbed.proxy import status
from testbed.troubleshoot import doctor, trace

from .test_troubleshoot import MANIFESTS, _no_trace_tables, doctor_with_proxy_stopped, settled

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(modes.get("userspace").problem() is not None, reason="iptables-restore missing")]


@pytest.fixture(scope="module")
def c():
    yield from settled("trcusr", "userspace", MANIFESTS, hairpinMode="hairpin-veth")


def _node(c, name):
    return c.plan.node(name).netns


def _proxy_steps(res):
    return [s for s in res.steps if s.kind == "proxy"]


def test_trace_clusterip_across_nodes(c):
    res = trace(c, "pod/client", "service/web")
    n1, n2 = _node(c, "node1"), _node(c, "node2")
    web2, client = c.pod("web-2").ip, c.pod("client").ip
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2", res.result
    # 1. the portal rule on the client's node sends the connection to the proxy's listener
    portal = [s for s in res.steps if s.kind == "rule" and "KUBE-PORTALS-CONTAINER" in s.chain]
    assert portal and portal[0].netns == n1 and "redirect to" in portal[0].rule.lower(), portal
    ct = next(s for s in res.steps if s.kind == "conntrack" and s.netns == n1)
    assert "dnat" in ct.verdict and f"-> {client}" in ct.rule
    # 2. the proxy's account: it accepted the client's connection and dialled web-2
    accept, connect = _proxy_steps(res)[:2]
    assert accept.netns == n1 and accept.verdict == "accept" and accept.chain == "default/web:http"
    with c.api() as api:
        svc_ip = api.get("Service", "default", "web")["spec"]["clusterIP"]
    assert f"{client}:" in accept.rule and f"-> {svc_ip}:80" in accept.rule, accept.rule
    assert connect.verdict == "connect" and f"-> {web2}:8080" in connect.rule
    local = connect.packet["after"]["ip saddr"]
    # 3. the proxy's own connection through the kernel: out of node1 over VXLAN, into node2,
    #    through the bridge to web-2, which saw the node, not the client
    i_connect = res.steps.index(connect)
    second = res.steps[i_connect + 1:]
    assert [s for s in second if s.kind == "rule" and s.netns == n1 and s.hook == "output"
            and (s.packet["before"] or {}).get("ip saddr") == local]
    vx = next(s for s in second if s.kind == "vxlan")
    assert vx.netns == n1 and f"> {c.plan.node('node2').ip} udp/8472" in vx.rule
    assert any(s.kind == "bridge" and s.netns == n2 and c.pod("web-2").host_veth in s.rule for s in second)
    assert any(s.kind == "rule" and s.netns == c.pod("web-2").netns for s in second)
    assert res.steps[-1].kind == "answer" and res.result["detail"] == f"client seen as {local}:" \
        f"{connect.packet['after']['tcp sport']}"
    assert any("userspace mode" in n and local in n for n in res.notes), res.notes
    _no_trace_tables(c)


def test_trace_nodeport_from_outside(c):
    res = trace(c, "external/client", "service/web/nodePort@node1")
    n1 = _node(c, "node1")
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2", res.result
    portal = [s for s in res.steps if s.kind == "rule" and "KUBE-NODEPORT-CONTAINER" in s.chain]
    assert portal and portal[0].netns == n1, [s.chain for s in res.steps]
    [accept] = [s for s in _proxy_steps(res) if s.verdict == "accept"]
    ext = c.plan.externals[0].ip
    assert f"{ext}:" in accept.rule and f"-> {c.plan.node('node1').ip}:" in accept.rule
    assert any(s.kind == "vxlan" and s.netns == n1 for s in res.steps)
    assert ext not in res.result["detail"], "the backend saw the node, not the client"
    _no_trace_tables(c)


def test_trace_no_endpoint(c):
    """Upstream's userspace proxier has no REJECT rule: the portal sends the connection to the
    proxy, which accepts it, finds no endpoint and closes it."""
    res = trace(c, "pod/client", "service/nobody")
    n1 = _node(c, "node1")
    assert any(s.kind == "rule" and "KUBE-PORTALS-CONTAINER" in s.chain and s.netns == n1 for s in res.steps)
    verdicts = [s.verdict for s in _proxy_steps(res)]
    assert verdicts == ["accept", "no-endpoints", "close"], verdicts
    assert res.result["outcome"] == "rejected" and res.result["netns"] == n1
    assert res.result["chain"] == "kube-proxy (userspace)" and "closed" in res.result["rule"]
    assert not any(s.kind == "rule" and s.verdict == "reject" for s in res.steps), "no kernel REJECT"
    _no_trace_tables(c)


def test_trace_udp_clusterip(c):
    res = trace(c, "pod/client", "service/udp", protocol="udp")
    assert res.result["outcome"] == "answered" and res.result["pod"] == "udp-1", res.result
    proxy = _proxy_steps(res)
    assert proxy[0].verdict == "accept" and "datagram" in proxy[0].rule
    assert any(s.verdict == "connect" and f"-> {c.pod('udp-1').ip}:5353" in s.rule for s in proxy)
    _no_trace_tables(c)


def _by_check(findings, check):
    return [f for f in findings if f.check == check]


def test_doctor_healthy_then_stopped_proxy(c):
    url = f"http://{c.plan.node('node2').ip}:10256/healthz"
    [ok] = _by_check(doctor(c, "node/node2"), "kube-proxy")
    assert ok.level == "ok" and "userspace" in ok.evidence and ok.evidence.endswith(f"GET {url}: 200"), ok
    f, _ = doctor_with_proxy_stopped(c, "node2")
    assert f.level == "fail" and "stopped (SIGSTOP)" in f.evidence and f"GET {url}: no answer" in f.evidence, f


def test_trace_hairpin_needs_no_hairpin(c):
    """A pod reaching itself through its Service: the proxy's connection comes from the node."""
    res = trace(c, "pod/web-2", "service/web")
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2"
    connect = next(s for s in _proxy_steps(res) if s.verdict == "connect")
    assert connect.netns == _node(c, "node2") and f"-> {c.pod('web-2').ip}:8080" in connect.rule
    assert not any(n.startswith("hairpin:") for n in res.notes)


def test_doctor_finds_the_seeds_mistakes(c):
    [typo] = _by_check(doctor(c, "svc/typo"), "selector")
    assert typo.level == "fail" and "closest: pod" in typo.evidence
    [port] = _by_check(doctor(c, "svc/wrong-port"), "target-port")
    assert port.level == "fail" and "9376" in port.evidence
    [sick] = _by_check(doctor(c, "svc/sick"), "pod-ready")
    assert sick.level == "fail" and "last probe:" in sick.evidence and "9999" in sick.evidence, sick


def test_doctor_sees_no_stale_udp_entry_in_the_proxys_portal(c):
    """The portal's conntrack entries point at the node's own address (REDIRECT to the proxy):
    not an endpoint, and not stale either."""
    assert trace(c, "pod/client", "service/udp", protocol="udp").result["outcome"] == "answered"
    found = _by_check(doctor(c, "svc/udp"), "conntrack")
    assert found and all(f.level == "ok" for f in found), found


def test_trace_udp_without_endpoints_is_dropped_by_the_proxy(c):
    with c.api() as api:
        svc = api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "quiet"},
                         "spec": {"selector": {"app": "nobody"},
                                  "ports": [{"port": 53, "targetPort": 5353, "protocol": "UDP"}]}})
    status.wait_programmed(c.name, [svc])
    res = trace(c, "pod/client", "service/quiet", protocol="udp")
    assert [s.verdict for s in _proxy_steps(res)][:2] == ["accept", "no-endpoints"], res.steps
    assert res.result["outcome"] == "dropped" and res.result["netns"] == _node(c, "node1"), res.result
    assert res.result["chain"] == "kube-proxy (userspace)"
    _no_trace_tables(c)


def test_trace_etp_local_is_not_dropped_in_userspace_mode(c):
    """Upstream's userspace proxy ignored externalTrafficPolicy: Local; the trace says so."""
    res = trace(c, "external/client", "service/local/nodePort@node1")
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2", res.result
    assert any(n.startswith("userspace mode ignores spec.externalTrafficPolicy") for n in res.notes), res.notes


def test_cli_json_has_the_proxys_steps(c):
    import json

    from typer.testing import CliRunner

    from testbed.cli import app

    out = CliRunner().invoke(app, ["trace", "-c", c.name, "pod/client", "service/web", "-o", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    proxy = [s for s in doc["steps"] if s["kind"] == "proxy"]
    assert [s["verdict"] for s in proxy] == ["accept", "connect"]
    assert {"netns", "interface", "table", "chain", "rule", "verdict", "packet"} <= set(proxy[0])
    assert doc["result"]["outcome"] == "answered" and doc["result"]["pod"] == "web-2"
