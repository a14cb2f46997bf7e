import http.client
import json
import os
import socket
import threading
import time

import pytest

from testbed.apiserver import errors
from testbed.apiserver.client import ApiClient, ListWatch
from testbed.apiserver.server import serve
from testbed.apiserver.memory import MemoryStore

from .conftest import svc


def raw(sock_path, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("localhost")
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    conn.sock = s
    conn.request(method, path, body, headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), json.loads(data) if data and data[:1] in b"{[" else data


def test_crud_over_socket(api):
    store, handle, c = api
    o = c.create(svc("web", ns="ns1"))
    assert o["metadata"]["resourceVersion"] == "1" and o["metadata"]["namespace"] == "ns1"
    assert c.get("Service", "ns1", "web")["metadata"]["uid"] == o["metadata"]["uid"]
    o["spec"]["ports"] = [{"port": 81}]
    u = c.update(o)
    assert u["metadata"]["resourceVersion"] == "2"
    p = c.patch("Service", "ns1", "web", {"metadata": {"labels": {"app": "web"}}})
    assert p["metadata"]["labels"] == {"app": "web"} and p["spec"]["ports"] == [{"port": 81}]
    s = c.update_status(dict(p, status={"loadBalancer": {}}))
    assert s["status"] == {"loadBalancer": {}}
    assert c.patch("Service", "ns1", "web", {"status": {"x": 1}}, subresource="status")["status"] == {
        "loadBalancer": {}, "x": 1}
    items, rv = c.list("Service")
    assert [i["metadata"]["name"] for i in items] == ["web"] and rv == store.resource_version
    assert c.list("Service", "other") == ([], rv)
    assert len(c.list("Service", label_selector="app=web")[0]) == 1
    assert len(c.list("Service", label_selector={"app": "db"})[0]) == 0
    d = c.delete("Service", "ns1", "web")
    assert d["metadata"]["name"] == "web"
    with pytest.raises(errors.NotFound):
        c.get("Service", "ns1", "web")


def test_all_kinds_and_paths(api):
    store, handle, c = api
    c.create({"kind": "Namespace", "metadata": {"name": "ns1"}})
    c.create({"kind": "Node", "metadata": {"name": "n1"}})
    c.create({"kind": "Pod", "metadata": {"name": "p", "namespace": "ns1"}, "spec": {"nodeName": "n1"}})
    c.create({"kind": "Endpoints", "metadata": {"name": "web", "namespace": "ns1"}, "subsets": []})
    c.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "web-abc", "namespace": "ns1",
                           "labels": {"kubernetes.io/service-name": "web"}},
              "addressType": "IPv4", "endpoints": [], "ports": []})
    c.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns1"}, "spec": {}})
    c.create({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r", "namespace": "ns1"}, "spec": {}})
    c.create({"kind": "Event", "metadata": {"name": "e1", "namespace": "ns1"}, "reason": "Started"})
    path = handle.socket_path
    assert raw(path, "GET", "/api/v1/namespaces/ns1")[2]["metadata"]["name"] == "ns1"
    assert raw(path, "GET", "/api/v1/nodes/n1")[2]["kind"] == "Node"
    assert len(raw(path, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")[2]["items"]) == 1
    lst = raw(path, "GET", "/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices"
                           "?labelSelector=kubernetes.io%2Fservice-name%3Dweb")[2]
    assert lst["kind"] == "EndpointSliceList" and lst["apiVersion"] == "discovery.k8s.io/v1"
    assert lst["items"][0]["metadata"]["name"] == "web-abc"
    assert raw(path, "GET", "/apis/apps/v1/namespaces/ns1/deployments/d")[2]["kind"] == "Deployment"
    assert raw(path, "GET", "/apis/apps/v1/replicasets")[2]["items"][0]["metadata"]["name"] == "r"
    assert raw(path, "GET", "/api/v1/events")[2]["items"][0]["reason"] == "Started"
    assert raw(path, "GET", "/api/v1/namespaces/ns1/endpoints/web")[2]["kind"] == "Endpoints"
    assert raw(path, "GET", "/healthz")[2] == b"ok"
    assert raw(path, "GET", "/api")[2]["versions"] == ["v1"]
    assert any(r["name"] == "endpointslices" for r in raw(path, "GET", "/apis/discovery.k8s.io/v1")[2]["resources"])
    for bad in ("/api/v1/widgets", "/api/v1/pods/p", "/api/v1/namespaces/ns1/nodes", "/apis/x/v1/foos",
                "/api/v1/namespaces/ns1/endpoints/web/status", "/nope"):
        code, ctype, body = raw(path, "GET", bad)
        assert code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound", bad


def test_error_status_mapping(api):
    store, handle, c = api
    c.create(svc("web"))
    code, ctype, body = raw(handle.socket_path, "GET", "/api/v1/namespaces/default/services/nope")
    assert code == 404 and ctype == "application/json"
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'services "nope" not found', "reason": "NotFound", "code": 404,
                    "details": {"name": "nope", "kind": "services"}}
    with pytest.raises(errors.AlreadyExists, match='services "web" already exists') as ei:
        c.create(svc("web"))
    assert ei.value.code == 409 and ei.value.status["reason"] == "AlreadyExists"
    stale = c.get("Service", "default", "web")
    c.patch("Service", "default", "web", {"spec": {"x": 1}})
    with pytest.raises(errors.Conflict) as ei:
        c.update(stale)
    assert str(ei.value) == ('Operation cannot be fulfilled on services "web": the object has been modified; '
                             "please apply your changes to the latest version and try again")
    with pytest.raises(errors.BadRequest, match="does not match the namespace"):
        c.request("POST", "/api/v1/namespaces/a/services", svc("x", ns="b"))
    with pytest.raises(errors.BadRequest, match="does not match the name on the URL"):
        c.request("PUT", "/api/v1/namespaces/default/services/other", stale)
    with pytest.raises(errors.BadRequest, match="not valid JSON"):
        code, _, body = raw(handle.socket_path, "POST", "/api/v1/namespaces/default/services", b"{nope",
                            {"Content-Type": "application/json"})
        raise errors.exception_from_status(body)
    with pytest.raises(errors.MethodNotAllowed):
        c.request("POST", "/api/v1/services", svc("x"))
    with pytest.raises(errors.UnsupportedMediaType):
        c.request("PATCH", "/api/v1/namespaces/default/services/web", {}, content_type="text/plain")
    with pytest.raises(errors.Invalid, match="fieldManager: Required value"):
        c.request("PATCH", "/api/v1/namespaces/default/services/web", {},
                  content_type="application/apply-patch+yaml")
    with pytest.raises(errors.Invalid):
        c.create({"kind": "Service", "metadata": {"namespace": "default"}})


class _Invalid(Exception):
    code, reason = 422, "Invalid"


class RejectingAdmission:
    def admit_create(self, obj):
        if obj["metadata"]["name"] == "bad":
            raise _Invalid('Service "bad" is invalid: spec.ports: Required value')
        return obj

    def admit_update(self, new, old):
        return new

    def admit_delete(self, obj):
        pass

    def rebuild(self, objects):
        pass


def test_admission_errors_reach_the_client(short_dir):
    store = MemoryStore(admission=RejectingAdmission())
    with serve(store, os.path.join(short_dir, "a.sock")) as h, ApiClient(h.socket_path) as c:
        with pytest.raises(errors.Invalid) as ei:
            c.create(svc("bad"))
        assert str(ei.value) == 'Service "bad" is invalid: spec.ports: Required value'
        assert ei.value.code == 422


def test_graceful_delete_over_http(api):
    store, handle, c = api
    c.create({"kind": "Pod", "metadata": {"name": "p"}, "spec": {}})
    d = c.delete("Pod", "default", "p", grace_seconds=30)
    assert d["metadata"]["deletionGracePeriodSeconds"] == 30
    code, _, body = raw(handle.socket_path, "DELETE", "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=0")
    assert code == 200 and body["metadata"]["name"] == "p"
    with pytest.raises(errors.NotFound):
        c.get("Pod", "default", "p")
    c.create({"kind": "Pod", "metadata": {"name": "q"}, "spec": {}})
    with pytest.raises(errors.Conflict, match="Precondition failed"):
        c.delete("Pod", "default", "q", uid="nope")


def test_watch_delivers_to_20_watchers(api):
    store, handle, c = api
    _, rv = c.list("Service")
    watches = [c.watch("Service", resource_version=rv) for _ in range(20)]
    got = [[] for _ in watches]
    done = threading.Barrier(21)

    def run(i):
        for ev in watches[i]:
            got[i].append((ev["type"], ev["object"]["metadata"]["name"]))
            if len(got[i]) == 3:
                break
        done.wait(10)
    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(20)]
    for t in ts:
        t.start()
    c.create(svc("a"))
    c.patch("Service", "default", "a", {"spec": {"type": "NodePort"}})
    c.delete("Service", "default", "a")
    done.wait(10)
    assert got == [[("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]] * 20
    assert watches[0].resource_version == "3"
    for w in watches:
        w.stop()


def test_watch_replay_namespace_and_selector(api):
    store, handle, c = api
    c.create(svc("a", ns="x"))
    c.create(svc("b", ns="y"))
    c.patch("Service", "x", "a", {"metadata": {"labels": {"app": "web"}}})
    w = c.watch("Service", "x", resource_version="0")
    assert next(w)["object"]["metadata"]["name"] == "a"
    w.stop()
    w = c.watch("Service", resource_version="1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in (next(w), next(w))] == [
        ("ADDED", "b"), ("MODIFIED", "a")]
    w.stop()
    w = c.watch("Service", resource_version="1", label_selector="app=web")
    assert next(w)["type"] == "ADDED"  # started matching at rv 3
    w.stop()


def test_watch_too_old_is_gone(short_dir):
    store = MemoryStore(history=5)
    with serve(store, os.path.join(short_dir, "a.sock")) as h, ApiClient(h.socket_path) as c:
        for i in range(10):
            c.create(svc(f"s{i}"))
        code, ctype, body = raw(h.socket_path, "GET", "/api/v1/services?watch=true&resourceVersion=2")
        assert code == 200
        line = body if isinstance(body, dict) else json.loads(body.splitlines()[0])
        assert line["type"] == "ERROR" and line["object"]["code"] == 410
        assert line["object"]["message"] == "too old resource version: 2 (5)"
        w = c.watch("Service", resource_version="2")
        with pytest.raises(errors.Gone, match="too old resource version"):
            next(w)
        with pytest.raises(errors.BadRequest):
            c.watch("Service", resource_version="x")


def test_watch_stop_from_other_thread_and_server_side_cleanup(api):
    store, handle, c = api
    w = c.watch("Service")
    t = threading.Thread(target=lambda: list(w))
    t.start()
    time.sleep(0.05)
    w.stop()
    t.join(2)
    assert not t.is_alive()
    deadline = time.monotonic() + 5
    while store._watchers.get("Service") and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the disconnect on its next check
    assert not store._watchers.get("Service")


def test_watch_timeout_seconds_ends_stream(api):
    store, handle, c = api
    w = c.watch("Service", timeout_seconds=1)
    assert list(w) == []


def test_server_close_ends_watches(short_dir):
    store = MemoryStore()
    h = serve(store, os.path.join(short_dir, "a.sock"))
    c = ApiClient(h.socket_path)
    w = c.watch("Service")
    t = threading.Thread(target=lambda: list(w))
    t.start()
    c.list("Service")  # an idle keep-alive connection too
    h.close()
    t.join(3)
    assert not t.is_alive()
    assert not os.path.exists(h.socket_path)
    with pytest.raises(OSError):
        c.list("Service")
    store.close()


def test_client_from_many_threads(api):
    store, handle, c = api

    def worker(j):
        for i in range(50):
            c.create({"kind": "Pod", "metadata": {"name": f"p{j}-{i}"}, "spec": {}})
            c.get("Pod", "default", f"p{j}-{i}")
    ts = [threading.Thread(target=worker, args=(j,)) for j in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    items, rv = c.list("Pod")
    assert len(items) == 400 and rv == "400"


def test_apply_keeps_allocated_fields(api):
    store, handle, c = api
    desired = {"kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"port": 443}]}}
    created = c.apply(desired)
    assert created["metadata"]["resourceVersion"] == "1"
    # what an allocator would have added
    live = c.patch("Service", "default", "web", {"spec": {
        "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"port": 443, "nodePort": 30443}]}})
    desired["metadata"]["labels"] = {"app": "web"}
    desired["spec"]["ports"].append({"name": "dns", "port": 53, "protocol": "UDP"})
    applied = c.apply(desired)
    assert applied["metadata"]["labels"] == {"app": "web"}
    assert applied["spec"]["clusterIP"] == "10.96.0.10"
    assert [p.get("nodePort") for p in applied["spec"]["ports"]] == [30080, 30443, None]
    assert applied["metadata"]["uid"] == live["metadata"]["uid"]
    assert c.apply(desired)["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]


def test_list_and_watch_relists_on_gone(short_dir):
    store = MemoryStore(history=3)
    sock = os.path.join(short_dir, "a.sock")
    h = serve(store, sock)
    c = ApiClient(sock)
    c.create(svc("a"))
    c.create(svc("b"))
    # kube-proxy's watch cache: only what a relist needs (a DELETED still names the object)
    from testbed.proxy.loop import _metadata_only
    lw = ListWatch(c, "Service", min_backoff=0.02, max_backoff=0.05, keep=_metadata_only)
    events = []
    seen = threading.Condition()

    def handler(ev):
        with seen:
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            seen.notify_all()

    def wait_for(pred):
        with seen:
            assert seen.wait_for(pred, 5), events
    lw.run(handler)
    wait_for(lambda: len(events) == 2)
    assert sorted(events) == [("ADDED", "a"), ("ADDED", "b")] and lw.synced.is_set()
    c.create(svc("c"))
    wait_for(lambda: ("ADDED", "c") in events)
    h.close()  # the watch ends; the loop retries with backoff
    store.delete("Service", "default", "a")
    for i in range(5):
        store.create(svc(f"x{i}"))  # the history (3 events) no longer reaches rv 3
    h = serve(store, sock)
    wait_for(lambda: ("ADDED", "x4") in events)
    assert lw.relists == 1
    assert events[3:] == [("ADDED", f"x{i}") for i in range(5)] + [("DELETED", "a")]
    assert sorted(n for _, n in lw.cache) == ["b", "c", "x0", "x1", "x2", "x3", "x4"]
    assert set(lw.cache["default", "b"]["metadata"]) == {"namespace", "name", "resourceVersion"}
    assert "spec" not in lw.cache["default", "b"]
    c.create(svc("d"))
    wait_for(lambda: ("ADDED", "d") in events)
    lw.stop()
    c.close()
    h.close()
    store.close()


def test_list_and_watch_survives_server_restart(short_dir, tmp_path):
    state = tmp_path / "state"
    sock = os.path.join(short_dir, "a.sock")
    store = MemoryStore(state)
    h = serve(store, sock)
    c = ApiClient(sock)
    c.create(svc("a"))
    lw = ListWatch(c, "Service", min_backoff=0.02, max_backoff=0.1)
    names = set()
    cond = threading.Condition()

    def handler(ev):
        with cond:
            if ev["type"] == "DELETED":
                names.discard(ev["object"]["metadata"]["name"])
            else:
                names.add(ev["object"]["metadata"]["name"])
            cond.notify_all()
    lw.run(handler)
    with cond:
        assert cond.wait_for(lambda: names == {"a"}, 5)
    h.close()
    store.close()
    store = MemoryStore(state)   # the "apiserver process" restarts with its state
    store.create(svc("b"))
    store.delete("Service", "default", "a")
    h = serve(store, sock)
    with cond:
        assert cond.wait_for(lambda: names == {"b"}, 5), names
    assert lw.relists == 0  # the history came back from the WAL: no relist needed
    lw.stop()
    c.close()
    h.close()
    store.close()


def test_50_watchers_and_concurrent_writers(api):
    store, handle, c = api
    _, rv = c.list("Pod")
    watches = [c.watch("Pod", resource_version=rv) for _ in range(50)]
    got = [[] for _ in watches]

    def run(i):
        for ev in watches[i]:
            got[i].append(int(ev["object"]["metadata"]["resourceVersion"]))
            if len(got[i]) == 400:
                return
    readers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(50)]
    for t in readers:
        t.start()

    def write(j):
        for i in range(100):
            c.create({"kind": "Pod", "metadata": {"name": f"p{j}-{i}"}, "spec": {}})
    writers = [threading.Thread(target=write, args=(j,)) for j in range(4)]
    for t in writers:
        t.start()
    for t in writers + readers:
        t.join(30)
    expected = list(range(int(rv) + 1, int(rv) + 401))
    assert all(g == expected for g in got)
    for w in watches:
        w.stop()


def test_wrong_types_and_unknown_fields_are_refused_in_the_api_servers_words(short_dir):
    from testbed.k8s import Admission

    store = MemoryStore(admission=Admission())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"containers": "x"}}
    with serve(store, os.path.join(short_dir, "a.sock")) as h, ApiClient(h.socket_path) as c:
        with pytest.raises(errors.Invalid) as ei:
            c.create(pod)
        assert str(ei.value) == ('Pod "p" is invalid: spec.containers: Invalid value: "string": '
                                 "spec.containers in body must be of type array")
        assert ei.value.code == 422
        listed = dict(svc("web"), spec={"selector": ["app=web"], "ports": [{"port": 80}]})
        with pytest.raises(errors.Invalid) as ei:
            c.create(listed)
        assert "spec.selector in body must be of type object" in str(ei.value)
        pod["spec"] = {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "Always"}]}
        with pytest.raises(errors.BadRequest) as eb:
            c.create(pod)
        assert str(eb.value) == ('Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
                                 'unknown field "spec.containers[0].imagePullPolcy"')
        assert eb.value.code == 400
        assert c.list("Pod")[0] == []


def _exchange(sock_path, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(data)
        return b"".join(iter(lambda: s.recv(65536), b""))


def test_request_headers_are_read_as_http_says(api):
    from testbed.apiserver.httphead import Headers

    h = Headers.parse([b"Content-Type: application/json\r\n", b"X-Many: a\r\n", b"x-many: b\r\n",
                       b"X-Folded: one\r\n", b"\t two\r\n", b"NoColon\r\n"])
    assert h.get("content-type") == h["CONTENT-TYPE"] == "application/json" and "Content-Type" in h
    assert h.get_all("X-MANY") == ["a", "b"] and h.get("x-many") == "a"
    assert h.get("X-Folded") == "one two" and h.get("Missing", "d") == "d" and h.get_all("Missing") is None
    assert h.keys() == ["Content-Type", "X-Many", "x-many", "X-Folded"]
    store, handle, c = api
    sock = c.socket_path
    body = b'{"kind": "Namespace", "metadata": {"name": "hdr"}}'
    # lower-case names, a folded header, Connection: close ends the exchange after one answer
    out = _exchange(sock, b"POST /api/v1/namespaces HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                          b"content-length: " + str(len(body)).encode() + b"\r\nX-Note: a\r\n b\r\n"
                          b"connection: close\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 201") and b'"name":"hdr"' in out.replace(b" ", b"")
    assert _exchange(sock, b"GET /api/v1/namespaces/hdr HTTP/1.1\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    # malformed requests get the standard library's answers (without a status line where the
    # version is unknown, as it answers), never a traceback
    assert b"Error code: 400" in _exchange(sock, b"GET /api HTTP/x\r\n\r\n")
    assert b"Error code: 400" in _exchange(sock, b"GET /api\r\n\r\n")
    assert b"Error code: 505" in _exchange(sock, b"GET /api HTTP/2.0\r\n\r\n")
    many = b"".join(b"X-%d: y\r\n" % i for i in range(101))
    assert _exchange(sock, b"GET /api HTTP/1.1\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431")
    # HTTP/1.0 closes after the answer unless it asks to keep the connection
    assert _exchange(sock, b"GET /api/v1/namespaces/hdr HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")
