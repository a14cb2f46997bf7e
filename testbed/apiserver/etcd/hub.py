"""One etcd watch per kind, shared by every watcher of that kind in the store, as the real API
server's watch cache does: each event is decoded once, kept in a bounded history, and handed
to every watcher; a watcher starting inside the history replays from it.

The store's own writes are not waited for on the stream: a write knows its revision and its
event as its transaction returns, and the store keeps a ledger of them (:class:`OwnWrites`).
The hub hands its watchers every revision in order as soon as it knows what each one was: the
next revision after the last it passed is either on its stream or in the ledger (a write of
this kind: delivered now, and skipped when the stream brings it; of another kind: nothing for
this hub). A revision the ledger does not have (another client's write, or one of the store's
whose answer is still on its way) stops it until the stream or the ledger fills it in. So the
events stay in revision order and are each delivered once, and etcd's watch latency, which on a
loaded host reaches 100-200 ms at the 99th percentile (measured with a watcher in a process of its
own), is off the path of the store's own writes.

The hub also keeps the kind's objects as of its last event (a snapshot at its first revision,
then every event, plus the store's own writes as they commit): the state a write starts from,
as upstream's ``GuaranteedUpdate`` takes it from the watch cache. It is only a guess: the
write's transaction compares the key's mod revision, and a stale guess is redone from etcd.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, NamedTuple

from ..watch import DELETED, Event, Watch
from .client import EtcdError, WatchStream

log = logging.getLogger(__name__)


class OwnWrite(NamedTuple):
    kind: str
    key: str     # base64, as on the stream
    event: Event


class OwnWrites:
    """The store's committed writes by revision, kept while some hub may still need them (at
    most *limit*: a hub that needs a dropped one waits for its stream, as for any unknown
    revision)."""

    def __init__(self, limit: int = 4096):
        self._lock = threading.Lock()
        self._by_rev: dict[int, OwnWrite] = {}
        self._order: deque[int] = deque()
        self._limit = limit

    def add(self, rev: int, write: OwnWrite) -> None:
        with self._lock:
            self._by_rev[rev] = write
            self._order.append(rev)
            while len(self._order) > self._limit:
                self._by_rev.pop(self._order.popleft(), None)

    def get(self, rev: int) -> OwnWrite | None:
        return self._by_rev.get(rev)

    def forget_through(self, rev: int) -> None:
        """Every hub is past *rev*: what is older is needed no more (answers arrive out of
        order, so an older one may stay until the limit pushes it out)."""
        with self._lock:
            while self._order and self._order[0] <= rev:
                self._by_rev.pop(self._order.popleft(), None)


class KindHub:
    def __init__(self, kind: str, stream: WatchStream, floor: int, history: int,
                 decode: Callable[[dict], Event | None], on_end: Callable[["KindHub"], None],
                 objects: dict[str, dict] | None = None, *, own: OwnWrites | None = None,
                 api_kind: str = ""):
        """*objects*: the kind's objects at revision *floor* by (base64) etcd key, or None
        when unknown (then :meth:`cached` knows nothing). *own*: the store's ledger of its
        writes, whose writes of *api_kind* are delivered without waiting for the stream."""
        self.kind = kind
        self._own = own
        self._api_kind = api_kind
        # every revision up to here was handed to the watchers or is not of this kind
        self._through = floor
        self._early: set[int] = set()  # delivered from the ledger, not yet seen on the stream
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

    @property
    def through(self) -> int:
        return self._through

    def advance(self) -> None:
        """Deliver what the ledger says about the revisions after the last one passed, up
        to the first it does not know."""
        if self._own is None:
            return
        with self._lock:
            while not self._closed:
                write = self._own.get(self._through + 1)
                if write is None:
                    return
                self._through += 1
                if write.kind == self._api_kind:
                    self._early.add(self._through)
                    self._publish(write.event)

    def _publish(self, ev: Event) -> None:
        """Hand *ev* to the history and every watcher (hub lock held)."""
        self._history.append(ev)
        while len(self._history) > self._history_limit:
            self._floor = self._history.popleft().rv
        dead = [w for w in self._watchers if not w.deliver(ev)]
        for w in dead:
            self._watchers.discard(w)

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
                    rev = int(e["kv"]["mod_revision"])
                    # delivered from the ledger already (checked again below: the ledger may
                    # deliver it meanwhile): not decoded again
                    ev = None if rev in self._early else self._decode(e)
                    with self._lock:
                        if rev in self._early:
                            self._early.difference_update([r for r in self._early if r <= rev])
                            continue
                        if ev is None:
                            continue
                        self._apply(e["kv"]["key"], None if ev.type == DELETED else ev.obj, ev.rv, streamed=True)
                        self._publish(ev)
                        # the stream is complete and in order for this kind: nothing older is missing
                        self._through = max(self._through, rev)
                self.advance()
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
