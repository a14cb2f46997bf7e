import threading
import time

import pytest

from testbed.apiserver import errors

from .conftest import svc


def drain(w, n, timeout=5.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        ev = w.get(timeout=max(0.0, deadline - time.monotonic()))
        if ev is None:
            break
        out.append(ev)
    return out


def kinds(evs):
    return [(e["type"], e["object"]["metadata"]["name"], e["object"]["metadata"]["resourceVersion"]) for e in evs]


@pytest.fixture
def store(make_store):
    return make_store(history=20)


def test_watch_from_rv_replays_and_follows(store, rv):
    store.create(svc("a"))                       # rv 1
    _, list_rv = store.list("Service")
    b = store.create(svc("b"))                   # rv 2
    store.update(dict(b, spec={"ports": [{"port": 81}]}))   # rv 3
    w = store.watch("Service", resource_version=list_rv)
    store.delete("Service", "default", "a")      # rv 4
    evs = drain(w, 3)
    assert kinds(evs) == [("ADDED", "b", rv(2)), ("MODIFIED", "b", rv(3)), ("DELETED", "a", rv(4))]
    assert w.get(timeout=0.01) is None and not w.closed
    w.stop()
    assert w.closed and w.get(timeout=0.01) is None


def test_watch_without_rv_starts_with_current_state(store, rv):
    store.create(svc("a"))
    store.create(svc("b", ns="other"))
    store.create({"kind": "Pod", "metadata": {"name": "p"}})
    w = store.watch("Service")
    assert sorted(kinds(drain(w, 2))) == [("ADDED", "a", rv(1)), ("ADDED", "b", rv(2))]
    w0 = store.watch("Service", namespace="other", resource_version="0")
    assert kinds(drain(w0, 1)) == [("ADDED", "b", rv(2))]
    store.create(svc("c"))
    assert kinds(drain(w, 1)) == [("ADDED", "c", rv(4))]
    assert w0.get(timeout=0.02) is None  # other namespace only


def test_watch_too_old_resource_version(store, rv):
    for i in range(30):
        store.create(svc(f"s{i}"))
    with pytest.raises(errors.Gone) as ei:
        store.watch("Service", resource_version=rv(3))
    assert ei.value.code == 410 and ei.value.reason == "Expired"
    assert str(ei.value) == f"too old resource version: {rv(3)} ({rv(10)})"
    w = store.watch("Service", resource_version=rv(10))  # oldest still complete
    assert len(drain(w, 20)) == 20
    with pytest.raises(errors.BadRequest):
        store.watch("Service", resource_version="abc")


def test_watch_future_rv_waits(store, rv):
    w = store.watch("Service", resource_version=rv(5))
    store.create(svc("a"))
    assert w.get(timeout=0.02) is None


def test_watch_label_selector_transitions(store, rv):
    w = store.watch("Service", resource_version="0", label_selector="app=web")
    o = store.create(svc("a"))                                     # not matching
    o = store.patch("Service", "default", "a", {"metadata": {"labels": {"app": "web"}}})
    o = store.patch("Service", "default", "a", {"spec": {"x": 1}})
    o = store.patch("Service", "default", "a", {"metadata": {"labels": {"app": "db"}}})
    store.delete("Service", "default", "a")
    assert [e["type"] for e in drain(w, 3)] == ["ADDED", "MODIFIED", "DELETED"]
    assert w.get(timeout=0.02) is None
    # the same when replayed from history
    w2 = store.watch("Service", resource_version=rv(1), label_selector="app=web")
    assert [e["type"] for e in drain(w2, 3)] == ["ADDED", "MODIFIED", "DELETED"]


def test_watch_field_selector(store, rv):
    w = store.watch("Pod", resource_version="0", field_selector="spec.nodeName=n1")
    store.create({"kind": "Pod", "metadata": {"name": "a"}, "spec": {"nodeName": "n2"}})
    store.create({"kind": "Pod", "metadata": {"name": "b"}, "spec": {"nodeName": "n1"}})
    assert kinds(drain(w, 1)) == [("ADDED", "b", rv(2))]


def test_stop_from_another_thread_ends_iteration(store):
    w = store.watch("Service")
    got = []
    first = threading.Event()

    def consume():
        for e in w:
            got.append(e)
            first.set()

    t = threading.Thread(target=consume)
    t.start()
    store.create(svc("a"))
    assert first.wait(5)
    w.stop()
    t.join(2)
    assert not t.is_alive() and [e["type"] for e in got] == ["ADDED"]


def test_events_are_private_copies(store):
    w1 = store.watch("Service")
    w2 = store.watch("Service")
    store.create(svc("a"))
    e1, e2 = w1.get(1), w2.get(1)
    e1["object"]["spec"]["ports"] = []
    assert e2["object"]["spec"]["ports"] == [{"port": 80}]
    assert store.get("Service", "default", "a")["spec"]["ports"] == [{"port": 80}]


def test_slow_watcher_overflow_gets_gone(make_store):
    s = make_store(watch_queue_limit=5)
    w = s.watch("Service")
    for i in range(10):
        s.create(svc(f"s{i}"))
    with pytest.raises(errors.Gone):
        w.get(1)
    assert w.closed
    s.close()


def test_many_watchers_all_get_every_event(make_store):
    s = make_store()
    ws = [s.watch("Service") for _ in range(50)]
    results = [[] for _ in ws]

    def run(i):
        for ev in ws[i]:
            results[i].append(ev["object"]["metadata"]["name"])
            if len(results[i]) == 100:
                return
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(ws))]
    for t in ts:
        t.start()
    for i in range(100):
        s.create(svc(f"s{i}"))
    for t in ts:
        t.join(10)
    assert all(r == [f"s{i}" for i in range(100)] for r in results)
    s.close()


def test_close_stops_watchers(make_store):
    s = make_store()
    w = s.watch("Service")
    t = threading.Thread(target=lambda: list(w))
    t.start()
    s.close()
    t.join(2)
    assert not t.is_alive() and w.closed
