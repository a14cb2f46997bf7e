"""The informer-style machinery shared by the controllers.

A :class:`Controller` runs one *pump* thread per watched kind and one worker thread:

* a pump lists its kind, then watches from the list's resourceVersion, re-watches from the
  last seen resourceVersion when a stream ends, and relists on 410 Gone (emitting the
  difference to what it had seen, so deletions missed during the gap are reported). Every
  event is put into the controller's inbox; nothing else happens on the pump thread.
* the worker is the only thread that touches the caches and indexes: it drains the inbox
  (applying every event to the :class:`Cache` of its kind and letting the controller mark
  *keys* dirty), then reconciles each dirty key once. A burst of events therefore
  coalesces into one reconcile per key. Failed keys are retried with exponential backoff
  (a deadline heap; the worker waits on the inbox with the time left until the next one).

The worker blocks on the inbox; the pumps block on their watches; a small stopper thread
blocks on the stop event and, when it is set, stops the watches and wakes the worker.
The store may be a :class:`~testbed.apiserver.memory.MemoryStore` or an
:class:`~testbed.apiserver.client.ApiClient` (same methods).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Hashable, Iterable

from testbed.apiserver import errors as api_errors

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
_SYNCED = "SYNCED"

Key = tuple  # (namespace, name); namespace "" for cluster-scoped kinds


def key_of(obj: dict) -> Key:
    m = obj.get("metadata") or {}
    return (m.get("namespace") or "", m.get("name") or "")


def _rv(obj: dict | None) -> int | None:
    if obj is None:
        return None
    v = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class Cache:
    """Latest known objects of one kind by (namespace, name).

    Objects may be shared with the store (watch with ``copy=False``): never modify them.
    :meth:`apply` ignores events older than what the cache holds, which makes the
    controller's write-through (:meth:`written` after a create/update, :meth:`forget`
    after a delete) safe against the watch events of those writes arriving later."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict] = {}
        self._tombstones: set[Key] = set()

    def get(self, key: Key) -> dict | None:
        return self.objects.get(key)

    def __len__(self) -> int:
        return len(self.objects)

    def values(self) -> Iterable[dict]:
        return self.objects.values()

    def apply(self, type: str, obj: dict) -> tuple[dict | None, dict | None] | None:  # noqa: A002
        """Apply a watch event; returns ``(old, new)`` (new None = deleted) or None when
        the event changes nothing (stale, or our own write already applied)."""
        k = key_of(obj)
        old = self.objects.get(k)
        if type == DELETED:
            self._tombstones.discard(k)
            if old is None:
                return None
            r_old, r_new = _rv(old), _rv(obj)
            if r_old is not None and r_new is not None and r_new < r_old:
                return None  # a delete of an older incarnation
            del self.objects[k]
            return old, None
        if k in self._tombstones:
            return None  # we deleted it; this is an older event
        if old is not None:
            r_old, r_new = _rv(old), _rv(obj)
            if r_old is not None and r_new is not None and r_new <= r_old:
                return None
        self.objects[k] = obj
        return old, obj

    def written(self, obj: dict) -> tuple[dict | None, dict]:
        k = key_of(obj)
        self._tombstones.discard(k)
        old = self.objects.get(k)
        self.objects[k] = obj
        return old, obj

    def forget(self, key: Key) -> dict | None:
        old = self.objects.pop(key, None)
        if old is not None:
            self._tombstones.add(key)
        return old


class _Inbox:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: deque = deque()
        self._closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def take_all(self, timeout: float | None) -> list | None:
        """Everything queued (waits up to *timeout* for the first item); None once closed."""
        with self._cond:
            if not self._items and not self._closed and (timeout is None or timeout > 0):
                self._cond.wait(timeout)
            if self._closed:
                return None
            items = list(self._items)
            self._items.clear()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def open_watch(store: Any, kind: str, namespace: str | None, resource_version: str | None,
               field_selector: str | None = None):
    """``store.watch`` sharing objects when the store supports it (MemoryStore)."""
    extra = {"field_selector": field_selector} if field_selector else {}
    try:
        return store.watch(kind, namespace, resource_version, copy=False, **extra)
    except TypeError:
        return store.watch(kind, namespace, resource_version, **extra)


