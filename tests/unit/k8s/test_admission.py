"""Admission lifecycle: allocation on create, type transitions, immutability, delete, rebuild."""

import copy

import pytest

from testbed.k8s import Invalid
from testbed.k8s.errors import BadRequest

from .helpers import admission, svc


def test_create_allocates_and_delete_releases():
    adm = admission()
    s = adm.admit_create(svc(spec={"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}))
    ip, np = s["spec"]["clusterIP"], s["spec"]["ports"][0]["nodePort"]
    assert s["spec"]["clusterIPs"] == [ip] and adm.allocators.ips.has(ip) and adm.allocators.ports.has(np)
    adm.admit_delete(s)
    assert not adm.allocators.ips.has(ip) and not adm.allocators.ports.has(np)


def test_kubernetes_service_gets_first_address_and_dns_only_on_request():
    adm = admission()
    k = adm.admit_create(adm.kubernetes_service())
    assert k["spec"]["clusterIP"] == "10.96.0.1"
    dns = adm.admit_create(svc("kube-dns", {"clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"},
                                            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                      {"name": "dns-tcp", "port": 53}]}, namespace="kube-system"))
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    adm2 = admission()
    ips = {adm2.admit_create(svc(f"s{i}"))["spec"]["clusterIP"] for i in range(50)}
    assert "10.96.0.1" not in ips and "10.96.0.10" not in ips


def test_failed_validation_rolls_back_allocations():
    adm = admission()
    with pytest.raises(Invalid):
        adm.admit_create(svc("Bad", {"type": "NodePort", "clusterIP": "10.96.3.3", "ports": [{"port": 80, "nodePort": 30123}]}))
    assert not adm.allocators.ips.has("10.96.3.3") and not adm.allocators.ports.has(30123)


def test_cluster_ip_is_immutable():
    adm = admission()
    old = adm.admit_create(svc())
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.7.7"
    new["spec"]["clusterIPs"] = ["10.96.7.7"]
    with pytest.raises(Invalid) as e:
        adm.admit_update(new, old)
    assert str(e.value) == 'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["10.96.7.7"]: may not change once set'


def test_update_without_allocated_values_keeps_them():
    adm = admission()
    old = adm.admit_create(svc(spec={"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "name": "http"}]}))
    again = adm.admit_update(svc(spec={"type": "NodePort", "selector": {"app": "web", "v": "2"}, "ports": [{"port": 80, "name": "http"}]}), old)
    assert again["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert again["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]
    assert again["metadata"]["uid"] == old["metadata"]["uid"]


def test_cluster_ip_to_node_port_allocates_and_back_releases():
    adm = admission()
    old = adm.admit_create(svc())
    new = copy.deepcopy(old)
    new["spec"]["type"] = "NodePort"
    np_svc = adm.admit_update(new, old)
    np = np_svc["spec"]["ports"][0]["nodePort"]
    assert adm.allocators.ports.has(np) and np_svc["spec"]["externalTrafficPolicy"] == "Cluster"
    back = copy.deepcopy(np_svc)
    back["spec"]["type"] = "ClusterIP"
    cip = adm.admit_update(back, np_svc)
    assert "nodePort" not in cip["spec"]["ports"][0] and "externalTrafficPolicy" not in cip["spec"]
    assert not adm.allocators.ports.has(np)
    assert cip["spec"]["clusterIP"] == old["spec"]["clusterIP"]


def test_cluster_ip_to_external_name_releases_and_back_allocates():
    adm = admission()
    old = adm.admit_create(svc())
    ip = old["spec"]["clusterIP"]
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="example.com")
    ext = adm.admit_update(new, old)
    assert "clusterIP" not in ext["spec"] and not adm.allocators.ips.has(ip)
    back = copy.deepcopy(ext)
    back["spec"]["type"] = "ClusterIP"
    again = adm.admit_update(back, ext)
    assert adm.allocators.ips.has(again["spec"]["clusterIP"]) and again["spec"]["ipFamilies"] == ["IPv4"]


def test_load_balancer_local_to_cluster_releases_health_check_port():
    adm = admission()
    old = adm.admit_create(svc(spec={"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                                     "ports": [{"port": 80}]}))
    hc = old["spec"]["healthCheckNodePort"]
    new = copy.deepcopy(old)
    new["spec"]["externalTrafficPolicy"] = "Cluster"
    out = adm.admit_update(new, old)
    assert "healthCheckNodePort" not in out["spec"] and not adm.allocators.ports.has(hc)
    again = copy.deepcopy(out)
    again["spec"]["externalTrafficPolicy"] = "Local"
    out2 = adm.admit_update(again, out)
    assert adm.allocators.ports.has(out2["spec"]["healthCheckNodePort"])
    changed = copy.deepcopy(out2)
    changed["spec"]["healthCheckNodePort"] = 31999
    with pytest.raises(Invalid, match="spec.healthCheckNodePort: Forbidden: field is immutable"):
        adm.admit_update(changed, out2)


def test_failed_update_keeps_old_allocations():
    adm = admission()
    old = adm.admit_create(svc(spec={"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}))
    np = old["spec"]["ports"][0]["nodePort"]
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["sessionAffinity"] = "Sticky"
    with pytest.raises(Invalid):
        adm.admit_update(new, old)
    assert adm.allocators.ports.has(np)


def test_rebuild_after_restart():
    adm = admission()
    objs = [adm.admit_create(svc(f"s{i}", {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]})) for i in range(5)]
    fresh = admission(seed=99)
    assert fresh.rebuild(objs + [{"kind": "Pod"}]) == []
    for o in objs:
        assert fresh.allocators.ips.has(o["spec"]["clusterIP"])
        with pytest.raises(Invalid, match="provided port is already allocated"):
            fresh.admit_create(svc("n", {"type": "NodePort", "ports": [{"port": 80, "nodePort": o["spec"]["ports"][0]["nodePort"]}]}))


def test_unknown_kind_is_refused():
    with pytest.raises(BadRequest, match='no matches for kind "PersistentVolumeClaim"'):
        admission().admit_create({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}})


def test_overlapping_networks_refused():
    with pytest.raises(ValueError, match="overlaps"):
        admission(service_network="10.244.0.0/12")
