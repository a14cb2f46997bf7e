"""Probe scheduling, thresholds and restart back-off (testbed.kubelet.prober; no root, no network)."""

from __future__ import annotations

import sys

from testbed.kubelet import prober
from testbed.kubelet.prober import BackOff, ProbeScheduler, ProbeSpec, ProbeState


def spec(kind="readiness", **kw):
    probe = {"httpGet": {"path": "/readyz", "port": 8080}, **kw}
    return ProbeSpec.of(kind, probe)


def test_probe_spec_defaults_and_fields():
    s = ProbeSpec.of("liveness", {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 2, "periodSeconds": 1,
                                  "timeoutSeconds": 3, "failureThreshold": 2})
    assert (s.action, s.initial_delay, s.period, s.timeout, s.success_threshold, s.failure_threshold) == \
        ("tcpSocket", 2, 1, 3, 1, 2)
    assert ProbeSpec.of("readiness", None) is None
    assert ProbeSpec.of("readiness", {"periodSeconds": 1}) is None
    d = spec()
    assert (d.period, d.timeout, d.success_threshold, d.failure_threshold) == (10, 1, 1, 3)


def test_scheduler_runs_each_probe_at_initial_delay_then_every_period():
    s = ProbeScheduler()
    s.add("a", 100.0, spec(initialDelaySeconds=5, periodSeconds=10))
    s.add("b", 100.0, spec(periodSeconds=3))
    assert s.next_due() == 100.0
    assert s.due(99.9) == []
    assert s.due(100.0) == ["b"]
    assert s.next_due() == 103.0
    assert s.due(105.0) == ["b", "a"]          # b at 103, a at 105 (in due order)
    assert s.next_due() == 106.0
    runs = []
    for t in range(106, 131):
        runs += [(t, p) for p in s.due(float(t))]
    assert [t for t, p in runs if p == "a"] == [115, 125]
    assert [t for t, p in runs if p == "b"] == [106, 109, 112, 115, 118, 121, 124, 127, 130]


def test_scheduler_remove_is_lazy_and_no_catch_up_burst():
    s = ProbeScheduler()
    s.add("a", 0.0, spec(periodSeconds=1))
    s.add("b", 0.0, spec(periodSeconds=1))
    s.remove("a")
    assert len(s) == 1 and "a" not in s
    assert s.due(0.0) == ["b"]
    assert s.due(10.5) == ["b"]                # a stall of 10 periods runs it once
    assert s.next_due() == 11.5


def test_scheduler_scales_to_many_probes():
    s = ProbeScheduler()
    for i in range(10000):
        s.add(i, 0.0, spec(periodSeconds=10, initialDelaySeconds=i % 10))
    assert len(s.due(0.0)) == 1000
    assert len(s.due(9.0)) == 9000
    assert len(s.due(10.0)) == 1000


def test_probe_state_thresholds():
    r = ProbeState(spec(successThreshold=2, failureThreshold=3))
    assert r.result is False                      # readiness starts as failure
    assert r.observe(True) is False and r.result is False
    assert r.observe(True) is True and r.result is True
    assert not r.observe(False) and not r.observe(False) and r.result is True
    assert r.observe(False) is True and r.result is False
    assert not r.observe(True) and r.observe(True) and r.result
    live = ProbeState(spec("liveness", failureThreshold=1))
    assert live.result is True                    # liveness starts as success
    assert live.observe(False) and live.result is False


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_backoff_first_restart_immediate_then_doubling_to_the_cap():
    clock = Clock()
    b = BackOff(10, 300, clock)
    waits = []
    for _ in range(8):
        finished = clock.t                        # the container just crashed
        w = b.remaining("c", finished)
        waits.append(w)
        clock.t += w
        b.next("c")
        clock.t += 1                              # it runs for a second and crashes again
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300]  # counted from the crash


def test_backoff_expires_and_has_a_per_call_base():
    clock = Clock()
    b = BackOff(10, 300, clock)
    b.next("c", initial=0.5)
    assert b.current("c") == 0.5
    b.next("c", initial=0.5)
    assert b.current("c") == 1.0
    clock.t += 601                                 # 2 * cap without a crash: forgotten
    assert b.remaining("c", clock.t) == 0
    b.next("c")
    assert b.current("c") == 10
    b.forget("c")
    assert b.remaining("c", clock.t) == 0


def test_exec_action_and_ports():
    ok, out = prober.run_exec([sys.executable, "-c", "print('hi')"], 5)
    assert ok and out == "hi"
    ok, msg = prober.run_exec([sys.executable, "-c", "import sys; sys.exit(3)"], 5)
    assert not ok and "exited with 3" in msg
    ok, msg = prober.run_exec([sys.executable, "-c", "import time; time.sleep(5)"], 0.2)
    assert not ok and "timed out" in msg
    ok, msg = prober.run_exec(["/nonexistent/binary"], 1)
    assert not ok
    ctr = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert prober.resolve_port("http", ctr) == 8080 and prober.resolve_port(81, ctr) == 81
    assert prober.resolve_port("nope", ctr) is None
