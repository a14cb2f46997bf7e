"""The proxy loop with the iptables syncer and fake host access: scheduling, full/partial syncs,
restore failures, takeover after a restart, conntrack hand-off, events, metrics."""

import json
import logging

import pytest

from testbed.proxy import apply
from testbed.proxy.events import make_event
from testbed.proxy.iptables.syncer import IptablesSyncer
from testbed.proxy.loop import ProxyLoop
from testbed.proxy.metrics import Summary
from testbed.proxy.schedule import SyncScheduler
from testbed.proxy.syncer import ProxyConfig

from .conftest import NODE, ep, eps, svc


# ----------------------------------------------------------------------------- scheduler

def test_scheduler_burst_then_rate_limited():
    s = SyncScheduler(min_interval=1.0, max_interval=3600, burst=2, now=0.0)
    assert s.next_run(0.0) is None
    s.request()
    assert s.next_run(0.0) == 0.0
    s.ran(0.0)
    s.request()
    assert s.next_run(0.01) == 0.01          # second token of the burst
    s.ran(0.01)
    s.request()
    t = s.next_run(0.02)
    assert t == pytest.approx(0.02 + 0.98)    # one token refills in min_interval
    s.request()                               # more requests coalesce into the same run
    assert s.next_run(0.5) == pytest.approx(t)
    s.ran(t)
    assert s.next_run(t + 0.1) == pytest.approx(t + 3600)   # nothing pending: periodic only


def test_scheduler_no_min_interval():
    s = SyncScheduler(min_interval=0, max_interval=10, now=0.0)
    for i in range(5):
        s.request()
        assert s.next_run(float(i)) == float(i)
        s.ran(float(i))


def test_scheduler_retry_and_periodic():
    s = SyncScheduler(min_interval=0.1, max_interval=60, now=0.0)
    s.request()
    s.ran(0.0)
    s.retry_after(0.0, 30)
    assert s.next_run(1.0) == 30
    s.retry_after(1.0, 50)                    # the earlier retry wins
    assert s.next_run(1.0) == 30
    s.ran(30)
    assert s.next_run(31) == 90
    assert not s.periodic_due(89) and s.periodic_due(90)


def test_summary():
    m = Summary()
    for v in (0.002, 0.004, 0.5):
        m.observe(v)
    d = m.to_dict()
    assert d["count"] == 3 and d["max"] == 0.5 and d["min"] == 0.002 and d["last"] == 0.5
    assert d["buckets"]["0.002"] == 1 and d["buckets"]["0.004"] == 2 and d["buckets"]["+Inf"] == 3
    assert d["p50"] == 0.004


def test_make_event():
    ev = make_event("node1", "Synced", "full sync", wall=1704164645.5)
    assert ev["kind"] == "Event" and ev["reason"] == "Synced" and ev["type"] == "Normal"
    assert ev["source"] == {"component": "kube-proxy", "host": "node1"}
    assert ev["involvedObject"]["kind"] == "Node" and ev["involvedObject"]["name"] == "node1"
    assert ev["firstTimestamp"] == "2024-01-02T03:04:05Z"
    assert make_event("n", "SyncFailed", "x", warning=True)["type"] == "Warning"


# ----------------------------------------------------------------------------- the runner

class FakeIptables:
    def __init__(self, save=""):
        self.saved = save
        self.restores: list[str] = []
        self.fail_next: str | None = None
        self.saves = 0

    def save(self):
        self.saves += 1
        return self.saved

    def restore(self, text):
        self.restores.append(text)
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            return 1, err
        return 0, ""

    def has_canary(self):
        return True


class FakeCleaner:
    def __init__(self):
        self.calls = []

    def clear(self, filters):
        self.calls.append(list(filters))
        return len(filters)


class FakeHealth:
    def __init__(self):
        self.ports, self.counts = {}, {}

    def sync_services(self, ports):
        self.ports = dict(ports)

    def sync_endpoints(self, counts):
        self.counts = dict(counts)

    def close(self):
        pass


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def proxy(tmp_path):
    ipt, cleaner, health, posted, clock = FakeIptables(), FakeCleaner(), FakeHealth(), [], Clock()
    cfg = ProxyConfig(cluster="c", node_name=NODE, node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8",
                      metrics_file=str(tmp_path / "m.json"), min_sync_period=0.1)
    syncer = IptablesSyncer(cfg, iptables=ipt, random_fully=True, be_liberal=False, clock=clock)
    r = ProxyLoop(cfg, syncer, cleaner=cleaner, health=health, post_event=posted.append,
                  clock=clock, wall=lambda: 1000.0 + clock.t)
    r.fake = (ipt, cleaner, health, posted, clock)
    yield r
    r.events.close()


def add(r, kind, obj, type_="ADDED", arrived=None):
    r.enqueue(kind, {"type": type_, "object": obj}, arrived=arrived)


def metrics(r):
    with open(r.cfg.metrics_file) as f:
        return json.load(f)


