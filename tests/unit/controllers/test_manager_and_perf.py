import threading

from testbed.apiserver.errors import Conflict
from testbed.controllers import ControllerConfig, ControllerManager, wait_for

from .conftest import new_store
from .helpers import add_pod, node, service, wait_event, wait_slices


def test_manager_runs_all_controllers(store):
    with ControllerManager(store, {"lb_pool": "198.51.100.0/28", "seed": 1}) as cm:
        assert cm.wait_synced(5)
        store.create(node("node-a"))
        pod = add_pod(store, "web-1", {"app": "web"})
        store.create(service("web", type="LoadBalancer"))
        # the scheduler binds, then the "kubelet" (this test) reports an IP
        wait_for(store, "Pod", lambda ps: [p for p in ps if p["spec"].get("nodeName") == "node-a"])
        for _ in range(5):  # the scheduler may still be writing the pod: retry on conflict, as clients do
            pod = store.get("Pod", "default", "web-1")
            pod["status"] = {"phase": "Running", "podIP": "10.244.0.2", "podIPs": [{"ip": "10.244.0.2"}],
                             "conditions": [{"type": "Ready", "status": "True"}]}
            try:
                store.update_status(pod)
                break
            except Conflict:
                continue
        (sl,) = wait_slices(store, "web", lambda eps: len(eps) == 1)
        assert sl["endpoints"][0]["nodeName"] == "node-a"
        wait_event(store, "EnsuredLoadBalancer", name="web")
        assert store.get("Service", "default", "web")["status"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.1"}]
        timeline = sorted((e for e in store.list("Event")[0] if e["involvedObject"]["name"] == "web"),
                          key=lambda e: int(e["metadata"]["resourceVersion"]))
        reasons = [e["reason"] for e in timeline]
        for r in ("ClusterIPAllocated", "EndpointSliceCreated", "IPAllocated", "EnsuredLoadBalancer"):
            assert r in reasons
    assert all(not c._thread.is_alive() for c in cm.controllers.values())


def test_config_errors():
    import pytest
    with pytest.raises(ValueError, match="unknown controller config keys: bogus"):
        ControllerConfig.of({"bogus": 1})
    with pytest.raises(ValueError, match="unknown controllers"):
        ControllerConfig.of({"controllers": ["nope"]})


def test_setting_the_stop_event_stops_a_controller(store):
    from testbed.controllers import EndpointSliceController
    stop = threading.Event()
    c = EndpointSliceController(store, stop)
    t = c.start()
    assert c.synced.wait(5)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert all(not p.thread.is_alive() for p in c._pumps)


def test_over_http_with_api_client(store, tmp_path):
    import os
    import shutil
    import tempfile

    from testbed.apiserver.client import ApiClient
    from testbed.apiserver.server import serve

    d = tempfile.mkdtemp(prefix="tbctl-")
    handle = serve(store, os.path.join(d, "api.sock"))
    client = ApiClient(handle.socket_path)
    try:
        with ControllerManager(client, {"lb_pool": "198.51.100.0/28"}) as cm:
            assert cm.wait_synced(5)
            add_pod(store, "web-1", {"app": "web"}, ip="10.244.0.7", node_name="n")
            store.create(service("web", type="LoadBalancer"))
            (sl,) = wait_slices(client, "web", lambda eps: len(eps) == 1)
            assert sl["endpoints"][0]["addresses"] == ["10.244.0.7"]
            wait_event(client, "EnsuredLoadBalancer", name="web")
    finally:
        client.close()
        handle.close()
        shutil.rmtree(d, ignore_errors=True)


N_SERVICES = 1000


def _apply_burst(store):
    for i in range(N_SERVICES):
        for j in range(2):
            n = i * 2 + j
            add_pod(store, f"app{i}-{j}", {"app": f"app{i}"}, ip=f"10.244.{n // 250}.{n % 250 + 2}",
                    node_name="node-a")
        store.create(service(f"app{i}"))


def _wait_all_slices(store, timeout=30.0):
    """Incrementally count Services whose slice has both pods (no O(n^2) predicate)."""
    done = set()
    items, rv = store.list("EndpointSlice")
    w = store.watch("EndpointSlice", None, rv)
    for s in items:
        if len(s.get("endpoints") or []) == 2:
            done.add(s["metadata"]["labels"]["kubernetes.io/service-name"])
    timer = threading.Timer(timeout, w.stop)
    timer.start()
    try:
        while len(done) < N_SERVICES:
            ev = w.get()
            if ev is None:
                raise TimeoutError(f"only {len(done)} services done")
            s = ev["object"]
            name = s["metadata"]["labels"]["kubernetes.io/service-name"]
            if ev["type"] != "DELETED" and len(s.get("endpoints") or []) == 2:
                done.add(name)
            else:
                done.discard(name)
    finally:
        timer.cancel()
        w.stop()


def test_burst_1000_services_x_2_pods():
    store = new_store(1)
    try:
        cm = ControllerManager(store, {"controllers": ["endpointslice"], "seed": 1})
        cm.start()
        assert cm.wait_synced(5)
        _apply_burst(store)
        _wait_all_slices(store)
        ctrl = cm["endpointslice"]
        cm.stop()
        assert len(store.list("EndpointSlice")[0]) == N_SERVICES
        assert len(store.list("Endpoints")[0]) == N_SERVICES
        assert ctrl.batches <= ctrl.reconciles  # the burst was batched, not one pass per event
    finally:
        store.close()


def test_preloaded_1000_services_x_2_pods():
    """Everything stored before the controller starts: time the controller alone."""
    store = new_store(1)
    try:
        _apply_burst(store)
        cm = ControllerManager(store, {"controllers": ["endpointslice"], "seed": 1})
        cm.start()
        _wait_all_slices(store)
        ctrl = cm["endpointslice"]
        cm.stop()
        assert len(store.list("EndpointSlice")[0]) == N_SERVICES
        assert ctrl.reconciles >= N_SERVICES
    finally:
        store.close()


def test_a_field_selector_limits_what_a_controller_sees(store):
    from testbed.controllers.base import Controller

    class OnNodeA(Controller):
        kinds = ("Pod",)
        field_selectors = {"Pod": "spec.nodeName=node-a"}

        def __init__(self, store):
            super().__init__(store)
            self.seen: list[tuple] = []
            self.changed = threading.Event()

        def handle(self, kind, old, new, own=False):
            self.seen.append((new or old)["metadata"]["name"] if new else ("gone", old["metadata"]["name"]))
            self.changed.set()

        def reconcile(self, key):
            pass

    c = OnNodeA(store)
    c.start()
    try:
        assert c.synced.wait(5)
        add_pod(store, "elsewhere", {}, node_name="node-b")
        add_pod(store, "here", {}, node_name="node-a")
        while "here" not in c.seen:
            assert c.changed.wait(5)
            c.changed.clear()
        store.delete("Pod", "default", "here", grace_seconds=0)
        while ("gone", "here") not in c.seen:
            assert c.changed.wait(5)
            c.changed.clear()
        assert "elsewhere" not in c.seen and set(c.caches["Pod"].objects) == set()
    finally:
        c.stop()
