"""A full sync streamed into a real ``iptables-restore``: the child parses while the
renderer writes, the kernel ends up with exactly the rendered chains, a bad line is reported
against the streamed input and leaves the previous rules in place, and an aborted stream
commits nothing. (iptables-nft reports a parse error at its line, a missing jump target at the
table's ``COMMIT`` line, naming the chain.)"""

from __future__ import annotations

import pytest

from testbed import netns
from testbed.proxy import apply
from testbed.proxy.runner import HostIptables, ProxyConfig, ProxyRunner, RestoreStream

from .netutil import uniq

pytestmark = [pytest.mark.root]


@pytest.fixture
def node_ns():
    name = f"tb.{uniq('kpstream')}.node.n1"
    with netns.Runner() as runner:
        runner.run_new(name, lambda: None)
        try:
            yield lambda fn, *a: runner.run_in(name, fn, *a)
        finally:
            netns.delete(name)


def _svc(i):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"s{i}", "namespace": "ns", "resourceVersion": str(i + 1)},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                     "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}}


def _slice(i):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"s{i}-x", "namespace": "ns", "resourceVersion": str(10_000 + i),
                         "labels": {"kubernetes.io/service-name": f"s{i}"}}, "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"], "conditions": {"ready": True}}],
            "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]}


def _full_sync_then_save(n):
    foreign = "*nat\n:FLANNEL-POSTRTG - [0:0]\n-A POSTROUTING -j FLANNEL-POSTRTG\n" \
              "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN\nCOMMIT\n"
    assert HostIptables().restore(foreign)[0] == 0
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="172.20.0.2", cluster_cidr="10.244.0.0/16",
                      min_sync_period=0, replace_full_sync=True, skip_unchanged_chains=True)
    r = ProxyRunner(cfg, random_fully=True, be_liberal=False)
    for i in range(n):
        r.state.update_service(_svc(i))
        r.state.update_endpoint_slice(_slice(i))
    rec = r.sync()
    return rec, r.renderer.active_chains, HostIptables().save()


def test_streamed_full_sync_installs_every_chain_and_keeps_foreign_rules(node_ns):
    rec, active, saved_text = node_ns(_full_sync_then_save, 600)   # five chunks of 128
    assert rec.ok and rec.full, rec
    saved = apply.parse_save(saved_text)
    nat = saved.chain_names("nat")
    assert active <= nat and len([c for c in nat if c.startswith("KUBE-SVC-")]) == 600
    assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -j RETURN" in saved.rules["nat"]
    assert "-A POSTROUTING -j FLANNEL-POSTRTG" in saved.rules["nat"]
    assert any(r.startswith("-A PREROUTING") and "KUBE-SERVICES" in r for r in saved.rules["nat"])
    kube_services = [r for r in saved.rules["nat"] if r.startswith("-A KUBE-SERVICES ")]
    assert len(kube_services) == 601          # one per Service, then the NodePorts jump


def _bad_line_then_abort():
    ok = RestoreStream(noflush=False)
    ok.write("*nat\n:KUBE-SVC-KEEP - [0:0]\n-A KUBE-SVC-KEEP -j RETURN\nCOMMIT\n")
    assert ok.close() == (0, "")
    bad = RestoreStream(noflush=False)
    bad.write("*nat\n")
    for i in range(2000):                     # more than a pipe's worth before the bad line
        bad.write(f":KUBE-SEP-N{i:05d} - [0:0]\n-A KUBE-SEP-N{i:05d} -j RETURN\n")
    bad.write("-A KUBE-SEP-N00001 -m tcp -p tcp --no-such-option 1 -j RETURN\n")
    for i in range(2000, 80000):              # the child has quit: these meet a closed pipe
        bad.write(f":KUBE-SEP-N{i:05d} - [0:0]\n")
    bad.write("COMMIT\n")
    rc, err = bad.close()
    line = apply.restore_error_line(err)
    after_bad = HostIptables().save()
    aborted = RestoreStream(noflush=False)
    aborted.write("*nat\n:KUBE-SVC-GONE - [0:0]\n")
    aborted.abort()
    return rc, err, line, apply.line_at(bad.text, line) if line else None, after_bad, HostIptables().save()


def test_bad_line_is_reported_against_the_stream_and_nothing_is_committed(node_ns):
    rc, err, line, text, after_bad, after_abort = node_ns(_bad_line_then_abort)
    assert rc != 0 and line is not None, err
    assert "--no-such-option" in text and "--no-such-option" in err
    for saved in (after_bad, after_abort):
        assert ":KUBE-SVC-KEEP" in saved and "-A KUBE-SVC-KEEP -j RETURN" in saved
        assert "KUBE-SEP-N" not in saved and "KUBE-SVC-GONE" not in saved
