import random

import pytest

from testbed.k8s.scheduler import Unschedulable, schedule

from .helpers import pod


def node(name, labels=None, unschedulable=False, max_pods=None):
    n = {"metadata": {"name": name, "labels": labels or {}}, "spec": {}, "status": {}}
    if unschedulable:
        n["spec"]["unschedulable"] = True
    if max_pods is not None:
        n["status"]["allocatable"] = {"pods": str(max_pods)}
    return n


def new_pod(**spec):
    p = pod("new", node=None)
    p["spec"].pop("nodeName")
    p["spec"].update(spec)
    return p


def test_fewest_pods_wins():
    existing = [pod("a1", node="a"), pod("a2", node="a"), pod("b1", node="b")]
    assert schedule(new_pod(), [node("a"), node("b")], existing, random.Random(0)) == "b"


def test_terminal_pods_do_not_count():
    existing = [pod("a1", node="a", phase="Succeeded"), pod("b1", node="b")]
    assert schedule(new_pod(), [node("a"), node("b")], existing, random.Random(0)) == "a"


def test_ties_broken_randomly_but_reproducibly():
    nodes = [node("a"), node("b"), node("c")]
    picks = {schedule(new_pod(), nodes, [], random.Random(s)) for s in range(30)}
    assert picks == {"a", "b", "c"}
    assert schedule(new_pod(), nodes, [], random.Random(5)) == schedule(new_pod(), nodes, [], random.Random(5))


def test_node_name_node_selector_unschedulable_capacity():
    nodes = [node("a", {"disk": "ssd"}), node("b", unschedulable=True), node("c", max_pods=1)]
    existing = [pod("c1", node="c")]
    assert schedule(new_pod(nodeName="a"), nodes, existing) == "a"
    assert schedule(new_pod(nodeSelector={"disk": "ssd"}), nodes, existing) == "a"
    with pytest.raises(Unschedulable) as e:
        schedule(new_pod(nodeSelector={"disk": "hdd"}), nodes, existing)
    assert str(e.value) == ("0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's "
                            "node affinity/selector.")
    full = [node("a", {"disk": "ssd"}, max_pods=1), node("b", unschedulable=True), node("c")]
    with pytest.raises(Unschedulable) as e:
        schedule(new_pod(nodeSelector={"disk": "ssd"}), full, [pod("a1", node="a")])
    assert str(e.value) == ("0/3 nodes are available: 1 Too many pods, 1 node(s) didn't match Pod's node "
                            "affinity/selector, 1 node(s) were unschedulable.")
    assert e.value.reasons["Too many pods"] == 1


def test_default_capacity_is_110():
    existing = [pod(f"p{i}", node="a") for i in range(110)]
    with pytest.raises(Unschedulable, match="0/1 nodes are available: 1 Too many pods."):
        schedule(new_pod(), [node("a")], existing)


def test_no_nodes():
    with pytest.raises(Unschedulable, match="no nodes available to schedule pods"):
        schedule(new_pod(), [], [])