class _Pump:
    """List + watch one kind into the controller's inbox (see the module docstring)."""

    def __init__(self, ctrl: "Controller", kind: str, namespace: str | None = None):
        self.ctrl = ctrl
        self.kind = kind
        self.namespace = namespace
        self._watch = None
        self._mu = threading.Lock()
        self.relists = 0
        self.thread = threading.Thread(target=self._run, name=f"{ctrl.name}:{kind}", daemon=True)

    def stop(self) -> None:
        with self._mu:
            w = self._watch
        if w is not None:
            w.stop()

    def _run(self) -> None:
        ctrl, stop, put = self.ctrl, self.ctrl.stop_event, self.ctrl._inbox.put
        last: dict[Key, dict] = {}
        rv: str | None = None
        synced = False
        backoff = 0.05
        while not stop.is_set():
            try:
                selector = ctrl.field_selectors.get(self.kind)
                if rv is None:
                    items, rv = ctrl.store.list(self.kind, self.namespace,
                                                **({"field_selector": selector} if selector else {}))
                    seen = set()
                    for obj in items:
                        k = key_of(obj)
                        seen.add(k)
                        prev = last.get(k)
                        if prev is None:
                            put((self.kind, ADDED, obj))
                        elif _rv(prev) != _rv(obj):
                            put((self.kind, MODIFIED, obj))
                        last[k] = obj
                    for k in [k for k in last if k not in seen]:
                        put((self.kind, DELETED, last.pop(k)))
                    if synced:
                        self.relists += 1
                    else:
                        synced = True
                        put((self.kind, _SYNCED, None))
                w = open_watch(ctrl.store, self.kind, self.namespace, rv, selector)
                with self._mu:
                    self._watch = w
                if stop.is_set():
                    w.stop()
                for ev in w:
                    typ, obj = ev["type"], ev["object"]
                    if typ == "ERROR":
                        raise api_errors.exception_from_status(obj)
                    k = key_of(obj)
                    if typ == DELETED:
                        last.pop(k, None)
                    else:
                        last[k] = obj
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = new_rv
                    backoff = 0.05
                    put((self.kind, typ, obj))
                # the stream ended (stopped, or the server closed it): re-watch from rv
            except api_errors.Gone:
                rv = None
            except Exception as e:  # noqa: BLE001 - store closed, connection refused, ...
                if stop.is_set():
                    break
                log.debug("%s: list/watch %s failed: %s; retrying in %.2fs", ctrl.name, self.kind, e, backoff)
                if stop.wait(backoff):
                    break
                backoff = min(backoff * 2, 2.0)
            finally:
                with self._mu:
                    self._watch = None