def test_first_sync_waits_for_both_lists(proxy):
    add(proxy, "Service", svc("svc1"))
    assert proxy.sched.next_run(0) is None
    proxy.mark_listed("Service")
    assert proxy.sched.next_run(0) is None
    proxy.mark_listed("EndpointSlice")
    assert proxy.sched.next_run(proxy.clock()) == proxy.clock()


def test_full_then_partial(proxy):
    ipt, cleaner, health, posted, clock = proxy.fake
    ipt.saved = "*nat\n:KUBE-SVC-STALESTALESTALE1 - [0:0]\n:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]\nCOMMIT\n"
    add(proxy, "Service", {**svc("svc1"), "metadata": {"namespace": "ns1", "name": "svc1", "resourceVersion": "7"}})
    add(proxy, "EndpointSlice", eps("svc1", "ns1", ep("10.0.0.1")))
    rec = proxy.sync()
    assert rec.full and rec.ok and ipt.saves == 1
    text = ipt.restores[-1]
    # stale chains from the previous process are deleted, jump rules and canaries are added
    assert "-X KUBE-SVC-STALESTALESTALE1\n" in text and "-X KUBE-SEP-AAAAAAAAAAAAAAAA\n" in text
    assert text.startswith("*mangle\n:KUBE-PROXY-CANARY")
    assert "-I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n" in text
    m = metrics(proxy)
    assert m["syncs_total"] == 1 and m["full_syncs_total"] == 1 and m["last_sync"]["ok"]
    assert m["applied_resource_versions"] == {"Service": "7"}
    assert m["services"] == 1 and m["endpoints"] == 1
    proxy.events.close()
    assert [e["reason"] for e in posted] == ["Synced"]

    clock.t += 1
    add(proxy, "EndpointSlice", eps("svc1", "ns1", ep("10.0.0.1"), ep("10.0.0.2")), "MODIFIED")
    rec = proxy.sync()
    assert not rec.full and rec.ok and ipt.saves == 1       # no iptables-save on partial syncs
    assert "-I " not in ipt.restores[-1] and "*mangle" not in ipt.restores[-1]
    assert metrics(proxy)["partial_syncs_total"] == 1
    assert len(posted) == 1                                  # no event for partial syncs


def test_restore_failure_keeps_state_and_forces_full(proxy, caplog):
    ipt, cleaner, health, posted, clock = proxy.fake
    add(proxy, "Service", svc("svc1"))
    proxy.sync()
    clock.t += 1
    add(proxy, "EndpointSlice", eps("svc1", "ns1", ep("10.0.0.1")))
    ipt.fail_next = "iptables-restore: line 3 failed: No chain/target/match by that name.\n"
    with caplog.at_level(logging.ERROR, logger="testbed.proxy"):
        rec = proxy.sync()
    assert not rec.ok and not rec.full and rec.error_line == 3
    bad = ipt.restores[-1].split("\n")[2]
    assert f"offending input line 3: {bad}" in caplog.text
    assert "=> 3: " in caplog.text
    assert proxy.sched.retry_at == pytest.approx(clock.t + proxy.cfg.sync_period)
    assert not proxy.healthy() or proxy.cfg.sync_period > 0     # pending changes kept
    m = metrics(proxy)
    assert m["sync_failures_total"] == 1 and m["partial_restore_failures_total"] == 1
    assert m["last_sync"]["error_line"] == 3
    clock.t += 1
    rec = proxy.sync()
    assert rec.full and rec.ok
    assert "KUBE-SEP-" in ipt.restores[-1]                      # the lost change is in the full sync
    proxy.events.close()
    assert [e["reason"] for e in posted] == ["Synced", "SyncFailed", "Synced"]
    assert posted[1]["type"] == "Warning" and "line 3" in posted[1]["message"]


def test_unhealthy_when_changes_wait_too_long(proxy):
    ipt, cleaner, health, posted, clock = proxy.fake
    proxy.sync()
    add(proxy, "Service", svc("svc1"))
    assert proxy.healthy()
    clock.t += 2 * proxy.cfg.sync_period + 1
    assert not proxy.healthy()
    proxy.sync()
    assert proxy.healthy()


def test_conntrack_cleanup_after_successful_sync_only(proxy):
    ipt, cleaner, health, posted, clock = proxy.fake
    dns = svc("dns", cip="172.30.0.10", ports=(("dns", 53, "UDP", 0),))
    add(proxy, "Service", dns)
    add(proxy, "EndpointSlice", eps("dns", "ns1", ep("10.0.0.1"), ports=(("dns", 5353, "UDP"),)))
    proxy.sync()
    assert [(f.orig_dst, f.orig_dport) for f in cleaner.calls[-1]] == [("172.30.0.10", 53)]   # 0 -> 1
    add(proxy, "EndpointSlice", eps("dns", "ns1", ep("10.0.0.2"), ports=(("dns", 5353, "UDP"),)), "MODIFIED")
    ipt.fail_next = "iptables-restore: line 1 failed\n"
    n = len(cleaner.calls)
    proxy.sync()
    assert len(cleaner.calls) == n                      # not after a failed restore ...
    proxy.sync()
    assert [(f.orig_dst, f.reply_src) for f in cleaner.calls[-1]] == [("172.30.0.10", "10.0.0.1")]  # ... but later
    assert metrics(proxy)["conntrack_entries_deleted_total"] == 2


