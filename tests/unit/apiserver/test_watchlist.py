"""Watch bookmarks and watch-list (sendInitialEvents): the options' validation, the event
sequence of each combination on every store, the bookmark timer, and the HTTP streams."""

import http.client
import json
import os
import socket
import threading
import time

import pytest

from testbed.apiserver import errors
from testbed.apiserver.kinds import kind_info
from testbed.apiserver.memory import MemoryStore
from testbed.apiserver.server import serve
from testbed.apiserver.watchlist import (BOOKMARK_BEFORE_TIMEOUT, BOOKMARK_EVERY, BookmarkTimer,
                                         next_bookmark, watch_options)

from .conftest import svc

WL = {"sendInitialEvents": ["true"], "resourceVersionMatch": ["NotOlderThan"], "allowWatchBookmarks": ["true"]}
PREFIX = 'ListOptions.meta.k8s.io "" is invalid: '
NEED_NOT_OLDER = "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
NEED_SEND = ("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless "
             "sendInitialEvents is provided")


def q(**kw):
    return {k: [v] for k, v in kw.items()}


# -- options -------------------------------------------------------------------------------

def test_watch_options_accepted():
    o = watch_options(WL)
    assert (o.resource_version, o.send_initial_events, o.allow_bookmarks) == (None, True, True)
    o = watch_options(q(sendInitialEvents="0", resourceVersionMatch="NotOlderThan", resourceVersion="5"))
    assert (o.resource_version, o.send_initial_events, o.allow_bookmarks) == ("5", False, False)
    o = watch_options(q(allowWatchBookmarks="True"))
    assert (o.send_initial_events, o.allow_bookmarks) == (None, True)
    assert watch_options({}).send_initial_events is None


@pytest.mark.parametrize("query, message, causes", [
    (q(sendInitialEvents="true"), NEED_NOT_OLDER, [("resourceVersionMatch", "FieldValueForbidden")]),
    (q(sendInitialEvents="false", resourceVersionMatch="Exact"),
     f'[{NEED_NOT_OLDER}, resourceVersionMatch: Unsupported value: "Exact": supported values: "NotOlderThan"]',
     [("resourceVersionMatch", "FieldValueForbidden"), ("resourceVersionMatch", "FieldValueNotSupported")]),
    (q(resourceVersionMatch="NotOlderThan"), NEED_SEND, [("resourceVersionMatch", "FieldValueForbidden")]),
    (q(sendInitialEvents="true", resourceVersionMatch="NotOlderThan", **{"continue": "abc"}),
     "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided",
     [("resourceVersionMatch", "FieldValueForbidden")]),
])
def test_watch_options_refused_as_upstream(query, message, causes):
    with pytest.raises(errors.Invalid) as ei:
        watch_options(query)
    st = errors.status_from_exception(ei.value)
    assert (st["code"], st["reason"], st["message"]) == (422, "Invalid", PREFIX + message)
    assert (st["details"]["group"], st["details"]["kind"]) == ("meta.k8s.io", "ListOptions")
    assert [(c["field"], c["reason"]) for c in st["details"]["causes"]] == causes


def test_watch_options_bad_boolean_is_400():
    with pytest.raises(errors.BadRequest, match=r'sendInitialEvents: strconv.ParseBool: parsing "yes"'):
        watch_options(q(sendInitialEvents="yes", resourceVersionMatch="NotOlderThan"))
    with pytest.raises(errors.BadRequest, match="allowWatchBookmarks"):
        watch_options(q(allowWatchBookmarks="on"))


# -- the event sequence of each combination, on every store -------------------------------

def take(w, timeout=5.0):
    """The events queued now, then whatever arrives within a short wait."""
    out = []
    while (ev := w.get(timeout=timeout if not out else 0.05)) is not None:
        out.append(ev)
    return out


def seq(evs):
    out = []
    for e in evs:
        meta = e["object"]["metadata"]
        if e["type"] == "BOOKMARK":
            out.append(("BOOKMARK", meta["resourceVersion"], meta.get("annotations")))
        else:
            out.append((e["type"], meta["name"]))
    return out


END = {"k8s.io/initial-events-end": "true"}


@pytest.fixture
def filled(store, rv):
    store.create(svc("a"))                                           # 1
    store.create(svc("b", ns="other"))                               # 2
    store.patch("Service", "default", "a", {"spec": {"type": "NodePort"}})   # 3
    store.create({"kind": "Pod", "metadata": {"name": "p"}})         # 4: another kind
    return store


def test_send_initial_events_with_bookmarks(filled, rv):
    w = filled.watch("Service", send_initial_events=True, bookmarks=True)
    evs = take(w)
    assert sorted(seq(evs[:2])) == [("ADDED", "a"), ("ADDED", "b")]
    # the end bookmark is at the store's resourceVersion, even though it was a Pod's write
    assert seq(evs[2:]) == [("BOOKMARK", rv(4), END)]
    assert set(evs[2]["object"]) == {"kind", "apiVersion", "metadata"}
    assert (evs[2]["object"]["kind"], evs[2]["object"]["apiVersion"]) == ("Service", "v1")
    filled.delete("Service", "other", "b")
    assert seq(take(w)) == [("DELETED", "b")]
    w.stop()


def test_send_initial_events_from_an_older_rv_is_the_current_state(filled, rv):
    # NotOlderThan rv(1): the state now (a modified, b present), not a replay from rv(1)
    w = filled.watch("Service", "default", rv(1), send_initial_events=True, bookmarks=True)
    evs = take(w)
    assert seq(evs) == [("ADDED", "a"), ("BOOKMARK", rv(4), END)]
    assert evs[0]["object"]["spec"]["type"] == "NodePort"
    w.stop()


