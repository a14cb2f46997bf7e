"""The embedded store: objects in dicts, a bounded watch history, and (with a state
directory) a write-ahead log and snapshots; the API semantics are :class:`StoreCore`'s."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, Iterator

from . import errors
from .history import HISTORY_SECONDS, WatchHistory
from .kinds import KindInfo, kind_info
from .labels import combine, field_predicate, label_predicate
from .persistence import StateLog
from .store import StoreCore, check_not_newer, parse_watch_rv
from .watch import ADDED, DELETED, Event, Watch, clone, filter_event
from .watchlist import bookmark

log = logging.getLogger(__name__)


class MemoryStore(StoreCore):
    """Dict-backed store with watch; persistent when given a ``state_dir``."""

    def __init__(self, state_dir=None, admission=None, *, history: int = 10000,
                 history_seconds: float | None = HISTORY_SECONDS, compact_bytes: int = 16 << 20,
                 watch_queue_limit: int = 100000, clock: Callable[[], float] = time.monotonic):
        super().__init__(admission, watch_queue_limit=watch_queue_limit)
        self._compact_lock = threading.Lock()
        # kind -> namespace ("" when cluster-scoped) -> name -> object
        self._objects: dict[str, dict[str, dict[str, dict]]] = {}
        self._rv = 0
        self._history = WatchHistory(history, history_seconds, clock)
        self._watchers: dict[str, set[Watch]] = {}
        self._log: StateLog | None = None
        if state_dir is not None:
            self._log = StateLog(state_dir, compact_bytes=compact_bytes)
            loaded = self._log.load()
            for (kind, ns, name), obj in loaded.objects.items():
                self._objects.setdefault(kind, {}).setdefault(ns, {})[name] = obj
            self._rv = loaded.resource_version
            self._history.floor = loaded.snapshot_rv
            for rv, typ, obj, old in loaded.records:
                self._remember(Event(typ, obj, old, rv))
            self._log.open()
            problems = self._admission.rebuild([clone(o) for o in self._iter_all()])
            for p in problems or ():
                log.warning("admission rebuild: %s", p)
            if loaded.needs_compaction:
                self._maybe_compact(force=True)
        self._history.start_trimming(self._lock)

    def _iter_all(self) -> Iterator[dict]:
        for by_ns in self._objects.values():
            for by_name in by_ns.values():
                yield from by_name.values()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(m) for by_ns in self._objects.values() for m in by_ns.values())

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _lookup(self, info: KindInfo, ns: str, name: str) -> dict | None:
        return self._objects.get(info.kind, {}).get(ns, {}).get(name)

    def _remember(self, ev: Event) -> None:
        self._history.append(ev)

    def _write(self, typ: str, info: KindInfo, ns: str, name: str, obj: dict, old: dict | None) -> None:
        """Write one change (lock held); stored objects are never mutated afterwards."""
        rv = self._rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        ev = Event(typ, obj, old, rv)
        if self._log is not None:
            self._log.append(('{"rv":%d,"type":"%s","object":%s}\n' % (rv, typ, ev.object_json())).encode())
        self._rv = rv
        by_name = self._objects.setdefault(info.kind, {}).setdefault(ns, {})
        if typ == DELETED:
            by_name.pop(name, None)
        else:
            by_name[name] = obj
        self._remember(ev)
        watchers = self._watchers.get(info.kind)
        if watchers:
            dead = [w for w in watchers if not w.deliver(ev)]
            for w in dead:
                watchers.discard(w)

    def _after_write(self) -> None:
        self._maybe_compact()

    def _unregister(self, w: Watch) -> None:
        with self._lock:
            ws = self._watchers.get(w.kind)
            if ws is not None:
                ws.discard(w)

    def _maybe_compact(self, force: bool = False) -> None:
        if self._log is None or not (force or self._log.should_compact()):
            return
        if not self._compact_lock.acquire(blocking=False):
            return
        try:
            with self._lock:
                if self._closed or not (force or self._log.should_compact()):
                    return
                objects = list(self._iter_all())  # stored objects are never mutated
                rv = self._rv
                self._log.rotate()
            self._log.write_snapshot(rv, objects)
        finally:
            self._compact_lock.release()

    def compact(self) -> None:
        """Fold the write-ahead log into a new snapshot now."""
        self._maybe_compact(force=True)

    def list(self, kind: str, namespace: str | None = None, label_selector=None,
             field_selector=None, *, copy: bool = True) -> tuple[list[dict], str]:
        info = kind_info(kind)
        pred = combine(label_predicate(label_selector), field_predicate(field_selector))
        with self._lock:
            by_ns = self._objects.get(info.kind, {})
            if info.namespaced and namespace:
                refs = list(by_ns.get(namespace, {}).values())
            else:
                refs = [o for m in by_ns.values() for o in m.values()]
            rv = str(self._rv)
        if pred is not None:
            refs = [o for o in refs if pred(o)]
        return ([clone(o) for o in refs] if copy else refs), rv

    def watch(self, kind: str, namespace: str | None = None, resource_version: str | None = None,
              label_selector=None, field_selector=None, *, copy: bool = True,
              send_initial_events: bool | None = None, bookmarks: bool = False) -> Watch:
        """Events of *kind* (in *namespace*, or all) after *resource_version*; see the
        module docstring and ``watchlist.py`` for *send_initial_events* and *bookmarks*.
        With ``copy=False`` event objects are shared and must not be modified."""
        info = kind_info(kind)
        pred = combine(label_predicate(label_selector), field_predicate(field_selector))
        if namespace is not None and not info.namespaced:
            namespace = None
        start = parse_watch_rv(resource_version)
        with self._lock:
            self._check_open()
            initial: list[Event] = []
            if send_initial_events:
                check_not_newer(start, self._rv)
                start = None  # the current state: at least as new as asked
            elif send_initial_events is False and start is None:
                start = self._rv  # no initial state: the changes from now on
            if start is None:
                by_ns = self._objects.get(info.kind, {})
                if namespace is not None:
                    refs: Iterable[dict] = by_ns.get(namespace, {}).values()
                else:
                    refs = (o for m in by_ns.values() for o in m.values())
                for o in refs:
                    if pred is None or pred(o):
                        initial.append(Event(ADDED, o, None, int(o["metadata"]["resourceVersion"])))
            else:
                if start < self._history.floor:
                    raise errors.too_old(start, self._history.floor)
                for ev in reversed(self._history):
                    if ev.rv <= start:
                        break
                    if ev.obj.get("kind") != info.kind:
                        continue
                    if namespace is not None and (ev.obj.get("metadata") or {}).get("namespace") != namespace:
                        continue
                    fev = filter_event(ev, pred)
                    if fev is not None:
                        initial.append(fev)
                initial.reverse()
            if send_initial_events and bookmarks:
                initial.append(bookmark(info, self._rv, initial_events_end=True))
            w = Watch(self, info.kind, namespace, pred, initial, self._watch_queue_limit, copy,
                      after=start if start is not None and start > self._rv else 0,
                      since=self._rv if start is None else min(start, self._rv))
            self._watchers.setdefault(info.kind, set()).add(w)
        return w

    def close(self) -> None:
        """Stop all watches and close the log; later writes raise ServiceUnavailable."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._history.stop()
            watchers = [w for ws in self._watchers.values() for w in ws]
        for w in watchers:
            w.stop()
        with self._compact_lock, self._lock:
            if self._log is not None:
                self._log.close()

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
