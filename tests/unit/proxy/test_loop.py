"""The mode-neutral loop driven through the ``Syncer`` interface alone: a mode that is not
iptables gets full/partial decisions, failure bookkeeping, metrics and events from the loop."""

import json
import threading

import pytest

from testbed.proxy.loop import ProxyLoop
from testbed.proxy.syncer import ProxyConfig, SyncOutcome

from .conftest import NODE, ep, eps, svc


class RecordingSyncer:
    """A mode that records what the loop asked of it and returns scripted outcomes."""

    mode = "recording"

    def __init__(self):
        self.calls: list[tuple[bool, set]] = []
        self.need_full = True
        self.fail_next = False
        self.raise_next = False
        self.lost: str | None = None
        self.closed = False

    @property
    def needs_full_sync(self):
        return self.need_full

    def setup_host(self):
        pass

    def sync(self, state, changes, full, now):
        self.calls.append((full, set(changes.updated_services)))
        if self.raise_next:
            self.raise_next = False
            raise RuntimeError("boom")
        if self.fail_next:
            self.fail_next = False
            self.need_full = True
            return SyncOutcome(False, lines=3, written=1, error="kernel said no", failure_event="it failed",
                               counters={"recording_failures_total": 1})
        self.need_full = False
        return SyncOutcome(True, lines=state.service_count(), written=len(changes.updated_services))

    def force_full_sync(self):
        self.need_full = True

    def sync_failed(self):
        self.need_full = True

    def report(self, state, out, full, duration, conntrack, deleted):
        return f"synced {out.lines}", f"{'full' if full else 'partial'}: {out.lines} services"

    def rules_lost(self):
        return self.lost

    def metrics(self):
        return {"recording": {"calls": len(self.calls)}}

    def close(self):
        self.closed = True


class Clock:
    def __init__(self):
        self.t = 50.0

    def __call__(self):
        return self.t


@pytest.fixture
def loop(tmp_path):
    clock, posted, syncer = Clock(), [], RecordingSyncer()
    cfg = ProxyConfig(cluster="c", node_name=NODE, node_ip="192.168.0.2", metrics_file=str(tmp_path / "m.json"))
    lp = ProxyLoop(cfg, syncer, post_event=posted.append, clock=clock, wall=lambda: 1000.0 + clock.t)
    lp.fake = (syncer, posted, clock)
    yield lp
    lp.events.close()


def add(lp, kind, obj, type_="ADDED"):
    lp.enqueue(kind, {"type": type_, "object": obj})


def test_full_then_partial_with_only_the_changed_services(loop):
    syncer, posted, clock = loop.fake
    add(loop, "Service", svc("a"))
    add(loop, "Service", svc("b", cip="172.30.0.42"))
    assert loop.sync().full
    add(loop, "EndpointSlice", eps("b", "ns1", ep("10.0.0.1")))
    rec = loop.sync()
    assert not rec.full and rec.ok and rec.written_chains == 1
    assert syncer.calls == [(True, {("ns1", "a"), ("ns1", "b")}), (False, {("ns1", "b")})]
    clock.t += loop.cfg.full_sync_period + 1
    assert loop.sync().full                      # the loop's periodic full sync, not the mode's
    loop.events.close()
    assert [e["message"] for e in posted] == ["full: 2 services", "full: 2 services"]


def test_failed_sync_is_retried_and_counted_by_the_loop(loop):
    syncer, posted, clock = loop.fake
    loop.sync()
    add(loop, "Service", svc("a"))
    syncer.fail_next = True
    rec = loop.sync()
    assert not rec.ok and rec.error == "kernel said no" and rec.lines == 3
    assert loop.sched.retry_at == pytest.approx(clock.t + loop.cfg.sync_period)
    clock.t += 2 * loop.cfg.sync_period + 1
    assert not loop.healthy()                    # the failed change still waits
    assert loop.sync().full and loop.healthy()
    with open(loop.cfg.metrics_file) as f:
        m = json.load(f)
    assert m["mode"] == "recording" and m["recording"] == {"calls": 3}
    assert m["sync_failures_total"] == 1 and loop.counters["recording_failures_total"] == 1
    loop.events.close()
    assert [(e["reason"], e["message"]) for e in posted][1] == ("SyncFailed", "it failed")


def test_a_sync_that_raises_leaves_the_mode_needing_a_full_sync(loop):
    syncer, posted, clock = loop.fake
    loop.sync()
    failed = threading.Event()
    syncer.sync_failed = lambda: (setattr(syncer, "need_full", True), failed.set())
    syncer.raise_next = True
    t = threading.Thread(target=loop._loop, daemon=True)
    for kind in ("Service", "EndpointSlice"):
        loop.mark_listed(kind)                   # requests a sync
    t.start()
    assert failed.wait(10)
    loop.stop()
    t.join(10)
    assert syncer.needs_full_sync and loop.sched.retry_at == pytest.approx(clock.t + loop.cfg.sync_period)
    assert loop.sync().full


def test_request_for_a_full_sync_reaches_the_syncer(loop):
    syncer, posted, clock = loop.fake
    loop.sync()
    loop.request_sync(full=True)
    assert loop.sync().full and not loop.sync().full


def test_stop_closes_the_syncer(loop):
    syncer, posted, clock = loop.fake
    loop.stop()
    assert syncer.closed
