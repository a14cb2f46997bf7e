"""ProxySupervisor: restarts a proxy that died, leaves one that exited cleanly (pidfds, no polling)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from testbed.proxy.supervisor import ProxySupervisor

SLEEPER = [sys.executable, "-c", "import signal, sys, time; "
           "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); print('ready', flush=True); time.sleep(60)"]


def test_restarts_after_a_kill_not_after_a_clean_exit():
    started, events = [], []
    changed = threading.Condition()

    def start(node):
        p = subprocess.Popen(SLEEPER, stdout=subprocess.PIPE)
        started.append(p)
        return p

    def on_pid(node, pid):
        with changed:
            events.append((node, pid))
            changed.notify_all()

    sup = ProxySupervisor(start, on_pid)
    first = start("n1")
    sup.watch("n1", proc=first)
    sup.start()
    try:
        os.kill(first.pid, signal.SIGKILL)
        with changed:
            assert changed.wait_for(lambda: len(events) == 1, timeout=10)
        node, pid = events[0]
        assert node == "n1" and pid == started[-1].pid != first.pid and sup.restarts == 1
        assert sup.pids() == {"n1": pid}
        assert started[-1].stdout.readline() == b"ready\n"  # its SIGTERM handler is installed
        started[-1].send_signal(signal.SIGTERM)           # clean exit: stays stopped
        with changed:
            assert changed.wait_for(lambda: len(events) == 2, timeout=10)
        assert events[1] == ("n1", None) and len(started) == 2 and sup.pids() == {}
    finally:
        sup.stop()
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
