"""Kubernetes Events about the node from ``kube-proxy`` (``Synced``, ``SyncFailed``)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger("testbed.proxy")


def make_event(node: str, reason: str, message: str, *, warning: bool = False,
               wall: float | None = None, namespace: str = "default") -> dict:
    """A core/v1 Event about the node, from ``kube-proxy`` on ``node``."""
    wall = time.time() if wall is None else wall
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))
    micro = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1e6):06d}Z"
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": namespace, "name": f"kube-proxy.{node}.{time.time_ns():x}"},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node},
        "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
        "source": {"component": "kube-proxy", "host": node},
        "reportingComponent": "kube-proxy", "reportingInstance": f"kube-proxy-{node}",
        "firstTimestamp": ts, "lastTimestamp": ts, "eventTime": micro, "count": 1,
    }


class EventPoster:
    """Posts Events from a daemon thread so a slow API server never delays a sync."""

    def __init__(self, create: Callable[[dict], Any]):
        self._create = create
        self._q: queue.Queue = queue.Queue(maxsize=1000)
        self.posted = 0
        self.failed = 0
        self._t = threading.Thread(target=self._loop, name="events", daemon=True)
        self._t.start()

    def post(self, event: dict) -> None:
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.failed += 1

    def _loop(self) -> None:
        while True:
            ev = self._q.get()
            if ev is None:
                return
            try:
                self._create(ev)
                self.posted += 1
            except Exception as exc:  # noqa: BLE001
                self.failed += 1
                log.warning("posting event %s failed: %s", ev.get("reason"), exc)

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._q.put_nowait(None)
        except queue.Full:
            return
        self._t.join(timeout)
