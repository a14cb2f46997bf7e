"""Probes, hooks and restart back-off for the kubelet (``runtime.py`` runs them).

The pieces here are small and mostly pure, so they are unit-tested without root:

* :class:`ProbeScheduler`: every probe of every pod in one heap of ``(due, seq, id)``; the
  kubelet's single pod loop asks it for what is due and when to wake next (no thread or timer
  per pod: 1,000 probed pods cost one heap and one armed timer).
* :class:`ProbeState`: the result of one probe from its consecutive successes/failures
  (``successThreshold``/``failureThreshold``; readiness starts as failure, liveness as success).
* :class:`BackOff`: upstream's ``flowcontrol.Backoff`` as the kubelet uses it for restarts:
  the first restart is immediate, then ``initial`` (10 s) doubling up to ``cap`` (300 s); an
  entry expires after ``2 * cap`` without crashes.
* :func:`http_get`, :func:`tcp_connect`, :func:`run_exec`: one probe or hook action, run in
  the *calling thread's* network namespace (the kubelet calls them from a worker that has
  entered the pod's namespace; an exec'd child inherits that namespace).
"""

from __future__ import annotations

import heapq
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable

from .. import exec


# --- probe spec ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSpec:
    kind: str                 # "readiness" | "liveness" | "startup"
    action: str               # "httpGet" | "tcpSocket" | "exec" | "grpc"
    handler: dict
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, kind: str, probe: dict | None) -> "ProbeSpec | None":
        if not isinstance(probe, dict):
            return None
        for action in ("httpGet", "tcpSocket", "exec", "grpc"):
            if isinstance(probe.get(action), dict):
                break
        else:
            return None

        def num(k: str, d: float) -> float:
            v = probe.get(k)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else d
        return cls(kind, action, probe[action], num("initialDelaySeconds", 0), max(num("periodSeconds", 10), 0.05),
                   max(num("timeoutSeconds", 1), 0.05), max(int(num("successThreshold", 1)), 1),
                   max(int(num("failureThreshold", 3)), 1))


class ProbeState:
    """Consecutive-result bookkeeping of one probe (upstream ``worker.doProbe``)."""

    __slots__ = ("spec", "result", "successes", "failures", "last_message")

    def __init__(self, spec: ProbeSpec):
        self.spec = spec
        self.result = spec.kind == "liveness"  # readiness/startup: failure until proven
        self.successes = 0
        self.failures = 0
        self.last_message = ""

    def observe(self, ok: bool, message: str = "") -> bool:
        """Record one probe outcome; True when :attr:`result` flipped."""
        self.last_message = message
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.result and self.successes >= self.spec.success_threshold:
                self.result = True
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.result and self.failures >= self.spec.failure_threshold:
                self.result = False
                return True
        return False

    def reset(self) -> None:
        self.result = self.spec.kind == "liveness"
        self.successes = self.failures = 0


class ProbeScheduler:
    """All periodic probes in one heap. ``add(id, start, spec)`` schedules the first run at
    ``start + initialDelaySeconds``; :meth:`due` pops what is due and reschedules it one
    period later (periods count from the scheduled time, not from when a probe finished,
    so a slow probe does not drift the others); :meth:`remove` is O(1) (lazy deletion)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = 0
        self._period: dict[Hashable, float] = {}
        self._live: dict[Hashable, int] = {}  # id -> seq of its current heap entry

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, pid: Hashable) -> bool:
        return pid in self._live

    def add(self, pid: Hashable, start: float, spec: ProbeSpec) -> None:
        self._period[pid] = spec.period
        self._push(pid, start + spec.initial_delay)

    def _push(self, pid: Hashable, due: float) -> None:
        self._seq += 1
        self._live[pid] = self._seq
        heapq.heappush(self._heap, (due, self._seq, pid))

    def remove(self, pid: Hashable) -> None:
        self._live.pop(pid, None)
        self._period.pop(pid, None)

    def _trim(self) -> None:
        h = self._heap
        while h and self._live.get(h[0][2]) != h[0][1]:
            heapq.heappop(h)

    def next_due(self) -> float | None:
        self._trim()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[Hashable]:
        out = []
        while True:
            self._trim()
            if not self._heap or self._heap[0][0] > now:
                return out
            due, _, pid = heapq.heappop(self._heap)
            out.append(pid)
            nxt = due + self._period[pid]
            if nxt <= now:  # we fell behind (a stall): do not fire a burst of catch-up runs
                nxt = now + self._period[pid]
            self._push(pid, nxt)


# --- restart back-off ---------------------------------------------------------------------


@dataclass
class _Entry:
    backoff: float
    last_update: float


@dataclass
class BackOff:
    """``flowcontrol.Backoff`` (kubelet: 10 s initial, 300 s cap). Times are monotonic seconds."""

    initial: float = 10.0
    cap: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict = field(default_factory=dict)

    def _expired(self, e: _Entry, now: float) -> bool:
        return now - e.last_update > 2 * self.cap

    def remaining(self, key: Hashable, since: float) -> float:
        """Seconds still to wait before a restart of *key*, whose last run ended at *since*
        (0: restart now; upstream ``IsInBackOffSince``)."""
        e = self._entries.get(key)
        now = self.clock()
        if e is None or self._expired(e, now):
            return 0.0
        return max(0.0, since + e.backoff - now)

    def next(self, key: Hashable, initial: float | None = None) -> float:
        """Record a restart of *key* now; returns the back-off the following crash will get."""
        now = self.clock()
        base = self.initial if initial is None else initial
        e = self._entries.get(key)
        if e is None or self._expired(e, now):
            e = self._entries[key] = _Entry(base, now)
        else:
            e.backoff = min(e.backoff * 2, self.cap)
            e.last_update = now
        return e.backoff

    def current(self, key: Hashable) -> float:
        e = self._entries.get(key)
        return e.backoff if e else 0.0

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)


# --- actions ------------------------------------------------------------------------------


def resolve_port(port, container: dict) -> int | None:
    """A probe/hook port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
    return None


def http_get(host: str, port: int, path: str = "/", timeout: float = 1.0, headers: dict | None = None) -> tuple[bool, str]:
    """``httpGet``: success for a status in [200, 400)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            hdrs = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.34", "Accept": "*/*",
                    "Connection": "close", **(headers or {})}
            head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
            s.sendall(f"GET {path or '/'} HTTP/1.1\r\n{head}\r\n".encode())
            data = b""
            while b"\r\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return False, f'Get "http://{host}:{port}{path}": {exc}'
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    try:
        code = int(parts[1])
    except (IndexError, ValueError):
        return False, f"malformed HTTP response {line!r}"
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


def tcp_connect(host: str, port: int, timeout: float = 1.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {exc}"


def run_exec(argv: list[str], timeout: float, env: dict | None = None,
             shown: list[str] | None = None) -> tuple[bool, str]:
    """Run *argv* (in the calling thread's netns); success when it exits 0 within *timeout*.
    ``shown``: the command as the probe names it, when *argv* wraps it (in a sandbox)."""
    name = shown if shown is not None else argv
    try:
        p = exec.run(argv, timeout=timeout, env=env, check=False, merge_stderr=True)
    except exec.CommandError as exc:
        if exc.cause is not None:
            return False, f"exec {name[0] if name else ''!r}: {exc.cause}"
        return False, f"command {name!r} timed out after {timeout:g}s"
    text = p.stdout.strip()
    if p.returncode == 0:
        return True, text
    return False, f"command {name!r} exited with {p.returncode}: {text[-200:]}"
