import datetime as dt
import threading

from testbed.controllers import EventRecorder

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def test_event_shape_and_aggregation(store):
    svc = store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    times = iter([T0, T0 + dt.timedelta(seconds=30), T0 + dt.timedelta(seconds=40)])
    rec = EventRecorder(store, "endpointslice-controller", clock=lambda: next(times))
    e1 = rec.normal(svc, "Synced", "synced it")
    assert e1["involvedObject"] == {"kind": "Service", "apiVersion": "v1", "namespace": "default", "name": "web",
                                    "uid": svc["metadata"]["uid"],
                                    "resourceVersion": svc["metadata"]["resourceVersion"]}
    assert (e1["type"], e1["reason"], e1["message"], e1["count"]) == ("Normal", "Synced", "synced it", 1)
    assert e1["source"] == {"component": "endpointslice-controller"}
    assert e1["firstTimestamp"] == e1["lastTimestamp"] == "2024-05-01T12:00:00Z"
    assert e1["metadata"]["name"].startswith("web.")
    e2 = rec.normal(svc, "Synced", "synced it")
    assert e2["metadata"]["name"] == e1["metadata"]["name"]
    assert e2["count"] == 2 and e2["lastTimestamp"] == "2024-05-01T12:00:30Z"
    assert e2["firstTimestamp"] == "2024-05-01T12:00:00Z"
    other = rec.for_component("default-scheduler").warning(svc, "Synced", "synced it")
    assert other["metadata"]["name"] != e1["metadata"]["name"]
    assert other["type"] == "Warning" and other["source"] == {"component": "default-scheduler"}
    assert len(store.list("Event")[0]) == 2


def test_deleted_event_is_recreated(store):
    node = store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    rec = EventRecorder(store, "x", clock=lambda: T0)
    e1 = rec.normal(node, "R", "m")
    assert e1["metadata"]["namespace"] == "default"  # cluster-scoped objects: events in default
    store.delete("Event", "default", e1["metadata"]["name"])
    e2 = rec.normal(node, "R", "m")
    assert e2 is not None and e2["count"] == 1


def test_asynchronous_recorder_queues_then_writes_in_order(store):
    svc = store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    rec = EventRecorder(store, "kubelet", host="node1", clock=lambda: T0, asynchronous=True)
    assert rec.normal(svc, "Started", "one") is None  # queued, not written by the caller
    rec.normal(svc, "Started", "one")
    rec.warning(svc, "BackOff", "two")
    assert rec.flush(5.0)
    events = sorted(store.list("Event")[0], key=lambda e: e["metadata"]["name"])
    assert [(e["reason"], e["count"], e["source"]) for e in events] == [
        ("Started", 2, {"component": "kubelet", "host": "node1"}), ("BackOff", 1, {"component": "kubelet", "host": "node1"})]
    assert rec.written == 3


class _PipeliningStore:
    """Records the requests it is sent; the first one waits for ``release``."""

    def __init__(self, fail_names=()):
        self.calls: list[tuple] = []
        self.fail_names = set(fail_names)
        self.entered, self.release = threading.Event(), threading.Event()

    def create(self, obj):
        self.entered.set()
        self.release.wait(5)
        self.calls.append(("create", obj["message"]))
        return obj

    def patch(self, kind, ns, name, patch):
        self.calls.append(("patch", name, patch["count"]))
        return patch

    def create_pipelined(self, objs):
        self.calls.append(("pipelined", [o["message"] for o in objs]))
        for o in objs:
            yield ValueError("refused") if o["message"] in self.fail_names else o


def test_asynchronous_recorder_streams_new_events_and_keeps_an_update_after_its_creation():
    st = _PipeliningStore(fail_names={"b"})
    rec = EventRecorder(st, "kubelet", clock=lambda: T0, asynchronous=True)
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default", "uid": "u"}}
    rec.normal(pod, "R", "x")  # the writer takes it alone and waits in the store
    assert st.entered.wait(5)
    for msg in ("a", "b", "a", "c"):  # queued meanwhile: one batch
        rec.normal(pod, "R", msg)
    assert not rec.flush(0.05)
    st.release.set()
    assert rec.flush(5.0)
    assert st.calls[:2] == [("create", "x"), ("pipelined", ["a", "b"])]
    assert st.calls[2][0] == "patch" and st.calls[2][1].startswith("p.") and st.calls[2][2] == 2
    assert st.calls[3:] == [("create", "c")]
    assert rec._sink.failures == 1 and rec.written == 4
