"""pods/binding (spec.nodeName and PodScheduled=True in one write) and pipelined creates."""

import os
import random

import pytest

from testbed.apiserver import errors
from testbed.apiserver.client import ApiClient
from testbed.apiserver.memory import MemoryStore
from testbed.apiserver.server import serve
from testbed.k8s.admission import Admission

from .test_server import raw

CONFIG = {"service_network": "10.96.0.0/16", "pod_network": "10.244.0.0/16"}


def pod(name, ns="default", **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "x"}], **spec}}


@pytest.fixture
def admitted(make_store):
    return make_store(admission=Admission(CONFIG, rng=random.Random(1)))


def test_bind_is_one_write_of_node_and_condition(admitted):
    p = admitted.create(pod("a"))
    w = admitted.watch("Pod", resource_version=p["metadata"]["resourceVersion"])
    try:
        b = admitted.bind("default", "a", "node1", uid=p["metadata"]["uid"],
                          resource_version=p["metadata"]["resourceVersion"], annotations={"x": "y"})
        assert b["spec"]["nodeName"] == "node1" and b["metadata"]["annotations"] == {"x": "y"}
        assert int(b["metadata"]["resourceVersion"]) > int(p["metadata"]["resourceVersion"])
        cond = [c for c in b["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert len(cond) == 1 and cond[0]["status"] == "True" and cond[0]["lastTransitionTime"]
        assert b["status"]["phase"] == "Pending"  # what admission set at create stays
        ev = w.get(timeout=5)
        assert ev["type"] == "MODIFIED" and ev["object"]["spec"]["nodeName"] == "node1"
        assert ev["object"]["status"] == b["status"]
        assert w.get(timeout=0.2) is None  # one write: one event
    finally:
        w.stop()
    assert admitted.get("Pod", "default", "a") == b


def test_bind_refusals(admitted):
    p = admitted.create(pod("a"))
    with pytest.raises(errors.Conflict):  # stale resourceVersion
        admitted.bind("default", "a", "n", resource_version=str(int(p["metadata"]["resourceVersion"]) - 1))
    with pytest.raises(errors.ApiError) as e:
        admitted.bind("default", "a", "n", uid="not-its-uid")
    assert e.value.code == 409
    with pytest.raises(errors.Invalid, match="target.name: Required value"):
        admitted.bind("default", "a", "")
    with pytest.raises(errors.NotFound):
        admitted.bind("default", "nope", "n")
    admitted.bind("default", "a", "n1")
    with pytest.raises(errors.Conflict, match='pod a is already assigned to node "n1"'):
        admitted.bind("default", "a", "n2")
    assert admitted.get("Pod", "default", "a")["spec"]["nodeName"] == "n1"


def test_binding_over_http(short_dir):
    store = MemoryStore(admission=Admission(CONFIG, rng=random.Random(1)))
    handle = serve(store, os.path.join(short_dir, "api.sock"))
    c = ApiClient(handle.socket_path)
    try:
        p = c.create(pod("a"))
        st = c.bind("default", "a", "node1", uid=p["metadata"]["uid"])
        assert st["kind"] == "Status" and st["status"] == "Success"
        got = c.get("Pod", "default", "a")
        assert got["spec"]["nodeName"] == "node1"
        assert [x["type"] for x in got["status"]["conditions"]] == ["PodScheduled"]
        with pytest.raises(errors.Conflict, match="already assigned"):
            c.bind("default", "a", "node2")
        path = "/api/v1/namespaces/default/pods/a/binding"
        code, _, body = raw(handle.socket_path, "GET", path)
        assert code == 405 and body["kind"] == "Status"
        c.create(pod("b"))
        code, _, body = raw(handle.socket_path, "POST", "/api/v1/namespaces/default/pods/b/binding",
                            b'{"kind":"Binding","target":{"kind":"Service","name":"x"}}',
                            {"Content-Type": "application/json"})
        assert code == 422 and "target.kind" in body["message"]
        assert "nodeName" not in c.get("Pod", "default", "b")["spec"]
    finally:
        c.close()
        handle.close()
        store.close()


def test_create_pipelined_keeps_order_and_reports_each_refusal(api):
    store, handle, c = api
    c.create(pod("p3"))
    objs = [pod(f"p{i}") for i in range(100)] + [{"apiVersion": "v1", "kind": "Pod", "metadata": {}}]
    out = list(c.create_pipelined(objs, window=8))
    assert len(out) == 101
    assert isinstance(out[3], errors.AlreadyExists) and isinstance(out[100], errors.Invalid)
    made = [o for o in out if isinstance(o, dict)]
    assert [o["metadata"]["name"] for o in made] == [f"p{i}" for i in range(100) if i != 3]
    rvs = [int(o["metadata"]["resourceVersion"]) for o in made]
    assert rvs == sorted(rvs)  # written in the list's order


def test_create_pipelined_finishes_one_by_one_when_the_server_closes(api, monkeypatch):
    store, handle, c = api
    from testbed.apiserver import client as client_mod

    real = client_mod._read_response
    calls = []

    def flaky(rfile):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionResetError("gone")
        return real(rfile)
    monkeypatch.setattr(client_mod, "_read_response", flaky)
    out = list(c.create_pipelined([pod(f"q{i}") for i in range(6)], window=4))
    # the two answered are objects; the rest were sent again one by one: the ones the server
    # had already stored are refused as existing, none is lost
    assert [type(o) for o in out[:2]] == [dict, dict]
    assert all(isinstance(o, (dict, errors.AlreadyExists)) for o in out[2:])
    assert sorted(p["metadata"]["name"] for p in store.list("Pod")[0]) == [f"q{i}" for i in range(6)]


def test_patch_pipelined_patches_status_in_order_and_reports_each_refusal(api):
    store, handle, c = api
    for i in range(20):
        c.create(pod(f"s{i}"))
    patches = [("Pod", "default", f"s{i}", {"status": {"phase": "Running", "podIP": f"10.244.0.{i + 2}"}}, "status")
               for i in range(20)] + [("Pod", "default", "missing", {"status": {"phase": "Running"}}, "status")]
    out = list(c.patch_pipelined(patches, window=6))
    assert len(out) == 21 and isinstance(out[20], errors.NotFound)
    assert [o["status"]["podIP"] for o in out[:20]] == [f"10.244.0.{i + 2}" for i in range(20)]
    rvs = [int(o["metadata"]["resourceVersion"]) for o in out[:20]]
    assert rvs == sorted(rvs)
    assert c.get("Pod", "default", "s7")["status"]["phase"] == "Running"
