import pytest

from testbed.apiserver import BadRequest, Gone
from testbed.controllers import EndpointSliceController, wait_for

from .helpers import add_pod, service, set_status, slices_for, wait_event, wait_slices


@pytest.fixture
def ctrl(store):
    c = EndpointSliceController(store)
    c.start()
    assert c.synced.wait(5)
    yield c
    c.stop()


def _ips(eps):
    return sorted(a for e in eps for a in e["addresses"])


def test_pods_and_service_give_slice_with_ips_and_named_port(store, ctrl):
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2")
    add_pod(store, "web-2", {"app": "web"}, ip="10.244.2.2")
    add_pod(store, "other", {"app": "db"}, ip="10.244.1.9")
    store.create(service("web"))
    slices = wait_slices(store, "web", lambda eps: len(eps) == 2)
    assert len(slices) == 1
    sl = slices[0]
    assert _ips(sl["endpoints"]) == ["10.244.1.2", "10.244.2.2"]
    assert sl["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]  # named targetPort resolved
    assert sl["addressType"] == "IPv4"
    labels = sl["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert sl["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert all(e["conditions"] == {"ready": True, "serving": True, "terminating": False} for e in sl["endpoints"])

    ep = wait_for(store, "Endpoints", lambda objs: [o for o in objs if o["metadata"]["name"] == "web"
                                                     and o.get("subsets")])[0]
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.1.2", "10.244.2.2"]
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_pod_deleted_leaves_slice(store, ctrl):
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2")
    add_pod(store, "web-2", {"app": "web"}, ip="10.244.2.2")
    store.create(service("web"))
    wait_slices(store, "web", lambda eps: len(eps) == 2)
    store.delete("Pod", "default", "web-1")
    slices = wait_slices(store, "web", lambda eps: _ips(eps) == ["10.244.2.2"])
    assert len(slices) == 1
    store.delete("Pod", "default", "web-2")
    slices = wait_slices(store, "web", lambda eps: eps == [])
    assert len(slices) == 1 and slices[0]["endpoints"] == []  # the placeholder slice
    ep = wait_for(store, "Endpoints", lambda objs: [o for o in objs if o["metadata"]["name"] == "web"
                                                     and not o.get("subsets")])
    assert ep


def test_not_ready_pod_is_ready_false(store, ctrl):
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2", ready=False)
    store.create(service("web"))
    (sl,) = wait_slices(store, "web", lambda eps: len(eps) == 1)
    assert sl["endpoints"][0]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    ep = wait_for(store, "Endpoints", lambda objs: [o for o in objs if o.get("subsets")])[0]
    assert [a["ip"] for a in ep["subsets"][0]["notReadyAddresses"]] == ["10.244.1.2"]
    # becomes ready
    set_status(store, store.get("Pod", "default", "web-1"), "10.244.1.2", ready=True)
    wait_slices(store, "web", lambda eps: eps and eps[0]["conditions"]["ready"])


def test_pod_without_ip_is_not_an_endpoint_until_it_has_one(store, ctrl):
    pod = add_pod(store, "web-1", {"app": "web"})
    store.create(service("web"))
    wait_slices(store, "web", lambda eps: eps == [])
    set_status(store, pod, "10.244.3.3")
    wait_slices(store, "web", lambda eps: _ips(eps) == ["10.244.3.3"])


def test_label_change_moves_pod_between_services(store, ctrl):
    store.create(service("a"))
    store.create(service("b"))
    pod = add_pod(store, "p", {"app": "a"}, ip="10.244.1.5")
    wait_slices(store, "a", lambda eps: len(eps) == 1)
    pod = store.get("Pod", "default", "p")
    pod["metadata"]["labels"] = {"app": "b"}
    store.update(pod)
    wait_slices(store, "b", lambda eps: len(eps) == 1)
    wait_slices(store, "a", lambda eps: eps == [])


def test_user_managed_slices_untouched_and_tampering_repaired(store, ctrl):
    user = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-manual", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web",
                                    "endpointslice.kubernetes.io/managed-by": "someone-else"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["192.0.2.1"]}], "ports": []}
    store.create(user)
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2")
    store.create(service("web"))
    slices = wait_slices(store, "web", lambda eps: "10.244.1.2" in _ips(eps))
    assert {s["metadata"]["name"] for s in slices} >= {"web-manual"}
    managed = [s for s in slices if s["metadata"]["name"] != "web-manual"][0]
    # someone empties the managed slice: the controller puts the endpoint back
    managed["endpoints"] = []
    store.update(managed)
    wait_slices(store, "web", lambda eps: _ips(eps) == ["10.244.1.2", "192.0.2.1"])
    store.delete("Service", "default", "web")
    wait_for(store, "EndpointSlice", lambda objs: [o["metadata"]["name"] for o in objs] == ["web-manual"])
    assert store.get("EndpointSlice", "default", "web-manual")["endpoints"] == user["endpoints"]


