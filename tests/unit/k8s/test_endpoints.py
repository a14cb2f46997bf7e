import copy
import random

from testbed.k8s.endpoints import (
    CONTROLLER_NAME,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    PodIndex,
    desired_slices,
    endpoints_mirror,
)

from .helpers import admission, pod, svc


def service(spec=None, name="web", **meta):
    return admission().admit_create(svc(name, spec or {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}, **meta))


def apply(existing, create, update, delete):
    """What the API store would end up with."""
    by_name = {s["metadata"]["name"]: s for s in existing}
    for s in delete:
        by_name.pop(s["metadata"]["name"])
    for s in update + create:
        by_name[s["metadata"]["name"]] = s
    return list(by_name.values())


def test_ready_pods_make_one_slice_shaped_like_upstream():
    s = service(labels={"team": "a"})
    pods = [pod("p1", ip="10.244.0.5", node="node-a"), pod("p2", ip="10.244.1.5", node="node-b")]
    create, update, delete = desired_slices(s, pods, [], rng=random.Random(0))
    assert update == [] and delete == [] and len(create) == 1
    sl = create[0]
    m = sl["metadata"]
    assert m["name"].startswith("web-") and len(m["name"]) == 9 and m["generateName"] == "web-"
    assert m["labels"] == {"team": "a", LABEL_SERVICE_NAME: "web", LABEL_MANAGED_BY: CONTROLLER_NAME}
    assert m["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": s["metadata"]["uid"],
                                     "controller": True, "blockOwnerDeletion": True}]
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]
    assert sl["endpoints"][0] == {
        "addresses": ["10.244.0.5"], "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "p1", "uid": "uid-p1"}, "nodeName": "node-a"}


def test_not_ready_terminating_and_excluded_pods():
    s = service()
    pods = [
        pod("ready", ip="10.244.0.1"),
        pod("notready", ip="10.244.0.2", ready=False),
        pod("term-ready", ip="10.244.0.3", deleting=True),
        pod("term-notready", ip="10.244.0.4", ready=False, deleting=True),
        pod("noip"),
        pod("done", ip="10.244.0.6", phase="Succeeded"),
        pod("failed", ip="10.244.0.7", phase="Failed"),
        pod("other", ip="10.244.0.8", labels={"app": "db"}),
        pod("elsewhere", ip="10.244.0.9", ns="other"),
    ]
    (sl,), _, _ = desired_slices(s, pods, [])
    cond = {e["targetRef"]["name"]: e["conditions"] for e in sl["endpoints"]}
    assert cond == {
        "ready": {"ready": True, "serving": True, "terminating": False},
        "notready": {"ready": False, "serving": False, "terminating": False},
        "term-ready": {"ready": False, "serving": True, "terminating": True},
        "term-notready": {"ready": False, "serving": False, "terminating": True},
    }


def test_publish_not_ready_addresses():
    s = service({"selector": {"app": "web"}, "publishNotReadyAddresses": True, "ports": [{"port": 80}]})
    (sl,), _, _ = desired_slices(s, [pod("a", ip="10.244.0.2", ready=False), pod("b", ip="10.244.0.3", deleting=True)], [])
    assert [e["conditions"]["ready"] for e in sl["endpoints"]] == [True, True]
    ep = endpoints_mirror(s, [sl])
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.0.2", "10.244.0.3"]


def test_named_target_ports_resolved_per_pod():
    s = service({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]})
    pods = [pod("a", ip="10.244.0.2", ports=[{"name": "web", "containerPort": 8080}]),
            pod("b", ip="10.244.0.3", ports=[{"name": "web", "containerPort": 9090}]),
            pod("c", ip="10.244.0.4", ports=[{"name": "web", "containerPort": 8080}]),
            pod("d", ip="10.244.0.5", ports=[{"name": "web", "containerPort": 8080, "protocol": "UDP"}])]
    create, _, _ = desired_slices(s, pods, [])
    by_port = {sl["ports"][0]["port"] if sl["ports"] else None: sorted(e["targetRef"]["name"] for e in sl["endpoints"])
               for sl in create}
    # d has no TCP port named "web": it is in a slice without ports
    assert by_port == {8080: ["a", "c"], 9090: ["b"], None: ["d"]}