def test_health_check_servers_follow_state(proxy):
    ipt, cleaner, health, posted, clock = proxy.fake
    lb = svc("lb", cip="172.30.0.50", ports=(("p80", 80, "TCP", 30080),), type="LoadBalancer",
             externalTrafficPolicy="Local", healthCheckNodePort=30999)
    add(proxy, "Service", lb)
    add(proxy, "EndpointSlice", eps("lb", "ns1", ep("10.0.0.1", NODE)))
    proxy.sync()
    assert health.ports == {("ns1", "lb"): 30999} and health.counts == {("ns1", "lb"): 1}
    add(proxy, "EndpointSlice", eps("lb", "ns1", ep("10.0.0.1", "other")), "MODIFIED")
    proxy.sync()
    assert health.counts == {("ns1", "lb"): 0}
    add(proxy, "Service", lb, "DELETED")
    proxy.sync()
    assert health.ports == {}


def test_network_programming_latency_uses_trigger_annotation(proxy):
    ipt, cleaner, health, posted, clock = proxy.fake
    now = proxy.wall()
    add(proxy, "Service", svc("svc1"), arrived=now - 5)
    sl = eps("svc1", "ns1", ep("10.0.0.1"))
    sl["metadata"]["annotations"] = {apply.TRIGGER_ANNOTATION: "1970-01-01T00:18:19Z"}   # 1099 s
    add(proxy, "EndpointSlice", sl, arrived=now)
    rec = proxy.sync()
    assert rec.programming_latency == pytest.approx(now - 1099.0)   # the newest trigger counts
    clock.t += 1
    rec = proxy.sync()                                               # nothing changed: no sample
    assert rec.programming_latency is None
    assert metrics(proxy)["network_programming_latency_seconds"]["count"] == 1


def test_canary_loss_forces_full_sync(proxy):
    proxy.sync()
    proxy.request_sync(full=True)
    assert proxy.sync().full
    assert not proxy.sync().full


def test_full_sync_period(proxy):
    ipt, cleaner, health, posted, clock = proxy.fake
    assert proxy.sync().full
    clock.t += proxy.cfg.full_sync_period + 1
    assert proxy.sync().full


def test_stop_leaves_rules(proxy):
    ipt, cleaner, health, posted, clock = proxy.fake
    proxy.sync()
    n = len(ipt.restores)
    proxy.stop()
    assert len(ipt.restores) == n
    assert metrics(proxy)["stopped"] is True


# ----------------------------------------------------------------------------- health servers

def test_health_server_200_503_and_body():
    import socket as _s

    from testbed.proxy.healthcheck import ServiceHealthServer, health_body, probe
    with _s.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    healthy = [True]
    hs = ServiceHealthServer("127.0.0.1", healthy=lambda: healthy[0])
    nn = ("ns1", "lb")
    try:
        hs.sync_services({nn: port})
        assert hs.ports() == {nn: port}
        hs.sync_endpoints({nn: 2})
        status, headers, body = probe("127.0.0.1", port)
        assert status == 200 and headers["x-load-balancing-endpoint-weight"] == "2"
        assert headers["content-type"] == "application/json"
        assert body == {"service": {"namespace": "ns1", "name": "lb"}, "localEndpoints": 2,
                        "serviceProxyHealthy": True}
        healthy[0] = False
        assert probe("127.0.0.1", port)[0] == 503
        healthy[0] = True
        hs.sync_endpoints({})
        status, headers, body = probe("127.0.0.1", port)
        assert status == 503 and body["localEndpoints"] == 0
    finally:
        hs.close()
    assert hs.ports() == {}
    assert health_body(nn, 1, True) == ('{\n\t"service": {\n\t\t"namespace": "ns1",\n\t\t"name": "lb"\n\t},'
                                        '\n\t"localEndpoints": 1,\n\t"serviceProxyHealthy": true\n}')


def test_main_refuses_outside_the_node_netns(tmp_path):
    from testbed.proxy.__main__ import check_netns, main
    assert "does not exist" in check_netns("kptest-nope", "node1")
    metrics = tmp_path / "m.json"
    assert main(["--cluster", "kptest-nope", "--node", "node1", "--api", str(tmp_path / "s"),
                 "--node-ip", "10.0.0.1", "--metrics-file", str(metrics)]) == 2
    assert not metrics.exists()
    assert main(["--cluster", "c", "--node", "n", "--api", "x", "--node-ip", "1.2.3.4", "--mode", "ipvs"]) == 2