def test_service_deleted_removes_slices_and_endpoints(store, ctrl):
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2")
    store.create(service("web"))
    wait_slices(store, "web", lambda eps: len(eps) == 1)
    store.delete("Service", "default", "web")
    wait_for(store, "EndpointSlice", lambda objs: not objs)
    wait_for(store, "Endpoints", lambda objs: not objs)


def test_selectorless_service_is_left_alone(store, ctrl):
    store.create(service("ext", selector={}))
    store.create(service("web"))
    wait_slices(store, "web", lambda eps: True)
    assert slices_for(store, "ext") == []


def test_events_timeline(store):
    # objects first, then the controller: the pod's IP and the Service arrive through
    # different watches, so with a running controller the first slice may be a placeholder
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2")
    svc = store.create(service("web"))
    c = EndpointSliceController(store)
    c.start()
    try:
        _check_timeline(store, svc)
    finally:
        c.stop()


def _check_timeline(store, svc):
    wait_slices(store, "web", lambda eps: len(eps) == 1)
    ev = wait_event(store, "EndpointsCreated", name="web", kind="Service")
    first = wait_event(store, "ClusterIPAllocated", name="web")
    created = wait_event(store, "EndpointSliceCreated", name="web")
    assert first["message"] == f"Service stored with ClusterIP {svc['spec']['clusterIP']}"
    assert created["message"].startswith("Created EndpointSlice web-")
    assert created["message"].endswith(": 1 endpoint (1 ready), IPv4, ports http=8080/TCP")
    assert ev["message"] == "Created Endpoints web: 10.244.1.2:8080"
    for e in (first, created, ev):
        assert e["source"] == {"component": "endpointslice-controller"}
        assert e["type"] == "Normal" and e["count"] == 1
        assert e["involvedObject"]["uid"] == svc["metadata"]["uid"]
        assert e["firstTimestamp"] == e["lastTimestamp"]


def test_nodes_when_present_give_zone(store, ctrl):
    store.create({"apiVersion": "v1", "kind": "Node",
                  "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}})
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2", node_name="n1")
    store.create(service("web"))
    (sl,) = wait_slices(store, "web", lambda eps: len(eps) == 1 and eps[0].get("zone") == "z1")
    assert sl["endpoints"][0]["nodeName"] == "n1"


class GoneOnce:
    """Delegates to a store; the first Pod watch changes the store behind the controller's
    back (a pod deleted, another added) and then fails with 410 Gone."""

    def __init__(self, store):
        self._store = store
        self.fired = False

    def __getattr__(self, name):
        return getattr(self._store, name)

    def watch(self, kind, *args, **kw):
        if kind == "Pod" and not self.fired:
            self.fired = True
            self._store.delete("Pod", "default", "web-1")
            add_pod(self._store, "web-3", {"app": "web"}, ip="10.244.3.3")
            raise Gone("too old resource version: 1 (5)")
        return self._store.watch(kind, *args, **kw)


def test_relist_after_gone_reports_missed_changes(store):
    add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2")
    add_pod(store, "web-2", {"app": "web"}, ip="10.244.2.2")
    store.create(service("web"))
    wrapped = GoneOnce(store)
    c = EndpointSliceController(wrapped)
    c.start()
    try:
        wait_slices(store, "web", lambda eps: _ips(eps) == ["10.244.2.2", "10.244.3.3"])
        assert wrapped.fired
        assert [p.relists for p in c._pumps if p.kind == "Pod"] == [1]
    finally:
        c.stop()


class NoEvents:
    """A store that rejects Events (like one whose admission does not know the kind)."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def create(self, obj):
        if obj.get("kind") == "Event":
            raise BadRequest('no matches for kind "Event" in version "v1"')
        return self._store.create(obj)


def test_events_are_best_effort(store):
    c = EndpointSliceController(NoEvents(store))
    c.start()
    try:
        add_pod(store, "web-1", {"app": "web"}, ip="10.244.1.2")
        store.create(service("web"))
        wait_slices(store, "web", lambda eps: len(eps) == 1)
        wait_for(store, "Endpoints", lambda objs: objs)
        assert c.recorder.written == 0
        assert c.recorder._sink.failures >= 2
    finally:
        c.stop()
