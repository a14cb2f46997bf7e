"""``trace`` and ``doctor`` on a real cluster, once per proxy mode this kernel can run.

One cluster per mode: a client on node1, the only web backend on node2, a NodePort Service,
an externalTrafficPolicy Local one (so node1 has no local endpoint), one without endpoints,
and the seeds' mistakes (a selector typo, a wrong targetPort, a pod never Ready). Each trace
sends one real connection; the assertions are on what the kernel reported for it.
"""

from __future__ import annotations

import os
import re
import signal

import pytest
from typer.testing import CliRunner

from testbed import exec as ex
from testbed.cli import app
from testbed.cluster import Cluster
from testbed.proxy import modes
from testbed.troubleshoot.tracer import KERNEL_MODES
from testbed.scenario import parse
from testbed.troubleshoot import doctor, nftrace, trace
from testbed.troubleshoot import tracer

from .netutil import uniq

pytestmark = pytest.mark.root

RUNNABLE = [m for m in modes.NAMES if modes.get(m).problem() is None]
TRACED = [m for m in RUNNABLE if m in KERNEL_MODES]  # userspace: test_trace_userspace.py
HTTP = [{"containerPort": 8080}]
MANIFESTS = [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"role": "client"}},
     "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "testbed/echo", "ports": HTTP}]}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "labels": {"app": "web"}},
     "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "testbed/echo", "ports": HTTP}]}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sick", "labels": {"app": "sick"}},
     "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "testbed/echo", "ports": HTTP,
                                                    "readinessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1}}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
     "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "udp-1", "labels": {"app": "udp"}},
     "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "testbed/echo",
                                                    "ports": [{"containerPort": 5353, "protocol": "UDP"}]}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "udp"},
     "spec": {"selector": {"app": "udp"}, "ports": [{"port": 53, "targetPort": 5353, "protocol": "UDP"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "local"},
     "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
              "ports": [{"port": 81, "targetPort": 8080}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody"},
     "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "typo"},
     "spec": {"selector": {"app": "wbe"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wrong-port"},
     "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 9376}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sick"},
     "spec": {"selector": {"app": "sick"}, "ports": [{"port": 80, "targetPort": 8080}]}},
]


def settled(name: str, mode: str, manifests: list, **spec):
    """A two-node cluster of *manifests* in proxy *mode*, yielded once every proxy has programmed
    every Service (the module fixtures of the trace tests ``yield from`` it)."""
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": uniq(name)},
           "spec": {"nodes": 2, "externals": 1, **spec}, "manifests": manifests}
    cluster = Cluster.up(parse(doc), proxy_mode=mode)
    try:
        from testbed.verify import verify_cluster
        verify_cluster(cluster, parse(doc), None, None, lambda m: None)
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module", params=TRACED)
def c(request):
    yield from settled(f"trc{request.param[:3]}", request.param, MANIFESTS, hairpinMode="hairpin-veth")


def _node(c, name):
    return c.plan.node(name).netns


def _no_trace_tables(c):
    for ns in [n.netns for n in c.plan.nodes] + [p.netns for p in c.pods()] + [e.netns for e in c.plan.externals]:
        tables = ex.run(["nft", "list", "tables"], netns=ns).stdout
        assert nftrace.TABLE_PREFIX not in tables, (ns, tables)


def test_trace_clusterip_across_nodes(c):
    res = trace(c, "pod/client", "service/web")
    assert res.result == {"outcome": "answered", "pod": "web-2", "detail": f"client seen as {res.result['detail'].split()[-1]}"}
    web2 = c.pod("web-2").ip
    n1, n2 = _node(c, "node1"), _node(c, "node2")
    dnat = [s for s in res.steps if s.kind == "rule" and f"dnat to {web2}:8080" in s.rule]
    assert dnat and dnat[0].netns == n1, "DNAT to the backend happens on the client's node"
    assert dnat[0].packet["before"]["ip daddr"] != web2
    kinds = [(s.netns, s.kind) for s in res.steps]
    assert (n1, "conntrack") in kinds and (n1, "vxlan") in kinds and (n2, "bridge") in kinds
    vx = next(s for s in res.steps if s.kind == "vxlan")
    assert f"> {c.plan.node('node2').ip} udp/8472" in vx.rule and "VNI 1" in vx.rule
    ct = next(s for s in res.steps if s.kind == "conntrack" and s.netns == n1)
    assert f"reply {web2}:8080 -> {c.pod('client').ip}" in ct.rule and "dnat" in ct.verdict
    # the request leaves the client, crosses node1, then node2, then reaches web-2
    order = list(dict.fromkeys(s.netns for s in res.steps if s.kind == "rule" and not s.packet["reply"]))
    assert order == [c.pod("client").netns, n1, n2, c.pod("web-2").netns]
    assert res.steps[-1].kind == "answer"
    _no_trace_tables(c)


def test_trace_udp_clusterip(c):
    res = trace(c, "pod/client", "service/udp", protocol="udp")
    assert res.result["outcome"] == "answered" and res.result["pod"] == "udp-1"
    udp1 = c.pod("udp-1").ip
    assert any(f"dnat to {udp1}:5353" in s.rule for s in res.steps if s.kind == "rule")
    ct = next(s for s in res.steps if s.kind == "conntrack" and s.netns == _node(c, "node1"))
    assert ct.rule.startswith("udp ") and f"reply {udp1}:5353" in ct.rule
    _no_trace_tables(c)


def test_trace_nodeport_from_outside_is_masqueraded(c):
    res = trace(c, "external/client", "service/web/nodePort@node1")
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2"
    n1 = _node(c, "node1")
    # iptables-nft prints "mark or 0x4000", the nftables mode "meta mark | 0x00004000"
    assert any(s.netns == n1 and re.search(r"0x0*4000", s.rule) for s in res.steps if s.kind == "rule"), \
        "the masquerade mark"
    assert any("marked 0x4000" in n for n in res.notes)
    ct = next(s for s in res.steps if s.kind == "conntrack" and s.netns == n1)
    assert "snat" in ct.verdict and "dnat" in ct.verdict
    assert c.plan.externals[0].ip not in res.result["detail"], "the backend saw the node, not the client"


def test_trace_etp_local_drops_on_a_node_without_endpoints(c):
    res = trace(c, "external/client", "service/local/nodePort@node1")
    assert res.result["outcome"] == "dropped"
    assert res.result["netns"] == _node(c, "node1") and res.result["rule"], res.result
    assert any("externalTrafficPolicy Local" in n for n in res.notes) or c.plan.proxy_mode != "iptables"
    _no_trace_tables(c)


def test_trace_no_endpoint_reject(c):
    res = trace(c, "pod/client", "service/nobody")
    assert res.result["outcome"] == "rejected" and res.result["netns"] == _node(c, "node1")
    assert "reject" in res.result["rule"]


def test_trace_hairpin(c):
    res = trace(c, "pod/web-2", "service/web")
    assert res.result["outcome"] == "answered" and res.result["pod"] == "web-2"
    bridge = next(s for s in res.steps if s.kind == "bridge")
    assert c.pod("web-2").host_veth in bridge.rule and "hairpin_mode=1" in bridge.rule
    assert any(n.startswith("hairpin:") for n in res.notes)


def test_trace_removes_its_tables_when_sending_fails(c, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("injected")
    monkeypatch.setattr(tracer, "_send", boom)
    with pytest.raises(RuntimeError, match="injected"):
        trace(c, "pod/client", "service/web")
    _no_trace_tables(c)


def _by_check(findings, check):
    return [f for f in findings if f.check == check]


def test_doctor_selector_typo(c):
    [f] = _by_check(doctor(c, "svc/typo"), "selector")
    assert f.level == "fail" and "app=wbe" in f.evidence and "closest" in f.evidence


def test_doctor_wrong_target_port(c):
    [f] = _by_check(doctor(c, "svc/wrong-port"), "target-port")
    assert f.level == "fail" and "targetPort 9376/TCP is not a containerPort of pod web-2" in f.evidence


def test_doctor_not_ready_pod(c):
    findings = doctor(c, "svc/sick")
    [f] = _by_check(findings, "pod-ready")
    assert f.level == "fail" and f.subject == "pod/default/sick" and "not Ready" in f.evidence
    assert _by_check(findings, "endpointslices")[0].level == "fail"


def test_doctor_healthy_service_and_cli_exit_codes(c):
    findings = doctor(c, "svc/web")
    assert not [f for f in findings if f.level != "ok"], findings
    assert {"service", "selector", "pod-ready", "target-port", "endpointslices", "kube-proxy", "rules",
            "hairpin", "arp"} <= {f.check for f in findings}
    runner = CliRunner()
    assert runner.invoke(app, ["doctor", "-c", c.name, "svc/web"]).exit_code == 0
    bad = runner.invoke(app, ["doctor", "-c", c.name, "svc/typo", "-o", "json"])
    assert bad.exit_code == 1 and '"level": "fail"' in bad.output


def test_doctor_dns_resolves_the_service(c, tmp_path):
    """A real cluster DNS: testbed's CoreDNS equivalent as a kube-system pod behind kube-dns."""
    import sys

    from testbed import state
    from testbed.controllers.base import wait_for
    from testbed.proxy import status

    corefile = tmp_path / "Corefile"
    # ready: the endpoint is ready once the server answers from a full view of the API (as CoreDNS)
    corefile.write_text(".:53 {\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa\n}\n")
    api_sock = f"{state.directory(c.name)}/api.sock"
    with c.api() as api:
        api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
        api.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
                   "spec": {"nodeName": "node2", "containers": [{
                       "name": "coredns", "image": "testbed/coredns",
                       "command": [sys.executable, "-m", "testbed.dns", "--corefile", str(corefile), "--api", api_sock],
                       "ports": [{"containerPort": 53, "protocol": "UDP"}],
                       "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1}}]}})
        svc = api.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                         "spec": {"selector": {"k8s-app": "kube-dns"},
                                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}})

        def ready(slices):
            return [s for s in slices if s["metadata"]["labels"].get("kubernetes.io/service-name") == "kube-dns"
                    and any((ep.get("conditions") or {}).get("ready") for ep in s.get("endpoints") or [])]
        slices = wait_for(api, "EndpointSlice", ready, namespace="kube-system", timeout=20)
        web_ip = api.get("Service", "default", "web")["spec"]["clusterIP"]
    status.wait_programmed(c.name, [svc, *slices])
    [f] = _by_check(doctor(c, "svc/web"), "dns")
    assert f.level == "ok" and f.evidence == f"web.default.svc.cluster.local -> {web_ip}", f


def doctor_with_proxy_stopped(c, node: str):
    """doctor's kube-proxy finding for *node* while its proxy is stopped (SIGSTOP); (finding, pid)."""
    from testbed.proxy import status
    pid = int(status.proxy_metrics(c.name)[node]["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        [f] = _by_check(doctor(c, f"node/{node}"), "kube-proxy")
    finally:
        os.kill(pid, signal.SIGCONT)
    return f, pid


def test_doctor_stopped_proxy(c):
    f, pid = doctor_with_proxy_stopped(c, "node2")
    assert f.level == "fail" and "stopped" in f.evidence and f.advice == f"kill -CONT {pid}"
    # doctor asked its healthz over HTTP in node2's netns, and a stopped process answers nothing
    url = f"http://{c.plan.node('node2').ip}:10256/healthz"
    assert f"GET {url}: no answer within" in f.evidence, f.evidence
    from testbed.proxy import status
    with c.api() as api:  # whatever changed while it was stopped, it catches up
        objects = api.list("Service")[0] + api.list("EndpointSlice")[0]
    status.wait_programmed(c.name, objects, nodes=["node2"])
    [ok] = _by_check(doctor(c, "node/node2"), "kube-proxy")
    assert ok.level == "ok" and ok.evidence.endswith(f"GET {url}: 200"), ok


def test_proxy_serves_healthz_and_livez_in_its_node(c):
    """What a user would get with curl inside the node's netns: upstream's JSON."""
    for node in c.plan.nodes:
        res = ex.run(["curl", "-s", "-i", f"http://{node.ip}:10256/healthz"], netns=node.netns)
        head, _, body = res.stdout.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 200") and "Content-Type: application/json" in head, head
        assert re.fullmatch(r'\{"lastUpdated": "[^"]+ \+0000 UTC m=\+[0-9.]+","currentTime": "[^"]+", '
                            r'"nodeEligible": true\}', body), body
        live = ex.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{node.ip}:10256/livez"],
                      netns=node.netns)
        assert live.stdout == "200"


def test_doctor_stale_udp_conntrack_while_the_proxy_is_stopped(c):
    """Last in the module: it deletes udp-1. A UDP flow to it stays in node1's conntrack while
    node1's kube-proxy is stopped (nothing clears it); once it runs again its sync clears it."""
    from testbed.controllers.base import wait_for
    from testbed.proxy import status

    assert trace(c, "pod/client", "service/udp", protocol="udp").result["outcome"] == "answered"
    udp1 = c.pod("udp-1").ip
    pid = int(status.proxy_metrics(c.name)["node1"]["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        with c.api() as api:
            api.delete("Pod", "default", "udp-1", grace_seconds=0)

            def gone(slices):
                mine = [s for s in slices if s["metadata"]["labels"].get("kubernetes.io/service-name") == "udp"]
                addrs = [a for s in mine for ep in s.get("endpoints") or [] for a in ep["addresses"]]
                return mine if mine and udp1 not in addrs else None
            slices = wait_for(api, "EndpointSlice", gone, namespace="default", timeout=10)
        stale = [f for f in doctor(c, "svc/udp") if f.check == "conntrack" and f.subject == "node/node1"]
        assert stale and stale[0].level == "warn" and udp1 in stale[0].evidence, stale
    finally:
        os.kill(pid, signal.SIGCONT)
    status.wait_programmed(c.name, slices, nodes=["node1"])
    [after] = [f for f in doctor(c, "svc/udp") if f.check == "conntrack" and f.subject == "node/node1"]
    assert after.level == "ok", after
