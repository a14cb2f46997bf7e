"""What kubectl needs from the API server: discovery with short names, one version,
``dryRun=All`` on every write, and HTTPS with client certificates."""

import json
import os
import socket
import ssl
import stat

import pytest

from testbed.apiserver import tls
from testbed.apiserver.discovery import GIT_VERSION, discovery
from testbed.apiserver.https import serve_https
from testbed.apiserver.memory import MemoryStore
from testbed.apiserver.store import dry_run

from .conftest import svc
from .test_server import raw


def _resource(gv_path: str, name: str) -> dict:
    return next(r for r in discovery(gv_path)["resources"] if r["name"] == name)


def test_discovery_has_upstream_short_names_and_the_all_category():
    assert _resource("/api/v1", "services")["shortNames"] == ["svc"]
    assert _resource("/api/v1", "pods")["shortNames"] == ["po"]
    assert _resource("/api/v1", "endpoints")["shortNames"] == ["ep"]
    assert _resource("/apis/apps/v1", "deployments")["shortNames"] == ["deploy"]
    assert _resource("/apis/networking.k8s.io/v1", "ingresses")["shortNames"] == ["ing"]
    in_all = {r["name"] for gv in ("/api/v1", "/apis/apps/v1") for r in discovery(gv)["resources"]
              if "all" in r.get("categories", [])}
    assert in_all == {"pods", "services", "deployments", "replicasets"}
    assert "categories" not in _resource("/api/v1", "configmaps")
    assert discovery("/apis/apps")["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert discovery("/apis/nope/v1") is None


def test_one_version():
    v = discovery("/version")
    assert v["gitVersion"] == GIT_VERSION and GIT_VERSION.startswith(f"v{v['major']}.{v['minor']}.")


def test_dry_run_writes_nothing_and_keeps_allocations():
    class Alloc:
        def __init__(self):
            self.live = set()

        def admit_create(self, obj):
            self.live.add(obj["metadata"]["name"])
            return obj

        def admit_update(self, new, old):
            return new

        def admit_delete(self, obj):
            self.live.discard(obj["metadata"]["name"])

    adm = Alloc()
    with MemoryStore(admission=adm) as s:
        with dry_run():
            made = s.create(svc("dry"))
        assert made["metadata"]["uid"] and adm.live == set()
        with pytest.raises(Exception, match="not found"):
            s.get("Service", "default", "dry")
        s.create(svc("web"))
        rv = s.resource_version
        with dry_run():
            assert s.patch("Service", "default", "web", {"metadata": {"labels": {"a": "b"}}})["metadata"]["labels"]
            s.delete("Service", "default", "web")
        assert s.resource_version == rv and adm.live == {"web"}
        assert "labels" not in s.get("Service", "default", "web")["metadata"]


def test_dry_run_over_http(api):
    store, handle, c = api
    body = json.dumps(svc("x", ns="ns1")).encode()
    code, _, obj = raw(handle.socket_path, "POST", "/api/v1/namespaces/ns1/services?dryRun=All", body)
    assert code == 201 and obj["metadata"]["name"] == "x"
    assert store.list("Service")[0] == []
    c.create(svc("y", ns="ns1"))
    opts = json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}).encode()
    code, _, _ = raw(handle.socket_path, "DELETE", "/api/v1/namespaces/ns1/services/y", opts)
    assert code == 200 and store.get("Service", "ns1", "y")
    code, _, st = raw(handle.socket_path, "DELETE", "/api/v1/namespaces/ns1/services/y?dryRun=Some")
    assert code == 400 and 'supported values: "All"' in st["message"]
    assert store.get("Service", "ns1", "y")


def _get(ctx, port, path="/api/v1/namespaces"):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw_sock:
        with ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    return data.decode()


def test_https_needs_a_client_certificate_of_the_cluster(tmp_path):
    p = tls.ensure(str(tmp_path / "pki"), "unit")
    assert stat.S_IMODE(os.stat(p.directory).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in p.all())
    with MemoryStore() as store:
        h = serve_https(store, p)
        try:
            anon = ssl.create_default_context(cafile=p.ca_cert)
            assert _get(anon, h.port).startswith("HTTP/1.1 401")
            admin = ssl.create_default_context(cafile=p.ca_cert)
            admin.load_cert_chain(p.client_cert, p.client_key)
            assert _get(admin, h.port, "/version").startswith("HTTP/1.1 200")
            other = tls.ensure(str(tmp_path / "other"), "other")
            foreign = ssl.create_default_context(cafile=p.ca_cert)
            foreign.load_cert_chain(other.client_cert, other.client_key)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _get(foreign, h.port)
        finally:
            h.close()


