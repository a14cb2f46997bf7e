import pytest

from testbed.controllers import LoadBalancerController, wait_for
from testbed.controllers.loadbalancer import IPPool

from .helpers import service, wait_event


def lb(name, **spec):
    return service(name, type="LoadBalancer", **spec)


def _ingress(store, name, pred=lambda ips: bool(ips)):
    def check(objs):
        for s in objs:
            if s["metadata"]["name"] == name:
                ips = [i["ip"] for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
                if pred(ips):
                    return ips or ["<none>"]
        return None
    return wait_for(store, "Service", check)


@pytest.fixture
def lbc(store):
    c = LoadBalancerController(store, pool="192.0.2.0/29")
    c.start()
    assert c.synced.wait(5)
    yield c
    c.stop()


def test_assign_and_release(store, lbc):
    store.create(lb("a"))
    store.create(lb("b"))
    assert _ingress(store, "a") == ["192.0.2.1"]
    assert _ingress(store, "b") == ["192.0.2.2"]
    ev = wait_event(store, "IPAllocated", name="a")
    assert ev["message"] == 'Assigned IP ["192.0.2.1"]'
    assert ev["source"]["component"] == "service-controller"
    wait_event(store, "EnsuredLoadBalancer", name="a")
    store.delete("Service", "default", "a")
    wait_event(store, "DeletedLoadBalancer", name="a")
    store.create(lb("c"))
    assert _ingress(store, "c") == ["192.0.2.1"]  # reused after release


def test_type_change_releases(store, lbc):
    store.create(lb("a"))
    assert _ingress(store, "a") == ["192.0.2.1"]
    svc = store.get("Service", "default", "a")
    svc["spec"]["type"] = "ClusterIP"
    for p in svc["spec"]["ports"]:
        p.pop("nodePort", None)
    svc["spec"].pop("externalTrafficPolicy", None)
    svc["spec"].pop("allocateLoadBalancerNodePorts", None)
    store.update(svc)
    assert _ingress(store, "a", lambda ips: not ips) == ["<none>"]
    wait_event(store, "DeletedLoadBalancer", name="a")
    store.create(lb("b"))
    assert _ingress(store, "b") == ["192.0.2.1"]


def test_requested_ip_honoured_if_free(store, lbc):
    store.create(lb("a", loadBalancerIP="192.0.2.5"))
    assert _ingress(store, "a") == ["192.0.2.5"]
    store.create(lb("b", loadBalancerIP="192.0.2.5"))
    ev = wait_event(store, "SyncLoadBalancerFailed", name="b")
    assert ev["message"] == "Error syncing load balancer: requested IP 192.0.2.5 is already in use by default/a"
    store.create(lb("c", loadBalancerIP="10.0.0.1"))
    ev = wait_event(store, "SyncLoadBalancerFailed", name="c")
    assert "not in the pool 192.0.2.0/29" in ev["message"]


def test_pool_exhaustion_and_waiting(store, lbc):
    for i in range(6):
        store.create(lb(f"s{i}"))
    for i in range(6):
        _ingress(store, f"s{i}")
    store.create(lb("late"))
    wait_event(store, "SyncLoadBalancerFailed", name="late")
    store.delete("Service", "default", "s3")
    assert _ingress(store, "late") == ["192.0.2.4"]


def test_rebuild_on_start(store):
    c = LoadBalancerController(store, pool="192.0.2.0/29")
    c.start()
    store.create(lb("a"))
    store.create(lb("b"))
    assert _ingress(store, "b") == ["192.0.2.2"]
    c.stop()
    store.delete("Service", "default", "a")
    c2 = LoadBalancerController(store, pool="192.0.2.0/29")
    c2.start()
    try:
        assert c2.synced.wait(5)
        store.create(lb("c"))
        assert _ingress(store, "c") == ["192.0.2.1"]
        assert c2.assigned == {("default", "b"): "192.0.2.2", ("default", "c"): "192.0.2.1"}
    finally:
        c2.stop()


def test_load_balancer_class_is_not_ours(store, lbc):
    store.create(lb("other", loadBalancerClass="example.com/lb"))
    store.create(lb("mine"))
    _ingress(store, "mine")
    assert not (store.get("Service", "default", "other").get("status") or {}).get("loadBalancer", {}).get("ingress")


def test_pool_sizes():
    assert IPPool("192.0.2.0/29").size == 6
    with pytest.raises(ValueError):
        IPPool("fd00::/120")
