"""Kubernetes Events, written like client-go's event recorder does (with its correlator's
aggregation: the same object/type/reason/message again bumps ``count`` and
``lastTimestamp`` of the existing Event instead of creating another one).

One :class:`EventRecorder` is shared by the controllers of a manager; each controller uses
a view with its own ``source.component`` (:meth:`EventRecorder.for_component`). Writes are
synchronous (the kubelet's are queued to a thread of the recorder) and never raise: a store
that rejects Events (for example one whose admission does not know the kind) is logged once
and otherwise ignored, so a controller never fails because of its events.
"""

from __future__ import annotations

import collections
import datetime as _dt
import itertools
import logging
import threading
import time
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def rfc3339(t: _dt.datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def object_reference(obj: Mapping) -> dict:
    """``involvedObject`` for *obj* (like ``reference.GetReference``)."""
    m = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", "")}
    if m.get("namespace"):
        ref["namespace"] = m["namespace"]
    ref["name"] = m.get("name", "")
    for k in ("uid", "resourceVersion"):
        if m.get(k):
            ref[k] = m[k]
    return ref


class _Sink:
    """What the component views share: the store, the clock and the aggregation cache; with
    ``asynchronous``, the queue of Events still to write and the thread that writes them."""

    def __init__(self, store: Any, clock: Callable[[], _dt.datetime], host: str | None,
                 asynchronous: bool = False):
        self.store = store
        self.clock = clock
        self.host = host
        self.lock = threading.Lock()
        # (component, kind, ns, name, uid, type, reason, message) -> [event ns, event name, count]
        self.seen: dict[tuple, list] = {}
        self.seq = itertools.count()
        self.failed_kinds: set[str] = set()
        self.written = 0
        self.failures = 0
        self.asynchronous = asynchronous
        self.queue: collections.deque = collections.deque()
        self.pending = 0  # queued or being written
        self.cond = threading.Condition(self.lock)
        self.thread: threading.Thread | None = None


class EventRecorder:
    """``recorder.event(obj, "Normal", "Reason", "message")`` writes an Event about *obj*.

    ``EventRecorder(store, component)`` creates a recorder (and its shared sink);
    ``recorder.for_component("other")`` returns a view sharing the sink.

    ``asynchronous=True`` (the kubelet's): ``event`` only queues the Event and returns None; a
    thread of the recorder writes the queue in order, the Events that are new in one request
    stream (``create_pipelined``, when the store has it), as upstream's event broadcaster
    writes from its own goroutine: a pod's start does not wait for a round trip to the API.
    ``flush`` waits until what was queued is written."""

    def __init__(self, store: Any, component: str = "testbed", *, host: str | None = None,
                 clock: Callable[[], _dt.datetime] = _utcnow, _sink: _Sink | None = None,
                 asynchronous: bool = False):
        self.component = component
        self._sink = _sink or _Sink(store, clock, host, asynchronous)

    @property
    def store(self) -> Any:
        return self._sink.store

    @property
    def written(self) -> int:
        return self._sink.written

    def for_component(self, component: str) -> "EventRecorder":
        return EventRecorder(None, component, _sink=self._sink)

    def normal(self, obj: Mapping, reason: str, message: str) -> dict | None:
        return self.event(obj, NORMAL, reason, message)

    def warning(self, obj: Mapping, reason: str, message: str) -> dict | None:
        return self.event(obj, WARNING, reason, message)

    def event(self, obj: Mapping, type: str, reason: str, message: str) -> dict | None:  # noqa: A002
        """Write (or aggregate into) an Event; returns the stored Event, or None on failure and
        when the recorder is asynchronous."""
        sink = self._sink
        ref = object_reference(obj)
        ns = ref.get("namespace") or "default"
        key = (self.component, ref["kind"], ref.get("namespace", ""), ref["name"], ref.get("uid", ""),
               type, reason, message)
        now = rfc3339(sink.clock())
        with sink.lock:
            prev = sink.seen.get(key)
            if prev is not None:
                prev[2] += 1
                ev_ns, ev_name, count = prev
            else:
                ev_ns, ev_name, count = ns, f"{ref['name']}.{time.time_ns() + next(sink.seq):x}", 1
                sink.seen[key] = [ev_ns, ev_name, count]
            item = (key, ev_ns, ev_name, count, now, ref, type, reason, message, self.component)
            if sink.asynchronous:
                sink.queue.append(item)
                sink.pending += 1
                if sink.thread is None:
                    sink.thread = threading.Thread(target=_writer, args=(sink,), name="events", daemon=True)
                    sink.thread.start()
                sink.cond.notify_all()
                return None
        return _write_one(sink, item)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued Event is written (True) or ``timeout`` passed (False)."""
        sink = self._sink
        with sink.cond:
            return sink.cond.wait_for(lambda: sink.pending == 0, timeout)


def _body(sink: _Sink, item: tuple) -> dict:
    _, ev_ns, ev_name, count, now, ref, type_, reason, message, component = item
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": ev_name, "namespace": ev_ns},
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "source": {"component": component, **({"host": sink.host} if sink.host else {})},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": count,
        "type": type_,
        "reportingComponent": component,
        "reportingInstance": sink.host or "",
    }


def _failed(sink: _Sink, key: tuple, e: BaseException) -> None:
    sink.failures += 1
    kind = type_name = e.__class__.__name__
    if kind not in sink.failed_kinds:
        sink.failed_kinds.add(kind)
        log.warning("cannot write Events (%s: %s); further %s errors are not logged", type_name, e, kind)
    with sink.lock:
        sink.seen.pop(key, None)


def _write_one(sink: _Sink, item: tuple) -> dict | None:
    key, ev_ns, ev_name, count, now = item[:5]
    try:
        if count > 1:
            try:
                out = sink.store.patch("Event", ev_ns, ev_name, {"count": count, "lastTimestamp": now})
                sink.written += 1
                return out
            except Exception as e:  # noqa: BLE001 - e.g. NotFound: the Event was deleted
                if getattr(e, "code", None) != 404:
                    raise
                with sink.lock:
                    sink.seen[key] = [ev_ns, ev_name, 1]
                item = item[:3] + (1,) + item[4:]
        out = sink.store.create(_body(sink, item))
        sink.written += 1
        return out
    except Exception as e:  # noqa: BLE001 - events are best effort
        _failed(sink, key, e)
        return None


def _create_all(sink: _Sink, items: list[tuple]) -> None:
    """New Events, in order: one request stream when the store pipelines, else one by one."""
    pipelined = getattr(sink.store, "create_pipelined", None)
    if pipelined is None or len(items) == 1:
        for item in items:
            _write_one(sink, item)
        return
    done = 0
    try:
        for item, out in zip(items, pipelined([_body(sink, item) for item in items])):
            done += 1
            if isinstance(out, Exception):
                _failed(sink, item[0], out)
            else:
                sink.written += 1
    except Exception as e:  # noqa: BLE001 - the API went away: these Events are lost, as upstream's
        for item in items[done:]:
            _failed(sink, item[0], e)


def _writer(sink: _Sink) -> None:
    """The asynchronous recorder's thread: takes what is queued, writes it in order."""
    while True:
        with sink.cond:
            sink.cond.wait_for(lambda: sink.queue)
            items = list(sink.queue)
            sink.queue.clear()
        try:
            creates: list[tuple] = []
            for item in items:
                if item[3] == 1:
                    creates.append(item)
                    continue
                if creates:  # an update of an Event follows its creation
                    _create_all(sink, creates)
                    creates = []
                _write_one(sink, item)
            if creates:
                _create_all(sink, creates)
        finally:
            with sink.cond:
                sink.pending -= len(items)
                sink.cond.notify_all()
