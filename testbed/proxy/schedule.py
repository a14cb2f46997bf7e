"""When kube-proxy syncs: upstream's ``BoundedFrequencyRunner`` timing as pure state."""

from __future__ import annotations


class SyncScheduler:
    """Upstream ``BoundedFrequencyRunner``'s timing as pure state (times are monotonic seconds).

    ``request()`` asks for a sync as soon as allowed; ``retry_after(now, d)`` asks for one no
    later than ``now + d``; a sync is also due ``max_interval`` after the previous one. Runs are
    limited by a token bucket (``burst`` tokens, one more every ``min_interval``).
    """

    def __init__(self, min_interval: float, max_interval: float, burst: int = 2, now: float = 0.0):
        self.min_interval = max(0.0, min_interval)
        self.max_interval = max_interval
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self._refilled = now
        self.pending = False
        self.retry_at: float | None = None
        self.last_run: float | None = None

    def request(self) -> None:
        self.pending = True

    def retry_after(self, now: float, interval: float) -> None:
        t = now + interval
        self.retry_at = t if self.retry_at is None else min(self.retry_at, t)

    def _refill(self, now: float) -> None:
        if self.min_interval > 0 and now > self._refilled:
            self.tokens = min(float(self.burst), self.tokens + (now - self._refilled) / self.min_interval)
        self._refilled = max(self._refilled, now)

    def next_run(self, now: float) -> float | None:
        """When the next sync is due (absolute), or None if nothing is scheduled."""
        cands = []
        if self.pending:
            cands.append(now)
        if self.retry_at is not None:
            cands.append(self.retry_at)
        if self.last_run is not None:
            cands.append(self.last_run + self.max_interval)
        if not cands:
            return None
        t = min(cands)
        self._refill(now)
        if self.min_interval > 0 and self.tokens < 1.0:
            t = max(t, now + (1.0 - self.tokens) * self.min_interval)
        return t

    def periodic_due(self, now: float) -> bool:
        return self.last_run is not None and now >= self.last_run + self.max_interval

    def ran(self, now: float) -> None:
        self._refill(now)
        if self.min_interval > 0:
            self.tokens = max(0.0, self.tokens - 1.0)
        self.pending = False
        self.retry_at = None
        self.last_run = now
