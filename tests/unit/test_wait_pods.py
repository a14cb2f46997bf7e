"""``up`` waits for its pods on a watch, one event at a time (pure, on the embedded store)."""

import threading

import pytest

from testbed.apiserver.memory import MemoryStore
from testbed.controlplane import wait_pods_running
from testbed.errors import TestbedError


def pod(name: str, phase: str | None = None, ip: str | None = None) -> dict:
    status = {k: v for k, v in (("phase", phase), ("podIP", ip)) if v}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": status}


def test_returns_once_every_pod_runs_with_an_ip():
    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    for n in ("a", "b", "other"):
        store.create(pod(n))
    store.update_status(pod("a", "Running", "10.244.0.2") | {"metadata": store.get("Pod", "default", "a")["metadata"]})

    def later():
        for n, phase, ip in (("b", "Running", None), ("other", "Running", "10.244.0.9"), ("b", "Running", "10.244.0.3")):
            cur = store.get("Pod", "default", n)
            store.update_status(pod(n, phase, ip) | {"metadata": cur["metadata"]})

    t = threading.Timer(0.05, later)
    t.start()
    wait_pods_running(store, {("default", "a"), ("default", "b")}, timeout=5)
    t.join()
    assert store.get("Pod", "default", "b")["status"]["podIP"] == "10.244.0.3"


def test_names_the_pods_still_waited_for():
    store = MemoryStore()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    store.create(pod("slow"))
    with pytest.raises(TestbedError, match=r"1 not Running with an IP: default/slow"):
        wait_pods_running(store, {("default", "slow")}, timeout=0.2)
