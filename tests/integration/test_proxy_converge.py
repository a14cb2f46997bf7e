"""What keeps kube-proxy (iptables mode) converging at scale, against a real iptables-nft in a
scratch node namespace: a burst of changes is restored as one whole table instead of a
quadratic ``--noflush`` restore, a restore past its deadline is killed (nothing committed) and
a full sync follows at once, and a restore child dies with its proxy."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from testbed import netns
from testbed.proxy.iptables import apply
from testbed.proxy.iptables.restore import HostIptables
from testbed.proxy.iptables.syncer import IptablesSyncer
from testbed.proxy.loop import ProxyLoop
from testbed.proxy.syncer import ProxyConfig

from .netutil import uniq

pytestmark = [pytest.mark.root]


@pytest.fixture
def node_ns():
    name = f"tb.{uniq('kpconv')}.node.n1"
    with netns.Runner() as runner:
        runner.run_new(name, lambda: None)
        try:
            yield name, (lambda fn, *a: runner.run_in(name, fn, *a))
        finally:
            netns.delete(name)


def _svc(i):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"s{i}", "namespace": "ns", "resourceVersion": str(i + 1)},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                     "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}}


def _slice(i, n, gen=0):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"s{i}-x", "namespace": "ns", "resourceVersion": str(10_000 + i),
                         "labels": {"kubernetes.io/service-name": f"s{i}"}}, "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.{244 + gen}.{k // 250}.{k % 250 + 1}"], "conditions": {"ready": True}}
                          for k in range(n)],
            "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}]}


def _loop(**kw):
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="172.20.0.2", cluster_cidr="10.0.0.0/8",
                      min_sync_period=0, replace_full_sync=True, skip_unchanged_chains=True, **kw)
    return ProxyLoop(cfg, IptablesSyncer(cfg, random_fully=True, be_liberal=False))


def _sep_chains():
    return {c for c in apply.parse_save(HostIptables().save()).chain_names("nat") if c.startswith("KUBE-SEP-")}


def _burst_then_small(services, endpoints):
    r = _loop(cost_based_full_sync=True)
    for i in range(services):
        r.state.update_service(_svc(i))
        r.state.update_endpoint_slice(_slice(i, endpoints))
    # a foreign rule (flannel's kind) that the whole-table write must carry over
    subprocess.run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.99.0.0/16", "-j", "RETURN"], check=True)
    first = r.sync()
    before = _sep_chains()
    ipt, saves = r.syncer.iptables, []
    ipt.save = lambda real=ipt.save: saves.append(1) or real()
    for i in range(services):   # every endpoint replaced: a partial sync would write 2 x all chains
        r.state.update_endpoint_slice(_slice(i, endpoints, gen=1))
    burst = r.sync()
    after = _sep_chains()
    r.state.update_endpoint_slice(_slice(0, endpoints + 1, gen=1))
    small = r.sync()
    nat = apply.parse_save(HostIptables().save()).rules["nat"]
    kept = {"saves": len(saves), "foreign": nat.count("-A POSTROUTING -s 10.99.0.0/16 -j RETURN"),
            "jumps": sum(1 for j in apply.JUMP_RULES if j.table == "nat" and j.saved_form() in nat),
            "jump_lines": sum(1 for rule in nat if "-j KUBE-POSTROUTING" in rule)}
    return first, burst, small, r.counters, before, after, _sep_chains(), r.syncer.renderer.active_chains, kept


def test_burst_is_written_whole_small_change_stays_partial(node_ns):
    _, run = node_ns
    first, burst, small, counters, before, after, final, active, kept = run(_burst_then_small, 40, 250)
    # written whole without reading the kernel again; foreign and jump rules kept, once each
    assert kept == {"saves": 0, "foreign": 1, "jumps": 3, "jump_lines": 1}
    assert first.ok and first.full
    assert burst.ok and not burst.full                     # asked for as a partial sync ...
    assert counters["partial_syncs_written_whole_total"] == 1   # ... written as the whole table
    assert len(before) == len(after) == 10_000 and not before & after   # stale chains gone with it
    assert small.ok and not small.full and small.lines < 1_000   # one endpoint: its Service's chains
    assert counters["partial_syncs_written_whole_total"] == 1
    assert len(final) == 10_001 and {c for c in active if c.startswith("KUBE-SEP-")} == final


def _split_partial(services, endpoints):
    r = _loop(restore_batch_chains=500)
    for i in range(services):
        r.state.update_service(_svc(i))
        r.state.update_endpoint_slice(_slice(i, endpoints))
    first = r.sync()
    before = _sep_chains()
    ipt, opened = r.syncer.iptables, []
    ipt.open_restore = lambda *a, real=ipt.open_restore: opened.append(a) or real(*a)
    for i in range(services // 2):           # new endpoints for half, the rest deleted
        r.state.update_endpoint_slice(_slice(i, endpoints, gen=1))
    for i in range(services // 2, services):
        r.state.delete_service(_svc(i))
        r.state.delete_endpoint_slice(_slice(i, endpoints))
    part = r.sync()
    kernel = apply.parse_save(HostIptables().save())
    return first, part, len(opened), before, _sep_chains(), r.syncer.renderer.active_chains, kernel


def test_large_partial_sync_is_split_and_converges(node_ns):
    _, run = node_ns
    first, part, restores, before, after, active, kernel = run(_split_partial, 20, 100)
    assert first.ok and first.full and len(before) == 2_000
    # 1,010 chains written, 2,010 deleted: 2 restores of whole Services (505 chains each), the
    # rest, 5 of deletions
    assert part.ok and not part.full and part.written_chains == 1_010 and restores == 8
    assert after == {c for c in active if c.startswith("KUBE-SEP-")} and len(after) == 1_000 and not after & before
    svc_chains = {c for c in kernel.chain_names("nat") if c.startswith("KUBE-SVC-")}
    assert svc_chains == {c for c in active if c.startswith("KUBE-SVC-")} and len(svc_chains) == 10


def _deadline_then_resync(services, endpoints):
    r = _loop(restore_deadline=0.2, sync_period=30.0)   # full syncs have no deadline
    for i in range(services):
        r.state.update_service(_svc(i))
        r.state.update_endpoint_slice(_slice(i, endpoints))
    assert r.sync().ok
    before = _sep_chains()
    for i in range(services):
        r.state.update_endpoint_slice(_slice(i, endpoints, gen=1))
    killed = r.sync()
    kept = _sep_chains()
    due = r.sched.next_run(r.clock()) - r.clock()
    resync = r.sync()
    return killed, kept, before, due, resync, _sep_chains(), r.syncer.renderer.active_chains, r.counters


def test_restore_past_deadline_is_killed_and_full_sync_follows(node_ns):
    _, run = node_ns
    # a --noflush restore of 8,000 chains takes seconds with iptables-nft: far past 0.2 s
    killed, kept, before, due, resync, final, active, counters = run(_deadline_then_resync, 20, 200)
    assert not killed.ok and not killed.full and "exceeded its deadline of 0.2 s" in killed.error
    assert counters["restore_deadline_kills_total"] == 1
    assert kept == before                                  # nothing of the killed restore committed
    assert due <= 0.01                                     # the full sync is due now, not in 30 s
    assert resync.ok and resync.full
    assert final == {c for c in active if c.startswith("KUBE-SEP-")} and not final & before


HELPER = textwrap.dedent("""
    import os, sys
    from testbed.proxy.iptables.restore import RestoreStream
    s = RestoreStream(noflush=True)
    # more than the 1 MiB pipe holds, so the write returns only once iptables-restore itself
    # reads (setpriv is gone); no COMMIT: the child then waits for the rest, mid-restore
    rule = "-A KUBE-SEP-HALFWRITTEN -m comment --comment " + "x" * 200 + " -j RETURN\\n"
    s.write("*nat\\n:KUBE-SEP-HALFWRITTEN - [0:0]\\n" + rule * 6_000)
    if os.fork() == 0:
        # a process that keeps the restore's input open, as a proxy's other children may: the
        # proxy's death then closes nothing the child would notice, only the signal stops it
        sys.stdin.read()
        os._exit(0)
    print(s.pid, flush=True)
    sys.stdin.read()
""")


def _gone(pid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return bool(p.poll(timeout * 1000))   # readable when the process exits
    finally:
        os.close(fd)


def test_restore_child_dies_with_its_proxy(node_ns):
    name, _ = node_ns
    proxy = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", HELPER],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(proxy.stdout.readline())
        with open(f"/proc/{child}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0].endswith(b"iptables-restore")
        assert not _gone(child, 0.05)                       # mid-restore
        proxy.send_signal(signal.SIGKILL)
        proxy.wait()
        assert _gone(child, 2.0), "iptables-restore outlived the proxy that started it"
    finally:
        proxy.kill()
        proxy.wait()
        proxy.stdin.close()   # the input holder reads EOF and exits
        if child and not _gone(child, 0):
            os.kill(child, signal.SIGKILL)
            _gone(child, 10.0)
