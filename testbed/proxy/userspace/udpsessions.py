"""The UDP proxy's per-client session table (upstream ``ClientCache`` + the read deadline of
``proxyClient``): one backend socket per client address, closed after ``idle_timeout`` seconds
without a packet in either direction. Pure bookkeeping; the clock is injected."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

S = TypeVar("S")
Addr = tuple[str, int]


@dataclass
class _Entry(Generic[S]):
    session: S
    last_active: float


class UdpSessions(Generic[S]):
    def __init__(self, idle_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        if idle_timeout <= 0:
            raise ValueError(f"udp idle timeout must be > 0 seconds, got {idle_timeout}")
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._entries: dict[Addr, _Entry[S]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, client: Addr) -> S | None:
        """The client's session, marked active (a packet from the client)."""
        e = self._entries.get(client)
        if e is None:
            return None
        e.last_active = self._clock()
        return e.session

    def add(self, client: Addr, session: S) -> None:
        self._entries[client] = _Entry(session, self._clock())

    def touch(self, client: Addr) -> None:
        """A reply went to the client: the session stays open."""
        e = self._entries.get(client)
        if e is not None:
            e.last_active = self._clock()

    def remove(self, client: Addr) -> S | None:
        e = self._entries.pop(client, None)
        return e.session if e else None

    def expire(self) -> list[S]:
        """Remove and return the sessions idle for at least ``idle_timeout``."""
        now = self._clock()
        gone = [c for c, e in self._entries.items() if now - e.last_active >= self.idle_timeout]
        return [self._entries.pop(c).session for c in gone]

    def next_deadline(self) -> float | None:
        """When the next session would expire (clock time), or None if there is none."""
        if not self._entries:
            return None
        return min(e.last_active for e in self._entries.values()) + self.idle_timeout

    def drain(self) -> list[S]:
        out = [e.session for e in self._entries.values()]
        self._entries.clear()
        return out
