import datetime as dt

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