def test_send_initial_events_with_selector_and_without_bookmarks(filled, rv):
    w = filled.watch("Service", send_initial_events=True, field_selector="metadata.namespace=other")
    assert seq(take(w)) == [("ADDED", "b")]  # no bookmark unless the client allows them
    w.stop()


def test_send_initial_events_from_the_future_is_too_large(filled, rv):
    with pytest.raises(errors.ApiError) as ei:
        filled.watch("Service", resource_version=rv(50), send_initial_events=True, bookmarks=True)
    st = errors.status_from_exception(ei.value)
    assert (st["code"], st["reason"]) == (504, "Timeout")
    assert st["message"] == f"Too large resource version: {rv(50)}, current: {rv(4)}"


def test_send_initial_events_false(filled, rv):
    w = filled.watch("Service", send_initial_events=False, bookmarks=True)  # from now: nothing old
    assert w.get(timeout=0.1) is None
    filled.create(svc("c"))
    assert seq(take(w)) == [("ADDED", "c")]
    w.stop()
    w = filled.watch("Service", resource_version=rv(1), send_initial_events=False)  # after rv(1)
    assert seq(take(w)) == [("ADDED", "b"), ("MODIFIED", "a"), ("ADDED", "c")]
    w.stop()


def test_legacy_watch_is_unchanged(filled, rv):
    w = filled.watch("Service", bookmarks=True)
    assert sorted(seq(take(w))) == [("ADDED", "a"), ("ADDED", "b")]  # no end bookmark
    w.stop()


# -- periodic bookmarks -------------------------------------------------------------------

def test_next_bookmark():
    assert next_bookmark(100.0, None) == 100.0 + BOOKMARK_EVERY
    assert next_bookmark(100.0, 110.0) == 110.0 - BOOKMARK_BEFORE_TIMEOUT
    assert next_bookmark(100.0, 1000.0) == 100.0 + BOOKMARK_EVERY
    assert next_bookmark(100.0, 101.0) is None  # too close to the end for one


def _delivered(w, rv: str, timeout: float = 5.0) -> bool:
    """Whether the store has handed the watch the change at *rv* (queued or filtered out). The
    etcd store delivers from its watch thread, and a change the watch filters out wakes nobody,
    so this looks at the watch's progress every few milliseconds."""
    deadline = time.monotonic() + timeout
    while int(w._seen or 0) < int(rv):
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.005)
    return True


def test_bookmark_timer_waits_for_queued_events_and_covers_filtered_ones(store, rv):
    w = store.watch("Service", "default", send_initial_events=False)
    t = BookmarkTimer(w, None, 0.0)
    assert t.at == BOOKMARK_EVERY and t.due(1.0) == []   # not yet
    store.create(svc("a"))                               # queued
    assert _delivered(w, rv(1))                          # (the etcd store delivers from its watch thread)
    assert t.due(BOOKMARK_EVERY) == []                   # the event goes first
    assert [e.type for e in w.get_raw_batch(0)] == ["ADDED"]
    (b,) = t.due(BOOKMARK_EVERY)
    assert (b.type, b.obj["metadata"]) == ("BOOKMARK", {"resourceVersion": rv(1)})
    assert t.at == 2 * BOOKMARK_EVERY
    store.create(svc("x", ns="other"))                   # not this watch's: still advances it
    assert _delivered(w, rv(2))
    (b,) = t.due(2 * BOOKMARK_EVERY)
    assert b.obj["metadata"]["resourceVersion"] == rv(2)
    assert b.encoded() == (b'{"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"v1",'
                           b'"metadata":{"resourceVersion":"%s"}}}\n' % rv(2).encode())
    w.stop()
    assert t.due(3 * BOOKMARK_EVERY) == [] and t.at is None


# -- over HTTP (the watch mux) ------------------------------------------------------------

def stream(sock_path, path):
    conn = http.client.HTTPConnection("localhost")
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    conn.sock = s
    conn.request("GET", path)
    r = conn.getresponse()
    t0 = time.monotonic()
    data = r.read()
    conn.close()
    return r.status, data, time.monotonic() - t0


def test_http_watch_list_and_periodic_bookmark(short_dir):
    store = MemoryStore()
    with serve(store, os.path.join(short_dir, "a.sock")) as h:
        store.create(svc("a"))
        store.create(svc("b", ns="other"))
        code, data, took = stream(h.socket_path, "/api/v1/namespaces/default/services?watch=true&"
                                  "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&"
                                  "allowWatchBookmarks=true&timeoutSeconds=3")
        lines = [json.loads(x) for x in data.splitlines()]
        # the state, its end, and one bookmark 2 s before the 3 s timeout ended the stream
        assert code == 200 and seq(lines) == [("ADDED", "a"), ("BOOKMARK", "2", END), ("BOOKMARK", "2", None)]
        assert 2.5 < took < 10
        code, data, _ = stream(h.socket_path, "/api/v1/services?watch=true&sendInitialEvents=true")
        assert code == 422 and json.loads(data)["message"] == PREFIX + NEED_NOT_OLDER
        code, data, _ = stream(h.socket_path, "/api/v1/services?watch=true&timeoutSeconds=1")
        assert code == 200 and b"BOOKMARK" not in data  # not asked for: never sent
    store.close()


def test_kind_of_bookmark_for_a_grouped_kind(store, rv):
    w = store.watch("Deployment", send_initial_events=True, bookmarks=True)
    ev = w.get(timeout=5)
    assert ev["object"]["apiVersion"] == kind_info("Deployment").api_version == "apps/v1"
    w.stop()