def test_key_material_is_made_once(tmp_path):
    p = tls.ensure(str(tmp_path / "pki"), "unit")
    with open(p.ca_cert, "rb") as f:
        ca = f.read()
    with open(tls.ensure(str(tmp_path / "pki"), "unit").ca_cert, "rb") as f:
        assert f.read() == ca
    assert tls.peer_user({"subject": ((("organizationName", "system:masters"),), (("commonName", "kubernetes-admin"),))}) \
        == ("kubernetes-admin", ["system:masters"])


def test_table_has_kubectls_columns_with_wide_ones_at_priority_1():
    from testbed.apiserver.tables import table, wants_table

    assert wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert not wants_table("application/json")
    node = {"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": GIT_VERSION}}}
    t = table("Node", [node], "7")
    cols = [(c["name"], c["priority"]) for c in t["columnDefinitions"]]
    assert cols[:5] == [("NAME", 0), ("STATUS", 0), ("ROLES", 0), ("AGE", 0), ("VERSION", 0)]
    assert ("INTERNAL-IP", 1) in cols
    cells = t["rows"][0]["cells"]
    assert cells[:3] == ["n1", "Ready", "<none>"] and cells[4] == GIT_VERSION
    assert t["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                      "metadata": node["metadata"]}
    assert table("Node", [node], include_object="Object")["rows"][0]["object"] == node
    assert [c["name"] for c in table("Widget", [node])["columnDefinitions"]] == ["Name", "Age"]


def test_table_over_http(api):
    store, handle, c = api
    c.create(svc("web", ns="ns1", type="ClusterIP", clusterIP="10.96.0.9", ports=[{"port": 80}]))
    hdr = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    code, _, t = raw(handle.socket_path, "GET", "/api/v1/namespaces/ns1/services", headers=hdr)
    assert code == 200 and t["kind"] == "Table"
    assert t["rows"][0]["cells"][:5] == ["web", "ClusterIP", "10.96.0.9", "<none>", "80/TCP"]
    code, _, t = raw(handle.socket_path, "GET", "/api/v1/namespaces/ns1/services/web", headers=hdr)
    assert code == 200 and len(t["rows"]) == 1
    code, _, st = raw(handle.socket_path, "GET", "/api/v1/services?includeObject=All", headers=hdr)
    assert code == 400 and "includeObject" in st["message"]


def _deploy(containers):
    return {"kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": containers}}}}


def test_strategic_merge_merges_containers_by_name_and_ports_by_their_keys():
    from testbed.apiserver.patch import strategic_merge

    old = _deploy([{"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}],
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                   {"name": "b", "image": "b:1"}])
    new = strategic_merge("Deployment", old, {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "a:2", "ports": [{"containerPort": 81}], "env": [{"name": "Y", "$patch": "delete"}]}]}}}})
    a, b = new["spec"]["template"]["spec"]["containers"]
    assert a["image"] == "a:2" and b == {"name": "b", "image": "b:1"}
    assert a["ports"] == [{"containerPort": 80, "name": "http"}, {"containerPort": 81}]
    assert a["env"] == [{"name": "X", "value": "1"}]
    assert old["spec"]["template"]["spec"]["containers"][0]["image"] == "a:1"  # not modified
    svc_old = {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    merged = strategic_merge("Service", svc_old, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})
    assert merged["spec"]["ports"] == [{"port": 80, "targetPort": 9090}]


def test_strategic_merge_directives():
    from testbed.apiserver.patch import strategic_merge

    old = {"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
           "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                    "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                          "tolerations": [{"key": "k"}]}}}}
    new = strategic_merge("Deployment", old, {
        "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"], "labels": {"y": None}},
        "spec": {"strategy": {"type": "Recreate", "$retainKeys": ["type"]},
                 "template": {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                                       "containers": [{"name": "a", "image": "i"}],
                                       "tolerations": [{"key": "j"}]}}}})
    assert new["metadata"] == {"finalizers": ["b", "c"], "labels": {"x": "1"}}
    assert new["spec"]["strategy"] == {"type": "Recreate"}
    assert new["spec"]["template"]["spec"]["containers"] == [{"name": "b"}, {"name": "a", "image": "i"}]
    assert new["spec"]["template"]["spec"]["tolerations"] == [{"key": "j"}]  # no merge key: replaced
    replaced = strategic_merge("Deployment", old, {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "z"}]}}}})
    assert replaced["spec"]["template"]["spec"]["containers"] == [{"name": "z"}]
    with pytest.raises(Exception, match="merge key 'name'"):
        strategic_merge("Deployment", old, {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})


