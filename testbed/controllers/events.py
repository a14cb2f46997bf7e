"""Kubernetes Events, written like client-go's event recorder does (with its correlator's
aggregation: the same object/type/reason/message again bumps ``count`` and
``lastTimestamp`` of the existing Event instead of creating another one).

One :class:`EventRecorder` is shared by the controllers of a manager; each controller uses
a view with its own ``source.component`` (:meth:`EventRecorder.for_component`). Writes are
synchronous and never raise: a store that rejects Events (for example one whose admission
does not know the kind) is logged once and otherwise ignored, so a controller never fails
because of its events.
"""

from __future__ import annotations

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
    """What the component views share: the store, the clock and the aggregation cache."""

    def __init__(self, store: Any, clock: Callable[[], _dt.datetime], host: str | None):
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


class EventRecorder:
    """``recorder.event(obj, "Normal", "Reason", "message")`` writes an Event about *obj*.

    ``EventRecorder(store, component)`` creates a recorder (and its shared sink);
    ``recorder.for_component("other")`` returns a view sharing the sink."""

    def __init__(self, store: Any, component: str = "testbed", *, host: str | None = None,
                 clock: Callable[[], _dt.datetime] = _utcnow, _sink: _Sink | None = None):
        self.component = component
        self._sink = _sink or _Sink(store, clock, host)

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
        """Write (or aggregate into) an Event; returns the stored Event or None on failure."""
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
                    count = 1
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": ev_name, "namespace": ev_ns},
                "involvedObject": ref,
                "reason": reason,
                "message": message,
                "source": {"component": self.component, **({"host": sink.host} if sink.host else {})},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": count,
                "type": type,
                "reportingComponent": self.component,
                "reportingInstance": sink.host or "",
            }
            out = sink.store.create(body)
            sink.written += 1
            return out
        except Exception as e:  # noqa: BLE001 - events are best effort
            sink.failures += 1
            kind = type_name = e.__class__.__name__
            if kind not in sink.failed_kinds:
                sink.failed_kinds.add(kind)
                log.warning("cannot write Events (%s: %s); further %s errors are not logged",
                            type_name, e, kind)
            with sink.lock:
                sink.seen.pop(key, None)
            return None
