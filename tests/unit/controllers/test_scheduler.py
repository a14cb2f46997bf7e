import random

import pytest

from testbed.controllers import SchedulerController, wait_for

from .helpers import add_pod, node, wait_event


@pytest.fixture
def start_scheduler(store):
    """Start the scheduler after the test created its nodes: nodes and pods come through
    separate watches, so a pod created right after a node could be seen first."""
    started = []

    def start():
        c = SchedulerController(store, rng=random.Random(3))
        c.start()
        assert c.synced.wait(5)
        started.append(c)
        return c
    yield start
    for c in started:
        c.stop()


def _bound(store, n):
    return wait_for(store, "Pod", lambda pods: pods if len(pods) == n and all(
        p["spec"].get("nodeName") for p in pods) else None)


def test_binds_to_node_with_fewest_pods(store, start_scheduler):
    for n in ("node-a", "node-b", "node-c"):
        store.create(node(n))
    start_scheduler()
    add_pod(store, "x1", {"app": "x"}, node_name="node-a")
    add_pod(store, "x2", {"app": "x"}, node_name="node-a")
    add_pod(store, "x3", {"app": "x"}, node_name="node-b")
    add_pod(store, "new", {"app": "y"})
    pods = _bound(store, 4)
    new = next(p for p in pods if p["metadata"]["name"] == "new")
    assert new["spec"]["nodeName"] == "node-c"
    ev = wait_event(store, "Scheduled", name="new")
    assert ev["message"] == "Successfully assigned default/new to node-c"
    assert ev["source"]["component"] == "default-scheduler"
    new = wait_for(store, "Pod", lambda ps: [p for p in ps if p["metadata"]["name"] == "new" and any(
        c["type"] == "PodScheduled" for c in p["status"].get("conditions") or [])])[0]
    cond = next(c for c in new["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "True"


def test_spreads_a_burst_evenly(store, start_scheduler):
    for n in ("node-a", "node-b"):
        store.create(node(n))
    start_scheduler()
    for i in range(6):
        add_pod(store, f"p{i}", {"app": "x"})
    pods = _bound(store, 6)
    counts = {}
    for p in pods:
        counts[p["spec"]["nodeName"]] = counts.get(p["spec"]["nodeName"], 0) + 1
    assert counts == {"node-a": 3, "node-b": 3}


def test_counts_follow_deleted_and_finished_pods(store, start_scheduler):
    """The per-node counts are kept as pods change: a deleted pod and a Succeeded one free
    their place on the node, as upstream's scheduler cache does."""
    for n in ("node-a", "node-b"):
        store.create(node(n))
    start_scheduler()
    add_pod(store, "a1", {"app": "x"}, node_name="node-a")
    add_pod(store, "a2", {"app": "x"}, node_name="node-a")
    add_pod(store, "b1", {"app": "x"}, node_name="node-b")
    add_pod(store, "b2", {"app": "x"}, node_name="node-b")
    done = store.get("Pod", "default", "a1")
    store.update_status({**done, "status": {"phase": "Succeeded"}})
    store.delete("Pod", "default", "a2", grace_seconds=0)
    wait_for(store, "Pod", lambda ps: len(ps) == 3 or None)
    add_pod(store, "new1", {"app": "y"})
    new1 = wait_for(store, "Pod", lambda ps: [p for p in ps if p["metadata"]["name"] == "new1" and p["spec"].get("nodeName")])[0]
    assert new1["spec"]["nodeName"] == "node-a"  # 0 pods counted there against 2 on node-b
    add_pod(store, "new2", {"app": "y"})
    new2 = wait_for(store, "Pod", lambda ps: [p for p in ps if p["metadata"]["name"] == "new2" and p["spec"].get("nodeName")])[0]
    assert new2["spec"]["nodeName"] == "node-a"  # 1 against 2


def test_failed_scheduling_then_retried_when_node_appears(store, start_scheduler):
    store.create(node("node-a", labels={"disk": "hdd"}))
    start_scheduler()
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky"},
         "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "nginx"}]}}
    store.create(p)
    ev = wait_event(store, "FailedScheduling", name="picky")
    assert ev["type"] == "Warning"
    assert ev["message"] == "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    pod = wait_for(store, "Pod", lambda ps: [x for x in ps if any(
        c["type"] == "PodScheduled" and c["status"] == "False" for c in x["status"].get("conditions") or [])])[0]
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["reason"] == "Unschedulable"
    store.create(node("node-b", labels={"disk": "ssd"}))
    pods = _bound(store, 1)
    assert pods[0]["spec"]["nodeName"] == "node-b"


def test_no_nodes_message(store, start_scheduler):
    start_scheduler()
    add_pod(store, "lonely", {"app": "x"})
    ev = wait_event(store, "FailedScheduling", name="lonely")
    assert ev["message"] == "no nodes available to schedule pods"


def test_other_scheduler_name_ignored(store, start_scheduler):
    store.create(node("node-a"))
    start_scheduler()
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "other"},
         "spec": {"schedulerName": "my-scheduler", "containers": [{"name": "c", "image": "nginx"}]}}
    store.create(p)
    add_pod(store, "mine", {"app": "x"})
    _bound_mine = wait_for(store, "Pod", lambda ps: [x for x in ps if x["metadata"]["name"] == "mine"
                                                      and x["spec"].get("nodeName")])
    assert _bound_mine
    assert not store.get("Pod", "default", "other")["spec"].get("nodeName")