def test_patches_over_http(api):
    store, handle, c = api
    c.create(svc("web", ns="ns1", ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "b"}]))
    path = "/api/v1/namespaces/ns1/services/web"
    smp = json.dumps({"spec": {"ports": [{"port": 81, "name": "bb"}]}}).encode()
    code, _, obj = raw(handle.socket_path, "PATCH", path, smp,
                       {"Content-Type": "application/strategic-merge-patch+json"})
    assert code == 200 and [p["name"] for p in obj["spec"]["ports"]] == ["a", "bb"]
    jp = json.dumps([{"op": "replace", "path": "/spec/ports/0/name", "value": "aa"}]).encode()
    code, _, obj = raw(handle.socket_path, "PATCH", path, jp, {"Content-Type": "application/json-patch+json"})
    assert code == 200 and obj["spec"]["ports"][0]["name"] == "aa"
    bad = json.dumps([{"op": "test", "path": "/spec/ports/0/name", "value": "zz"}]).encode()
    code, _, st = raw(handle.socket_path, "PATCH", path, bad, {"Content-Type": "application/json-patch+json"})
    assert code == 422 and store.get("Service", "ns1", "web")["spec"]["ports"][0]["name"] == "aa"
    code, _, _ = raw(handle.socket_path, "PATCH", path + "?dryRun=All", smp.replace(b'"bb"', b'"dry"'),
                     {"Content-Type": "application/strategic-merge-patch+json"})
    assert code == 200 and store.get("Service", "ns1", "web")["spec"]["ports"][1]["name"] == "bb"
    code, _, st = raw(handle.socket_path, "POST", "/api/v1/namespaces/ns1/services", b"\x6b\x38\x73\x00",
                      {"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert code == 415 and "protobuf" in st["message"]


def test_scale_subresource(api):
    store, handle, c = api
    c.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns1"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}}}})
    path = "/apis/apps/v1/namespaces/ns1/deployments/d/scale"
    code, _, sc = raw(handle.socket_path, "GET", path)
    assert code == 200 and sc["kind"] == "Scale" and sc["spec"] == {"replicas": 1}
    assert sc["status"]["selector"] == "app=d"
    stale = sc
    code, _, sc = raw(handle.socket_path, "PATCH", path, b'{"spec":{"replicas":4}}',
                      {"Content-Type": "application/merge-patch+json"})
    assert code == 200 and store.get("Deployment", "ns1", "d")["spec"]["replicas"] == 4
    stale["spec"]["replicas"] = 2
    code, _, _ = raw(handle.socket_path, "PUT", path, json.dumps(stale).encode())
    assert code == 409  # read before the patch
    sc["spec"]["replicas"] = 2
    code, _, _ = raw(handle.socket_path, "PUT", path, json.dumps(sc).encode())
    assert code == 200 and store.get("Deployment", "ns1", "d")["spec"]["replicas"] == 2
    code, _, st = raw(handle.socket_path, "PATCH", path, b'{"spec":{"replicas":-1}}',
                      {"Content-Type": "application/merge-patch+json"})
    assert code == 422 and "spec.replicas" in st["message"]
    code, _, _ = raw(handle.socket_path, "GET", "/api/v1/namespaces/ns1/services/x/scale")
    assert code == 404


def test_pod_log_tail_and_container_choice():
    from testbed.apiserver import podlogs

    assert podlogs.tail(b"a\nb\nc\n", 2) == b"b\nc\n"
    assert podlogs.tail(b"a\nb", 1) == b"b\n" and podlogs.tail(b"a\n", 0) == b""
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    with pytest.raises(Exception, match=r"choose one of: \[a b\]"):
        podlogs.container_of(pod, None)
    with pytest.raises(Exception, match="container c is not valid for pod p"):
        podlogs.container_of(pod, "c")
    assert podlogs.container_of(pod, "b") == "b"


def test_previous_log_is_the_file_the_kubelet_kept_at_the_restart(tmp_path):
    from testbed.apiserver import podlogs
    from testbed.kubelet.plan import previous_log

    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}
    path = str(tmp_path / "ns_p_a.log")
    assert previous_log(path) == str(tmp_path / "ns_p_a.previous.log")
    with pytest.raises(Exception, match='previous terminated container "a" in pod "p" not found'):
        podlogs.read_previous(pod, "a", path, None)
    with open(previous_log(path), "wb") as f:
        f.write(b"one\ntwo\n")
    assert podlogs.read_previous(pod, "a", path, 1) == b"two\n"


def test_https_watch_streams_events_and_ends_at_its_timeout(tmp_path):
    import http.client

    p = tls.ensure(str(tmp_path / "pki"), "unit")
    with MemoryStore() as store:
        h = serve_https(store, p)
        try:
            ctx = ssl.create_default_context(cafile=p.ca_cert)
            ctx.load_cert_chain(p.client_cert, p.client_key)
            conn = http.client.HTTPSConnection("127.0.0.1", h.port, context=ctx, timeout=10)
            conn.request("GET", "/api/v1/namespaces/ns1/services?watch=true&timeoutSeconds=1")
            r = conn.getresponse()
            assert r.status == 200
            store.create(svc("w", ns="ns1"))
            ev = json.loads(r.readline())
            assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "w"
            assert r.read() == b""  # the terminating chunk after timeoutSeconds
            conn.close()
        finally:
            h.close()
