"""Upstream ``pkg/proxy/userspace/roundrobin.go``: which endpoint the next connection gets.

Pure: the clock and the shuffle are injected, so tests drive time and order.

- Endpoints are ``ip:port`` strings. A changed endpoint list is shuffled and the round-robin
  index reset (upstream ``OnEndpointsUpdate``); an unchanged one (same set, any order) keeps
  both, so an unrelated update does not restart the rotation.
- ClientIP affinity: a client IP keeps its endpoint while fewer than ``ttl`` whole seconds have
  passed since it last used it; each use refreshes it. ``reset_affinity`` (the dialer's retry
  after a refused connection) skips the remembered endpoint and records the new one.
- Affinity records of endpoints that went away are dropped at once; expired ones by
  ``cleanup_stale_sessions``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable

from testbed.proxy.model import DEFAULT_CLIENT_IP_TIMEOUT

AFFINITY_NONE = "None"
AFFINITY_CLIENT_IP = "ClientIP"


class NoEndpointsError(LookupError):
    """The service port has no endpoints (upstream ``ErrMissingEndpoints``)."""


class UnknownServiceError(LookupError):
    """The service port is not known (upstream ``ErrMissingServiceEntry``)."""


@dataclass
class _Affinity:
    endpoint: str
    last_used: float


@dataclass
class _Balancer:
    affinity_type: str = AFFINITY_NONE
    ttl_seconds: int = DEFAULT_CLIENT_IP_TIMEOUT
    endpoints: list[str] = field(default_factory=list)
    index: int = 0
    clients: dict[str, _Affinity] = field(default_factory=dict)

    @property
    def sticky(self) -> bool:
        return self.affinity_type not in ("", AFFINITY_NONE)


class RoundRobin:
    """Per service port: endpoints, rotation index and ClientIP affinity table."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 shuffle: Callable[[list[str]], None] = random.shuffle) -> None:
        self._clock = clock
        self._shuffle = shuffle
        self._services: dict[Hashable, _Balancer] = {}

    def set_service(self, key: Hashable, affinity_type: str = AFFINITY_NONE,
                    ttl_seconds: int = 0) -> None:
        """Create the service port's state, or change its affinity (endpoints are kept)."""
        ttl = ttl_seconds or DEFAULT_CLIENT_IP_TIMEOUT
        state = self._services.get(key)
        if state is None:
            self._services[key] = _Balancer(affinity_type or AFFINITY_NONE, ttl)
            return
        if (state.affinity_type, state.ttl_seconds) != (affinity_type, ttl):
            state.affinity_type, state.ttl_seconds = affinity_type or AFFINITY_NONE, ttl
            state.clients.clear()

    def delete_service(self, key: Hashable) -> None:
        self._services.pop(key, None)

    def services(self) -> list[Hashable]:
        return list(self._services)

    def set_endpoints(self, key: Hashable, endpoints: Iterable[str]) -> bool:
        """Replace the endpoints; True if they changed (then shuffled, index reset)."""
        state = self._services.setdefault(key, _Balancer())
        new = list(endpoints)
        if sorted(new) == sorted(state.endpoints):
            return False
        gone = set(state.endpoints) - set(new)
        state.clients = {ip: a for ip, a in state.clients.items() if a.endpoint not in gone}
        self._shuffle(new)
        state.endpoints = new
        state.index = 0
        return True

    def endpoints(self, key: Hashable) -> list[str]:
        state = self._services.get(key)
        return list(state.endpoints) if state else []

    def has_endpoints(self, key: Hashable) -> bool:
        state = self._services.get(key)
        return bool(state and state.endpoints)

    def next_endpoint(self, key: Hashable, client_ip: str, reset_affinity: bool = False) -> str:
        state = self._services.get(key)
        if state is None:
            raise UnknownServiceError(f"no service entry for {key}")
        if not state.endpoints:
            raise NoEndpointsError(f"no endpoints for {key}")
        now = self._clock()
        if state.sticky and not reset_affinity:
            rec = state.clients.get(client_ip)
            if rec is not None and int(now - rec.last_used) < state.ttl_seconds:
                rec.last_used = now
                return rec.endpoint
        endpoint = state.endpoints[state.index]
        state.index = (state.index + 1) % len(state.endpoints)
        if state.sticky:
            state.clients[client_ip] = _Affinity(endpoint, now)
        return endpoint

    def cleanup_stale_sessions(self) -> int:
        """Drop expired affinity records; how many were dropped."""
        now, dropped = self._clock(), 0
        for state in self._services.values():
            stale = [ip for ip, a in state.clients.items()
                     if int(now - a.last_used) >= state.ttl_seconds]
            for ip in stale:
                del state.clients[ip]
            dropped += len(stale)
        return dropped

    def affinity_of(self, key: Hashable, client_ip: str) -> str | None:
        state = self._services.get(key)
        rec = state.clients.get(client_ip) if state else None
        return rec.endpoint if rec else None
