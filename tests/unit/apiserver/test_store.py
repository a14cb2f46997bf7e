import re
import threading

import pytest

from testbed.apiserver import errors
from testbed.apiserver.memory import MemoryStore
from testbed.apiserver.store import merge_patch

from .conftest import svc

CONFLICT_MSG = ('Operation cannot be fulfilled on services "web": the object has been modified; '
                "please apply your changes to the latest version and try again")


def test_create_sets_server_fields(store, rv):
    o = store.create(svc("web"))
    m = o["metadata"]
    assert m["namespace"] == "default" and m["name"] == "web"
    assert re.fullmatch(r"[0-9a-f-]{36}", m["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["creationTimestamp"])
    assert m["generation"] == 1
    assert m["resourceVersion"] == rv(1) and store.resource_version == rv(1)
    assert list(o)[:3] == ["apiVersion", "kind", "metadata"]


def test_create_ignores_client_resource_version_and_copies(store, rv):
    src = svc("web")
    src["metadata"]["resourceVersion"] = "999"
    o = store.create(src)
    assert o["metadata"]["resourceVersion"] == rv(1)
    assert "uid" not in src["metadata"]  # input not modified
    o["spec"]["ports"][0]["port"] = 1  # returned copies are private
    assert store.get("Service", "default", "web")["spec"]["ports"][0]["port"] == 80


def test_already_exists_and_not_found(store):
    store.create(svc("web"))
    with pytest.raises(errors.AlreadyExists) as ei:
        store.create(svc("web"))
    assert str(ei.value) == 'services "web" already exists' and ei.value.code == 409
    with pytest.raises(errors.NotFound) as ei:
        store.get("Service", "default", "nope")
    assert str(ei.value) == 'services "nope" not found' and ei.value.code == 404
    with pytest.raises(errors.NotFound, match='endpointslices.discovery.k8s.io "x" not found'):
        store.get("EndpointSlice", "default", "x")
    store.create(svc("web", ns="other"))  # same name, other namespace is fine


def test_name_required_and_generate_name(store):
    with pytest.raises(errors.Invalid) as ei:
        store.create({"kind": "Pod", "metadata": {}})
    assert ei.value.code == 422
    o = store.create({"kind": "Pod", "metadata": {"generateName": "web-"}})
    assert re.fullmatch(r"web-[a-z0-9]{5}", o["metadata"]["name"])


def test_cluster_scoped_kinds_have_no_namespace(store):
    n = store.create({"kind": "Node", "metadata": {"name": "n1", "namespace": "x"}})
    assert "namespace" not in n["metadata"]
    assert store.get("Node", None, "n1")["metadata"]["name"] == "n1"
    assert store.get("Node", "whatever", "n1")["metadata"]["name"] == "n1"
    store.create({"kind": "Namespace", "metadata": {"name": "kube-system"}})
    items, _ = store.list("Namespace")
    assert [i["metadata"]["name"] for i in items] == ["kube-system"]


def test_update_and_conflict(store, rv):
    o = store.create(svc("web"))
    o["spec"]["ports"] = [{"port": 81}]
    u = store.update(o)
    assert u["metadata"]["resourceVersion"] == rv(2)
    assert u["metadata"]["generation"] == 2
    assert u["metadata"]["uid"] == o["metadata"]["uid"]
    with pytest.raises(errors.Conflict) as ei:
        store.update(o)  # o still carries resourceVersion 1
    assert str(ei.value) == CONFLICT_MSG
    assert ei.value.code == 409 and ei.value.reason == "Conflict"
    # no resourceVersion: unconditional
    o["metadata"].pop("resourceVersion")
    o["spec"]["ports"] = [{"port": 82}]
    assert store.update(o)["metadata"]["resourceVersion"] == rv(3)
    with pytest.raises(errors.NotFound):
        store.update(svc("missing"))


def test_update_keeps_immutable_metadata(store):
    o = store.create(svc("web"))
    o["metadata"]["uid"] = ""
    o["metadata"]["creationTimestamp"] = "1999-01-01T00:00:00Z"
    o["metadata"]["labels"] = {"a": "b"}
    u = store.update(o)
    assert u["metadata"]["creationTimestamp"] != "1999-01-01T00:00:00Z"
    assert u["metadata"]["labels"] == {"a": "b"}
    assert u["metadata"]["generation"] == 1  # metadata-only change
    bad = dict(u, metadata=dict(u["metadata"], uid="other"))
    with pytest.raises(errors.Conflict, match="Precondition failed: UID"):
        store.update(bad)


def test_noop_update_writes_nothing(store, rv):
    o = store.create(svc("web"))
    u = store.update(o)
    assert u["metadata"]["resourceVersion"] == rv(1)
    assert store.resource_version == rv(1)


def test_status_subresource(store):
    o = store.create(svc("web"))
    o["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    u = store.update(o)
    assert "status" not in u  # ignored by update of the main resource
    o = dict(u, status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}, spec={"changed": True})
    s = store.update_status(o)
    assert s["status"]["loadBalancer"]["ingress"][0]["ip"] == "1.2.3.4"
    assert s["spec"] == {"ports": [{"port": 80}]}  # spec changes ignored by /status
    assert s["metadata"]["generation"] == 1
    s["spec"] = {"ports": [{"port": 90}]}
    s["status"] = {}
    u = store.update(s)
    assert u["status"]["loadBalancer"]["ingress"][0]["ip"] == "1.2.3.4"
    # kinds without a status subresource: update replaces everything
    e = store.create({"kind": "Endpoints", "metadata": {"name": "web"}, "subsets": []})
    e["subsets"] = [{"addresses": [{"ip": "10.0.0.1"}]}]
    assert store.update(e)["subsets"][0]["addresses"][0]["ip"] == "10.0.0.1"


def test_merge_patch_rfc7386():
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "c"}, {"a": ["b"]}) == {"a": ["b"]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_patch(store, rv):
    store.create(svc("web"))
    p = store.patch("Service", "default", "web", {"metadata": {"labels": {"app": "web"}},
                                                   "spec": {"type": "NodePort"}})
    assert p["metadata"]["labels"] == {"app": "web"} and p["spec"]["type"] == "NodePort"
    assert p["spec"]["ports"] == [{"port": 80}]
    p = store.patch("Service", "default", "web", {"metadata": {"labels": {"app": None}}})
    assert p["metadata"]["labels"] == {}
    with pytest.raises(errors.Conflict):
        store.patch("Service", "default", "web", {"metadata": {"resourceVersion": rv(1)}, "spec": {"x": 1}})
    s = store.patch("Service", "default", "web", {"status": {"conditions": []}}, subresource="status")
    assert s["status"] == {"conditions": []}
    with pytest.raises(errors.NotFound):
        store.patch("Service", "default", "nope", {})


def test_delete(store, rv):
    store.create(svc("web"))
    d = store.delete("Service", "default", "web")
    assert d["metadata"]["resourceVersion"] == rv(2)
    with pytest.raises(errors.NotFound):
        store.get("Service", "default", "web")
    with pytest.raises(errors.NotFound):
        store.delete("Service", "default", "web")


def test_delete_preconditions(store, rv):
    o = store.create(svc("web"))
    with pytest.raises(errors.Conflict, match="Precondition failed"):
        store.delete("Service", "default", "web", resource_version=rv(7))
    with pytest.raises(errors.Conflict, match="Precondition failed: UID"):
        store.delete("Service", "default", "web", uid="x")
    store.delete("Service", "default", "web", uid=o["metadata"]["uid"], resource_version=rv(1))


def test_graceful_delete(store):
    store.create({"kind": "Pod", "metadata": {"name": "p"}, "spec": {}})
    d = store.delete("Pod", "default", "p", grace_seconds=30)
    assert d["metadata"]["deletionTimestamp"] and d["metadata"]["deletionGracePeriodSeconds"] == 30
    assert store.get("Pod", "default", "p")["metadata"]["deletionTimestamp"]
    again = store.delete("Pod", "default", "p", grace_seconds=30)
    assert again["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]
    store.delete("Pod", "default", "p", grace_seconds=0)
    with pytest.raises(errors.NotFound):
        store.get("Pod", "default", "p")


def test_finalizers(store):
    store.create({"kind": "Service", "metadata": {"name": "web", "finalizers": ["x/y"]}, "spec": {}})
    d = store.delete("Service", "default", "web")
    assert d["metadata"]["deletionTimestamp"]
    o = store.get("Service", "default", "web")
    o["metadata"]["finalizers"] = []
    store.update(o)
    with pytest.raises(errors.NotFound):
        store.get("Service", "default", "web")


def test_list_namespaces_and_selectors(store, rv):
    for ns in ("a", "b"):
        for i in range(3):
            store.create({"kind": "Pod", "metadata": {"name": f"p{i}", "namespace": ns,
                                                      "labels": {"app": "web" if i else "db"}},
                          "spec": {"nodeName": f"n{i}"}})
    items, list_rv = store.list("Pod")
    assert len(items) == 6 and list_rv == rv(6)
    assert len(store.list("Pod", "a")[0]) == 3
    assert len(store.list("Pod", "a", "app=web")[0]) == 2
    assert len(store.list("Pod", None, "app in (db),app!=web")[0]) == 2
    assert len(store.list("Pod", None, lambda labels: labels.get("app") == "db")[0]) == 2
    assert len(store.list("Pod", None, {"app": "web"})[0]) == 4
    assert len(store.list("Pod", None, field_selector="spec.nodeName=n1")[0]) == 2
    assert len(store.list("Pod", None, field_selector="metadata.namespace=b,spec.nodeName!=n1")[0]) == 2
    assert store.list("Service") == ([], rv(6))


class RecordingAdmission:
    def __init__(self):
        self.calls = []
        self.next_ip = 1

    def admit_create(self, obj):
        self.calls.append(("create", obj["metadata"]["name"]))
        if obj["kind"] == "Service":
            if obj["spec"].get("bad"):
                raise AdmissionInvalid(f'Service "{obj["metadata"]["name"]}" is invalid: spec.bad: Forbidden')
            obj["spec"]["clusterIP"] = f"10.96.0.{self.next_ip}"
            self.next_ip += 1
        return obj

    def admit_update(self, new, old):
        self.calls.append(("update", new["metadata"]["name"]))
        new["spec"]["clusterIP"] = old["spec"]["clusterIP"]
        return new

    def admit_delete(self, obj):
        self.calls.append(("delete", obj["metadata"]["name"]))

    def rebuild(self, objects):
        self.calls.append(("rebuild", sorted(o["metadata"]["name"] for o in objects)))


class AdmissionInvalid(Exception):
    """Follows the contract (code/reason), like testbed.k8s.errors.Invalid."""
    code = 422
    reason = "Invalid"


def test_admission_hooks_and_error_contract(make_store):
    adm = RecordingAdmission()
    store = make_store(admission=adm)
    o = store.create(svc("web"))
    assert o["spec"]["clusterIP"] == "10.96.0.1"
    o["spec"]["clusterIP"] = "1.1.1.1"
    assert store.update(o)["spec"]["clusterIP"] == "10.96.0.1"
    with pytest.raises(AdmissionInvalid):
        store.create(svc("bad", bad=True))
    with pytest.raises(errors.NotFound):
        store.get("Service", "default", "bad")  # nothing committed
    rv = store.resource_version
    store.delete("Service", "default", "web")
    assert int(store.resource_version) == int(rv) + 1
    assert adm.calls == [("create", "web"), ("update", "web"), ("create", "bad"), ("delete", "web")]
    status = errors.status_from_exception(AdmissionInvalid('Service "bad" is invalid: x'))
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": 'Service "bad" is invalid: x', "reason": "Invalid", "code": 422}
    assert errors.status_from_exception(ValueError("boom"))["code"] == 500
    back = errors.exception_from_status(errors.status_from_exception(errors.conflict("services", "web")))
    assert isinstance(back, errors.Conflict) and str(back) == CONFLICT_MSG
    assert isinstance(errors.exception_from_status({"code": 410, "reason": "Expired", "message": "m"}),
                      errors.Gone)
    store.close()


def test_concurrent_writers_get_unique_resource_versions(store, rv):
    def worker(j):
        for i in range(200):
            store.create({"kind": "Pod", "metadata": {"name": f"p{j}-{i}"}, "spec": {}})
    ts = [threading.Thread(target=worker, args=(j,)) for j in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    items, list_rv = store.list("Pod")
    assert len(items) == 1600 and list_rv == rv(1600)
    assert sorted(i["metadata"]["resourceVersion"] for i in items) == sorted(rv(n) for n in range(1, 1601))


def test_closed_store_rejects_writes(make_store):
    s = make_store()
    s.close()
    with pytest.raises(errors.ServiceUnavailable):
        s.create(svc("web"))


class SubresourceAdmission(RecordingAdmission):
    def admit_update(self, new, old, subresource=None):
        self.calls.append(("update", new["metadata"]["name"], subresource))
        return new


def test_admission_gets_subresource_and_release_on_failed_commit(tmp_path):
    adm = SubresourceAdmission()
    store = MemoryStore(tmp_path / "state", admission=adm)
    o = store.create(svc("web"))
    o = store.update_status(dict(o, status={"x": 1}))
    store.update(dict(o, spec={"ports": [{"port": 81}]}))
    assert adm.calls[-2:] == [("update", "web", "status"), ("update", "web", None)]

    def broken(line):
        raise OSError("disk full")
    store._log.append = broken
    with pytest.raises(OSError):
        store.create(svc("b"))
    assert adm.calls[-1] == ("delete", "b")
    with pytest.raises(errors.NotFound):
        store.get("Service", "default", "b")
    store.close()


class RichError(Exception):
    code, reason = 422, "Invalid"

    def details(self):
        return {"name": "x", "causes": [{"field": "spec"}]}


class OwnStatusError(Exception):
    code, reason = 409, "AlreadyExists"

    def to_status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "own", "reason": "AlreadyExists", "code": 409}


def test_status_from_error_with_details_method_or_to_status():
    st = errors.status_from_exception(RichError("bad"))
    assert st["details"] == {"name": "x", "causes": [{"field": "spec"}]} and st["message"] == "bad"
    assert errors.status_from_exception(OwnStatusError("x"))["message"] == "own"


def test_history_ages_out_beyond_the_newest_hundred():
    from testbed.apiserver import history

    now = [0.0]
    s = MemoryStore(history=10_000, history_seconds=75.0, clock=lambda: now[0])
    for i in range(150):
        s.create(svc(f"old{i}"))
    now[0] = 80.0
    s.create(svc("new"))                     # a write ages out what is older than 75 s ...
    assert len(s._history) == history.MIN_HISTORY     # ... keeping the newest hundred
    with pytest.raises(errors.Gone):
        s.watch("Service", resource_version="1")
    now[0] = 200.0
    with s._lock:                            # no write: the periodic trim does it
        assert s._history.trim() == 0        # never below the newest hundred
    s.close()
