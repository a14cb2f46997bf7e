"""The memory store's watch history: the recent events a watch from a resourceVersion replays.

Bounded by count and by age, as upstream's watch cache is: each event is kept at least
``MIN_HISTORY`` deep and, beyond that, ``HISTORY_SECONDS`` (upstream: lowerBoundCapacity 100,
eventFreshDuration 75 s). A burst of large objects (100k endpoints in EndpointSlices) is let go
shortly after it, deletions included, instead of being held until ``limit`` newer events push
it out; a periodic trim does it when no write comes (an idle cluster after a deletion).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Iterator

from .. import heap
from .watch import Event

HISTORY_SECONDS = 75.0
MIN_HISTORY = 100
TRIM_PERIOD = 15.0


class WatchHistory:
    """Events in resourceVersion order; every change with rv > ``floor`` is held. Not locked:
    the store calls it under its own lock (``lock``, also taken by the periodic trim)."""

    def __init__(self, limit: int = 10000, seconds: float | None = HISTORY_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.floor = 0
        self._events: deque[Event] = deque()
        self._at: deque[float] = deque()   # when each event was added
        self._limit = max(1, limit)
        self._seconds = seconds
        self._clock = clock
        self._stop = threading.Event()

    def __len__(self) -> int:
        return len(self._events)

    def __reversed__(self) -> Iterator[Event]:
        return reversed(self._events)

    def append(self, ev: Event) -> None:
        self._events.append(ev)
        self._at.append(self._clock())
        self.trim()

    def trim(self) -> int:
        """Drop what is past the bounds; returns how many events went."""
        h, at = self._events, self._at
        old = None if self._seconds is None else self._clock() - self._seconds
        n = 0
        while len(h) > self._limit or (old is not None and len(h) > MIN_HISTORY and at[0] < old):
            self.floor = h.popleft().rv
            at.popleft()
            n += 1
        return n

    def start_trimming(self, lock: threading.Lock) -> None:
        """Age events out every ``TRIM_PERIOD`` even without writes, and hand the freed heap back
        to the kernel; ``stop()`` ends it."""
        if self._seconds is None:
            return

        def run() -> None:
            while not self._stop.wait(TRIM_PERIOD):
                with lock:
                    dropped = self.trim()
                if dropped:
                    heap.give_back()
        threading.Thread(target=run, name="store-history-trim", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