class Controller:
    """Base class: subclasses set :attr:`name`, :attr:`kinds` and implement
    :meth:`handle` (mark keys dirty for an event) and :meth:`reconcile` (one key)."""

    name = "controller"
    component = "controller"
    kinds: tuple[str, ...] = ()
    # kind -> field selector for its list and watch (a kubelet's ``spec.nodeName=<node>``)
    field_selectors: dict[str, str] = {}

    def __init__(self, store: Any, stop: threading.Event | None = None, *, recorder: Any = None,
                 namespace: str | None = None):
        from .events import EventRecorder

        self.store = store
        self.stop_event = stop if stop is not None else threading.Event()
        self.recorder = (recorder.for_component(self.component) if recorder is not None
                         else EventRecorder(store, self.component))
        self.namespace = namespace
        self.caches: dict[str, Cache] = {k: Cache() for k in self.kinds}
        self.synced = threading.Event()
        self._synced_kinds: set[str] = set()
        self._inbox = _Inbox()
        self._dirty: dict[Hashable, None] = {}  # insertion-ordered set
        self._retry_heap: list[tuple[float, int, Hashable]] = []
        self._retry_seq = 0
        self._failures: dict[Hashable, int] = {}
        self._pumps = [_Pump(self, k, namespace) for k in self.kinds]
        self._thread: threading.Thread | None = None
        self.reconciles = 0  # statistics
        self.batches = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> threading.Thread:
        """Run in a daemon thread; returns it."""
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 5.0) -> None:
        self.stop_event.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _stopper(self) -> None:
        self.stop_event.wait()
        for p in self._pumps:
            p.stop()
        self._inbox.close()

    def run(self) -> None:
        """The worker loop (blocks until the stop event is set)."""
        threading.Thread(target=self._stopper, name=f"{self.name}:stopper", daemon=True).start()
        for p in self._pumps:
            p.thread.start()
        try:
            while not self.stop_event.is_set():
                timeout = None
                if self._dirty and self.synced.is_set():
                    timeout = 0.0  # keys marked while reconciling
                elif self._retry_heap:
                    timeout = max(0.0, self._retry_heap[0][0] - time.monotonic())
                items = self._inbox.take_all(timeout)
                if items is None:
                    break
                for kind, typ, obj in items:
                    self._apply(kind, typ, obj)
                now = time.monotonic()
                while self._retry_heap and self._retry_heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._retry_heap)
                    self._dirty[key] = None
                if self.synced.is_set() and self._dirty:
                    self._process_dirty()
        finally:
            self.stop_event.set()
            for p in self._pumps:
                p.thread.join(2.0)

    def _apply(self, kind: str, typ: str, obj: dict | None) -> None:
        if typ == _SYNCED:
            self._synced_kinds.add(kind)
            if self._synced_kinds >= set(self.kinds) and not self.synced.is_set():
                try:
                    self.on_synced()
                except Exception:  # noqa: BLE001
                    log.exception("%s: on_synced failed", self.name)
                self.synced.set()
            return
        change = self.caches[kind].apply(typ, obj)
        if change is None:
            return
        old, new = change
        try:
            self.handle(kind, old, new)
        except Exception:  # noqa: BLE001
            log.exception("%s: handling %s %s failed", self.name, typ, kind)

    def _process_dirty(self) -> None:
        self.batches += 1
        keys = list(self._dirty)
        self._dirty.clear()
        for key in keys:
            if self.stop_event.is_set():
                return
            self.reconciles += 1
            try:
                self.reconcile(key)
                self._failures.pop(key, None)
            except Exception as e:  # noqa: BLE001
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = min(0.01 * 2 ** (n - 1), 5.0)
                level = logging.DEBUG if getattr(e, "code", None) in (404, 409) else logging.WARNING
                log.log(level, "%s: reconcile %s failed (%s: %s); retry %d in %.2fs",
                        self.name, key, e.__class__.__name__, e, n, delay)
                self.on_error(key, e, n)
                self.requeue_after(key, delay)

    # -- for subclasses ---------------------------------------------------------------------
    def mark(self, key: Hashable) -> None:
        self._dirty[key] = None

    def requeue_after(self, key: Hashable, delay: float) -> None:
        self._retry_seq += 1
        heapq.heappush(self._retry_heap, (time.monotonic() + delay, self._retry_seq, key))

    def written(self, kind: str, obj: dict) -> None:
        """Record the result of our own create/update in the cache (and the indexes)."""
        old, new = self.caches[kind].written(obj)
        self.handle(kind, old, new, own=True)

    def deleted(self, kind: str, key: Key) -> None:
        old = self.caches[kind].forget(key)
        if old is not None:
            self.handle(kind, old, None, own=True)

    def on_synced(self) -> None:
        """Called once on the worker thread when every kind has been listed."""

    def on_error(self, key: Hashable, exc: Exception, attempt: int) -> None:
        """Called when reconciling *key* raised (before the retry is scheduled)."""

    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        raise NotImplementedError

    def reconcile(self, key: Hashable) -> None:
        raise NotImplementedError


def wait_for(store: Any, kind: str, predicate: Callable[[list[dict]], Any], *,
             namespace: str | None = None, timeout: float = 5.0) -> Any:
    """Wait until ``predicate(objects)`` (all objects of *kind*) returns something truthy;
    returns that value. Lists, then follows a watch (no polling); raises TimeoutError with
    the last objects seen."""
    items, rv = store.list(kind, namespace)
    cache = {key_of(o): o for o in items}
    got = predicate(list(cache.values()))
    if got:
        return got
    w = store.watch(kind, namespace, rv)  # private copies: callers may modify what we return
    timer = threading.Timer(timeout, w.stop)
    timer.daemon = True
    timer.start()
    try:
        for ev in w:
            obj = ev["object"]
            if ev["type"] == DELETED:
                cache.pop(key_of(obj), None)
            else:
                cache[key_of(obj)] = obj
            got = predicate(list(cache.values()))
            if got:
                return got
    finally:
        timer.cancel()
        w.stop()
    names = sorted("/".join(k).strip("/") for k in cache)
    raise TimeoutError(f"timed out after {timeout}s waiting for {kind} (have {len(names)}: {names[:20]})")