def test_slices_split_at_100_and_updates_in_place():
    s = service()
    pods = [pod(f"p{i}", ip=f"10.244.{i // 250}.{i % 250 + 1}") for i in range(250)]
    create, update, delete = desired_slices(s, pods, [], rng=random.Random(1))
    assert sorted(len(sl["endpoints"]) for sl in create) == [50, 100, 100] and not update and not delete
    assert len({sl["metadata"]["name"] for sl in create}) == 3
    stored = apply([], create, update, delete)
    # steady state: nothing to do
    assert desired_slices(s, pods, stored) == ([], [], [])
    # remove 10 pods, add 5: existing slices are updated, nothing created
    pods2 = pods[10:] + [pod(f"n{i}", ip=f"10.244.9.{i + 1}") for i in range(5)]
    create, update, delete = desired_slices(s, pods2, stored)
    assert not create and not delete and len(update) >= 1
    stored = apply(stored, create, update, delete)
    names = sorted(e["targetRef"]["name"] for sl in stored for e in sl["endpoints"])
    assert names == sorted(p["metadata"]["name"] for p in pods2)
    assert all(len(sl["endpoints"]) <= 100 for sl in stored)


def test_condition_change_updates_slice():
    s = service()
    pods = [pod("a", ip="10.244.0.2")]
    stored = apply([], *desired_slices(s, pods, []))
    pods[0]["status"]["conditions"][0]["status"] = "False"
    create, update, delete = desired_slices(s, pods, stored)
    assert not create and not delete and update[0]["endpoints"][0]["conditions"]["ready"] is False
    assert update[0]["metadata"]["name"] == stored[0]["metadata"]["name"]


def test_no_selector_gets_nothing_and_user_slices_untouched():
    s = service({"ports": [{"port": 80}]})
    user_slice = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": "web-1", "namespace": "default", "labels": {LABEL_SERVICE_NAME: "web"}},
                  "addressType": "IPv4", "endpoints": [{"addresses": ["192.168.1.1"]}]}
    assert desired_slices(s, [pod("a", ip="10.244.0.2")], [user_slice]) == ([], [], [])
    assert endpoints_mirror(s, [user_slice]) is None
    # a selector service also ignores slices managed by someone else
    s2 = service()
    create, update, delete = desired_slices(s2, [pod("a", ip="10.244.0.2")], [user_slice])
    assert len(create) == 1 and not update and not delete and create[0]["metadata"]["name"] != "web-1"


def test_headless_service_gets_slices_with_headless_label():
    s = service({"clusterIP": "None", "selector": {"app": "web"}})
    (sl,), _, _ = desired_slices(s, [pod("a", ip="10.244.0.2")], [])
    assert sl["ports"] == [] and sl["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert endpoints_mirror(s, [sl])["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}


def _named(name, hostname=None, subdomain=None, ns="default", ip="10.244.0.2"):
    p = pod(name, ip=ip, ns=ns)
    if hostname:
        p["spec"]["hostname"] = hostname
    if subdomain:
        p["spec"]["subdomain"] = subdomain
    return p


def test_hostname_set_only_for_pods_whose_subdomain_is_the_service():
    """``ShouldSetHostname``: spec.hostname set, spec.subdomain == Service name, same namespace."""
    s = service({"clusterIP": "None", "selector": {"app": "web"}})
    pods = [_named("web-0", "web-0", "web", ip="10.244.0.2"), _named("web-1", "web-1", "other", ip="10.244.0.3"),
            _named("web-2", None, "web", ip="10.244.0.4"), _named("web-3", "web-3", None, ip="10.244.0.5")]
    (sl,), _, _ = desired_slices(s, pods, [])
    hosts = {e["addresses"][0]: e.get("hostname") for e in sl["endpoints"]}
    assert hosts == {"10.244.0.2": "web-0", "10.244.0.3": None, "10.244.0.4": None, "10.244.0.5": None}


