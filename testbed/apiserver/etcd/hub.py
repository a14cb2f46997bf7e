"""One etcd watch per kind, shared by every watcher of that kind in the store, as the real API
server's watch cache does: each event is decoded once, kept in a bounded history, and handed
to every watcher; a watcher starting inside the history replays from it.

The hub also keeps the kind's objects as of its last event (a snapshot at its first revision,
then every event, plus the store's own writes as they commit): the state a write starts from,
as upstream's ``GuaranteedUpdate`` takes it from the watch cache. It is only a guess: the
write's transaction compares the key's mod revision, and a stale guess is redone from etcd.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable

from ..watch import DELETED, Event, Watch
from .client import EtcdError, WatchStream

log = logging.getLogger(__name__)


class KindHub:
    def __init__(self, kind: str, stream: WatchStream, floor: int, history: int,
                 decode: Callable[[dict], Event | None], on_end: Callable[["KindHub"], None],
                 objects: dict[str, dict] | None = None):
        """*objects*: the kind's objects at revision *floor* by (base64) etcd key, or None
        when unknown (then :meth:`cached` knows nothing)."""
        self.kind = kind
        self._stream = stream
        self._decode = decode
        self._on_end = on_end
        self._lock = threading.Lock()
        self._watchers: set[Watch] = set()
        self._history: deque[Event] = deque()
        self._history_limit = max(1, history)
        self._floor = floor  # every change of the kind after this revision is (or will be) seen
        self._closed = False
        # key -> (object, or None once deleted, and the mod revision that says so); a deleted
        # key stays until its DELETE event, so an older event cannot bring it back
        self._objects: dict[str, tuple[dict | None, int]] | None = None
        if objects is not None:
            self._objects = {k: (o, int(o["metadata"]["resourceVersion"])) for k, o in objects.items()}
        stream.set_timeout(None)
        threading.Thread(target=self._run, daemon=True, name=f"etcd-watch-{kind}").start()

    def add(self, w: Watch, start: int) -> bool:
        """Register *w* for the changes after revision *start*: replays what the history has,
        then follows. False if the history does not reach back to *start*."""
        with self._lock:
            if self._closed or start < self._floor:
                return False
            for ev in self._history:
                if ev.rv > start and not w.deliver(ev):
                    return True  # overflowed already; it ends with its ERROR event
            self._watchers.add(w)
            return True

    def forget_through(self, revision: int) -> None:
        """Drop the history up to *revision* (etcd was compacted past it: a watch from there
        gets 410 Gone, as it would from etcd)."""
        with self._lock:
            while self._history and self._history[0].rv <= revision:
                self._history.popleft()
            self._floor = max(self._floor, revision)

    def cached(self, key: str) -> tuple[bool, dict | None]:
        """(known, object): the object at *key* as far as the hub knows (shared: never to be
        modified), None if absent; known is False when the hub keeps no objects."""
        objects = self._objects
        if objects is None or self._closed:
            return False, None
        entry = objects.get(key)
        return True, entry[0] if entry is not None else None

    def committed(self, key: str, obj: dict | None, rev: int) -> None:
        """The store wrote *obj* (None: deleted) at *key* in revision *rev*: known before its
        event arrives, so the next write of it starts from there."""
        with self._lock:
            self._apply(key, obj, rev, streamed=False)

    def _apply(self, key: str, obj: dict | None, rev: int, streamed: bool) -> None:
        if self._objects is None:
            return
        entry = self._objects.get(key)
        if entry is not None and entry[1] > rev:
            return  # known newer already
        if obj is None and streamed:
            self._objects.pop(key, None)  # the stream is in order: nothing older follows
        else:
            self._objects[key] = (obj, rev)

    def remove(self, w: Watch) -> None:
        with self._lock:
            self._watchers.discard(w)

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self) -> None:
        try:
            while True:
                msg = self._stream.next()
                if msg is None or msg.get("canceled"):
                    break
                for e in msg.get("events") or ():
                    ev = self._decode(e)
                    if ev is None:
                        continue
                    with self._lock:
                        self._apply(e["kv"]["key"], None if ev.type == DELETED else ev.obj, ev.rv, streamed=True)
                        self._history.append(ev)
                        while len(self._history) > self._history_limit:
                            self._floor = self._history.popleft().rv
                        dead = [w for w in self._watchers if not w.deliver(ev)]
                        for w in dead:
                            self._watchers.discard(w)
        except EtcdError as e:
            log.warning("etcd watch on %s: %s", self.kind, e)
        finally:
            with self._lock:
                self._closed = True
                watchers, self._watchers = self._watchers, set()
            self._stream.close()
            self._on_end(self)
            for w in watchers:  # the clients watch again from their last resourceVersion
                w.stop()

    def close(self) -> None:
        """End the etcd watch; the hub's watchers are stopped by its thread."""
        self._stream.close()
