"""Keep one kube-proxy process per node running (the daemon's kubelet-like part for kube-proxy).

``ProxySupervisor(start, on_pid)`` watches each proxy through a pidfd (no polling): a proxy that
dies abnormally (killed by a signal, or a non-zero exit other than 2, the status of a refused
configuration) is started again, like a DaemonSet pod
with ``restartPolicy: Always`` -- and the new process takes over the rules its predecessor left
(full syncs without a flush first). A proxy that exits cleanly (status 0, e.g. after SIGTERM from
``testbed down`` or an operator) stays stopped. Restarts of a proxy that keeps dying within
``min_uptime`` back off exponentially (0.5 s doubling, at most ``max_backoff``).

The daemon supervises each node's kubelet the same way (``what="kubelet"``).

Processes adopted from a previous daemon (not our children) are watched the same way; their
exit status is unknown, so ``clean_exit(node, pid)`` decides (the daemon reads the proxy's
metrics file, which a proxy that stopped on request marks ``"stopped": true``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from typing import Callable

from testbed import exec as ex

log = logging.getLogger("testbed.proxy.supervisor")


@dataclass
class _Watched:
    node: str
    pid: int
    fd: int
    proc: ex.Popen | None
    started: float
    failures: int = 0
    restart_at: float | None = None


class ProxySupervisor:
    def __init__(self, start: Callable[[str], ex.Popen], on_pid: Callable[[str, int | None], None],
                 *, clean_exit: Callable[[str, int], bool] | None = None,
                 min_uptime: float = 2.0, max_backoff: float = 10.0, what: str = "kube-proxy"):
        self.what = what
        self._start = start
        self._clean_exit = clean_exit
        self._on_pid = on_pid
        self.min_uptime = min_uptime
        self.max_backoff = max_backoff
        self._mu = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._waiting: dict[str, _Watched] = {}   # exited, restart pending
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self.restarts = 0
        self._thread = threading.Thread(target=self._run, name=f"{what}-supervisor", daemon=True)

    def watch(self, node: str, proc: ex.Popen | None = None, pid: int | None = None) -> None:
        """Supervise a proxy: one we started (``proc``) or one adopted by ``pid``."""
        pid = proc.pid if proc is not None else pid
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = -1
        w = _Watched(node, pid, fd, proc, time.monotonic())
        with self._mu:
            self._watched[node] = w
        if fd < 0:          # already gone: restart it
            self._exited(w, None)
        self._wake()

    def start(self) -> "ProxySupervisor":
        self._thread.start()
        return self

    def pids(self) -> dict[str, int]:
        with self._mu:
            return {n: w.pid for n, w in self._watched.items()}

    def stop(self) -> None:
        """Stop supervising (the proxies keep running with their rules)."""
        self._stop.set()
        self._wake()
        self._thread.join(5)
        with self._mu:
            for w in self._watched.values():
                if w.fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(w.fd)
                if w.proc is not None:
                    with contextlib.suppress(OSError):
                        w.proc.poll()
            self._watched.clear()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _exited(self, w: _Watched, status: int | None) -> None:
        """Decide about an exited proxy (called with the process reaped, if ours)."""
        if w.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(w.fd)
            w.fd = -1
        with self._mu:
            self._watched.pop(w.node, None)
        if status is None and self._clean_exit is not None:
            with contextlib.suppress(Exception):
                if self._clean_exit(w.node, w.pid):
                    status = 0
        if status in (0, 2):   # stopped on request, or refused its configuration (usage error)
            log.log(logging.INFO if status == 0 else logging.ERROR,
                    "%s on %s (pid %d) exited with status %d; not restarting", self.what, w.node, w.pid, status)
            self._on_pid(w.node, None)
            return
        up = time.monotonic() - w.started
        w.failures = w.failures + 1 if up < self.min_uptime else 0
        delay = 0.0 if not w.failures else min(0.5 * 2 ** (w.failures - 1), self.max_backoff)
        log.warning("%s on %s (pid %d) died (%s) after %.1fs; restarting%s", self.what, w.node, w.pid,
                    "unknown status" if status is None else
                    (f"signal {-status}" if status < 0 else f"exit {status}"), up,
                    f" in {delay:.1f}s" if delay else "")
        w.restart_at = time.monotonic() + delay
        with self._mu:
            self._waiting[w.node] = w

    def _restart_due(self) -> float | None:
        """Start the proxies whose restart is due; the seconds until the next one, or None."""
        now = time.monotonic()
        with self._mu:
            due = [w for w in self._waiting.values() if w.restart_at <= now]
            for w in due:
                del self._waiting[w.node]
            later = [w.restart_at - now for w in self._waiting.values()]
        for w in due:
            if self._stop.is_set():
                return None
            try:
                p = self._start(w.node)
            except Exception as exc:  # noqa: BLE001 - e.g. the node netns is being deleted
                log.error("restarting %s on %s failed: %s", self.what, w.node, exc)
                w.failures += 1
                w.restart_at = time.monotonic() + min(0.5 * 2 ** w.failures, self.max_backoff)
                with self._mu:
                    self._waiting[w.node] = w
                later.append(w.restart_at - time.monotonic())
                continue
            self.restarts += 1
            fd = os.pidfd_open(p.pid)
            nw = _Watched(w.node, p.pid, fd, p, time.monotonic(), w.failures)
            with self._mu:
                self._watched[w.node] = nw
            log.info("%s on %s restarted: pid %d", self.what, w.node, p.pid)
            self._on_pid(w.node, p.pid)
        return min(later) if later else None

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = self._restart_due()
            if self._stop.is_set():
                break
            with self._mu:
                fds = {w.fd: w for w in self._watched.values() if w.fd >= 0}
            try:
                ready, _, _ = select.select([self._wake_r, *fds], [], [], timeout)
            except (OSError, ValueError):
                continue
            for fd in ready:
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 64)
                    continue
                w = fds[fd]
                status = None
                if w.proc is not None:
                    status = w.proc.wait()
                if self._stop.is_set():
                    break
                self._exited(w, status)