def test_hostname_change_updates_the_slice():
    s = service({"clusterIP": "None", "selector": {"app": "web"}})
    (sl,), _, _ = desired_slices(s, [_named("web-0", "a", "web")], [])
    create, (updated,), delete = desired_slices(s, [_named("web-0", "b", "web")], [sl])
    assert create == [] and delete == [] and updated["endpoints"][0]["hostname"] == "b"


def test_placeholder_slice_when_no_endpoints_and_reuse():
    s = service()
    (ph,), _, _ = desired_slices(s, [], [])
    assert ph["endpoints"] == [] and ph["ports"] == []
    stored = apply([], [ph], [], [])
    assert desired_slices(s, [], stored) == ([], [], [])
    # first pod: the placeholder is turned into the real slice (update, not delete+create)
    create, update, delete = desired_slices(s, [pod("a", ip="10.244.0.2")], stored)
    assert not create and not delete and update[0]["metadata"]["name"] == ph["metadata"]["name"]
    assert update[0]["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]


def test_slices_of_a_previous_service_with_same_name_are_replaced():
    old = service()
    stored = apply([], *desired_slices(old, [pod("a", ip="10.244.0.2")], []))
    new = service()  # new uid
    create, update, delete = desired_slices(new, [pod("a", ip="10.244.0.2")], stored)
    # not owned by the new Service: deleted, and a fresh one created (finalize() only reuses owned slices)
    assert len(create) == 1 and not update and [d["metadata"]["name"] for d in delete] == [stored[0]["metadata"]["name"]]
    assert all(o["uid"] == new["metadata"]["uid"] for sl in create + update for o in sl["metadata"]["ownerReferences"])


def test_nodes_unknown_node_skipped_and_zone_set():
    s = service()
    nodes = [{"metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z1"}}}]
    (sl,), _, _ = desired_slices(s, [pod("a", ip="10.244.0.2"), pod("b", ip="10.244.1.2", node="gone")], [], nodes=nodes)
    assert [(e["targetRef"]["name"], e.get("zone")) for e in sl["endpoints"]] == [("a", "z1")]


def test_endpoints_mirror():
    s = service({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}, labels={"team": "a"})
    pods = [pod("b", ip="10.244.0.10"), pod("a", ip="10.244.0.9"), pod("nr", ip="10.244.0.3", ready=False),
            pod("t", ip="10.244.0.4", deleting=True)]
    create, _, _ = desired_slices(s, pods, [])
    ep = endpoints_mirror(s, create)
    assert ep["metadata"] == {"name": "web", "namespace": "default", "labels": {"team": "a"}}
    (ss,) = ep["subsets"]
    assert [a["ip"] for a in ss["addresses"]] == ["10.244.0.9", "10.244.0.10"]
    assert [a["ip"] for a in ss["notReadyAddresses"]] == ["10.244.0.3"]
    assert ss["addresses"][0] == {"ip": "10.244.0.9", "nodeName": "node-a",
                                  "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}
    assert ss["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert "subsets" not in endpoints_mirror(s, [])


def test_pod_index():
    pods = [pod(f"p{i}", labels={"app": f"s{i % 10}", "tier": "x"}, ip=f"10.244.0.{i + 1}") for i in range(100)]
    idx = PodIndex(pods)
    s = copy.deepcopy(service())
    s["spec"]["selector"] = {"app": "s3", "tier": "x"}
    assert sorted(p["metadata"]["name"] for p in idx.for_service(s)) == sorted(f"p{i}" for i in range(3, 100, 10))
