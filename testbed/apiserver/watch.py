"""Watch streams shared by every store backend: events, selector filtering, the Watch queue."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Iterator

from .. import jsoncodec
from . import errors

ADDED, MODIFIED, DELETED, ERROR = "ADDED", "MODIFIED", "DELETED", "ERROR"


def clone(o: Any) -> Any:
    """Deep copy of JSON-shaped data (faster than copy.deepcopy)."""
    t = type(o)
    if t is dict:
        return {k: clone(v) for k, v in o.items()}
    if t is list:
        return [clone(v) for v in o]
    return o


class Event:
    """One change. ``obj`` is the stored object (never mutated); the JSON encoding of the
    object is computed once and shared by the WAL and every HTTP watcher."""

    __slots__ = ("type", "obj", "old", "rv", "_json")

    def __init__(self, type: str, obj: dict, old: dict | None, rv: int, obj_json: str | None = None):
        self.type, self.obj, self.old, self.rv, self._json = type, obj, old, rv, obj_json

    def object_json(self) -> str:
        if self._json is None:
            self._json = jsoncodec.dumps(self.obj)
        return self._json

    def encoded(self) -> bytes:
        """The watch-stream line: ``{"type":..., "object":...}\\n``."""
        return ('{"type":"%s","object":%s}\n' % (self.type, self.object_json())).encode()

    def as_dict(self, copy: bool = True) -> dict:
        return {"type": self.type, "object": clone(self.obj) if copy else self.obj}

    def retyped(self, type: str) -> "Event":
        return Event(type, self.obj, self.old, self.rv, self._json)


def filter_event(ev: Event, pred) -> Event | None:
    """The event as seen by a watcher with predicate *pred* (None = everything)."""
    if pred is None:
        return ev
    if ev.type == MODIFIED:
        new_ok = pred(ev.obj)
        old_ok = ev.old is not None and pred(ev.old)
        if new_ok and old_ok:
            return ev
        if new_ok:
            return ev.retyped(ADDED)
        if old_ok:
            return ev.retyped(DELETED)
        return None
    return ev if pred(ev.obj) else None


class Watch:
    """A stream of events from a store. Iterate it (blocks; ends when stopped), or use
    :meth:`get` with a timeout. :meth:`stop` may be called from any thread."""

    def __init__(self, store, kind: str, namespace: str | None, pred,
                 initial: list, limit: int, copy: bool = True, after: int = 0, since: int = 0):
        self._store = store
        self._after = after  # only changes with a higher resourceVersion (for a future RV)
        # every change up to this resourceVersion is queued or was filtered out: what a
        # bookmark may claim (the state *initial* stands for, then each change offered)
        self._seen = since
        self.kind = kind
        self.namespace = namespace
        self._pred = pred
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque = deque(initial)
        self._limit = limit
        self._copy = copy
        self._stopped = False   # no more events will be delivered
        self._ending = False    # an ERROR event is queued; close after it
        self._listener = None   # called (without locks of the watch) when events arrive

    def set_listener(self, fn) -> None:
        """Call ``fn(watch)`` whenever events become available or the watch stops (from the
        thread delivering the events, with a store lock held: it must be quick and must not
        call the store). Used by the HTTP server to multiplex many watches onto one thread."""
        with self._cond:
            self._listener = fn
            pending = bool(self._queue) or self._stopped
        if pending:
            fn(self)

    # called by the store backend for every committed change of this kind
    def deliver(self, ev: Event) -> bool:
        """Queue *ev* if it matches; returns False if the watch should be dropped."""
        if ev.rv <= self._after:
            return True
        if self.namespace is not None and (ev.obj.get("metadata") or {}).get("namespace") != self.namespace:
            self._seen = ev.rv
            return True
        fev = filter_event(ev, self._pred)
        if fev is None:
            self._seen = ev.rv
            return True
        ev = fev
        with self._cond:
            self._seen = ev.rv
            if self._stopped or self._ending:
                return False
            if len(self._queue) >= self._limit:
                self._queue.clear()
                status = errors.status_from_exception(errors.Gone(
                    "watch queue overflow: the watcher fell too far behind; relist"))
                self._queue.append(Event(ERROR, status, None, ev.rv))
                self._ending = True
                self._cond.notify_all()
                listener = self._listener
                ok = False
            else:
                self._queue.append(ev)
                self._cond.notify()
                listener = self._listener
                ok = True
        if listener is not None:
            listener(self)
        return ok

    def fail(self, exc: Exception, rv: int = 0) -> None:
        """End the stream with an ERROR event for *exc* after the events already queued
        (a backend whose history no longer reaches this watch sends Gone this way)."""
        status = errors.status_from_exception(exc)
        with self._cond:
            if self._stopped or self._ending:
                return
            self._queue.append(Event(ERROR, status, None, rv))
            self._ending = True
            self._cond.notify_all()
            listener = self._listener
        if listener is not None:
            listener(self)

    def bookmark_rv(self) -> int | None:
        """The resourceVersion a bookmark may carry now: every change up to it has been taken
        from the queue. None while events are queued (send those first) or once ending."""
        with self._cond:
            if self._queue or self._stopped or self._ending:
                return None
            return self._seen

    @property
    def ending(self) -> bool:
        """No more changes will be queued (stopped, or an ERROR event ends the stream)."""
        return self._stopped or self._ending

    @property
    def closed(self) -> bool:
        return self._stopped

    def get_raw_batch(self, timeout: float | None = None, max_items: int = 256) -> list[Event]:
        """Up to *max_items* queued events; waits up to *timeout* for the first one.
        Returns [] on timeout or when the watch is closed (check :attr:`closed`)."""
        with self._cond:
            if not self._queue and not self._stopped:
                if timeout is None:
                    while not self._queue and not self._stopped:
                        self._cond.wait()
                else:
                    deadline = time.monotonic() + timeout
                    while not self._queue and not self._stopped:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
            if self._stopped:
                return []
            out = []
            while self._queue and len(out) < max_items:
                out.append(self._queue.popleft())
            if self._ending and not self._queue:
                self._stopped = True
        if self._stopped:
            self._store._unregister(self)
        return out

    def get(self, timeout: float | None = None) -> dict | None:
        """The next event, or None on timeout or once the watch is closed. An ERROR event
        (the watcher fell too far behind) is raised as the mapped exception (Gone)."""
        batch = self.get_raw_batch(timeout, 1)
        if not batch:
            return None
        if batch[0].type == ERROR:
            raise errors.exception_from_status(batch[0].obj)
        return batch[0].as_dict(self._copy)

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        ev = self.get()
        if ev is None:
            raise StopIteration
        return ev

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify_all()
            listener = self._listener
        if listener is not None:
            listener(self)
        self._store._unregister(self)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

