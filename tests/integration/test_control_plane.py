"""Control plane end to end: API store, scheduler, kubelet, endpoint controller (needs root)."""

from __future__ import annotations

import json
import socket

import pytest

from testbed import netns
from testbed.apiserver import errors as api_errors
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.scenario import parse

from .netutil import uniq

pytestmark = pytest.mark.root
ITCP = uniq("itcp")


def web_pod(name: str, node: str | None = None, ready: bool = True) -> dict:
    spec = {"containers": [{"name": "web", "image": "testbed/echo:v1",
                            "ports": [{"name": "http", "containerPort": 8080}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


@pytest.fixture(scope="module")
def cp():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": ITCP},
           "spec": {"nodes": 2, "proxyMode": "none"},
           "manifests": [web_pod("web-1", "node1"), web_pod("web-2", "node2"), web_pod("web-3"), SERVICE]}
    c = Cluster.up(parse(doc))
    yield c
    c.down()


def http_get(ns: str, ip: str, path: str, port: int = 8080) -> str:
    def go() -> str:
        with socket.create_connection((ip, port), timeout=3) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1].decode()
    return netns.run_in(ns, go)


def slice_ips(api, service: str = "web") -> set[str]:
    items, _ = api.list("EndpointSlice", "default", label_selector=f"kubernetes.io/service-name={service}")
    return {a for s in items for e in s.get("endpoints") or [] for a in e["addresses"]}


def test_pods_are_scheduled_built_and_answer(cp):
    pods = {p.name: p for p in cp.pods()}
    assert {"web-1", "web-2", "web-3"} <= set(pods)
    assert pods["web-1"].node == "node1" and pods["web-2"].node == "node2"
    client = cp.plan.node("node1").netns
    for name in ("web-1", "web-2", "web-3"):
        assert http_get(client, pods[name].ip, "/hostname") == name
    info = json.loads(http_get(pods["web-1"].netns, pods["web-2"].ip, "/"))
    assert info["clientip"].split(":")[0] == pods["web-1"].ip
    with cp.api() as api:
        node = api.get("Node", None, "node1")
        assert node["spec"]["podCIDR"] == "10.244.0.0/24"
        assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "172.20.10.2"}
        pod = api.get("Pod", "default", "web-3")
        assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"] == pods["web-3"].ip
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
        kube = api.get("Service", "default", "kubernetes")
        assert kube["spec"]["clusterIP"] == "10.96.0.1"


def test_endpointslices_list_pod_ips_and_resolved_ports(cp):
    pods = {p.name: p for p in cp.pods()}
    with cp.api() as api:
        svc = api.get("Service", "default", "web")
        assert svc["spec"]["clusterIP"].startswith("10.") and svc["spec"]["clusterIP"] != "10.96.0.10"
        want = {pods[n].ip for n in ("web-1", "web-2", "web-3")}
        wait_for(api, "EndpointSlice", lambda _: slice_ips(api) == want, timeout=10)
        items, _ = api.list("EndpointSlice", "default", label_selector="kubernetes.io/service-name=web")
        assert items[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        eps = {e["addresses"][0]: e for s in items for e in s["endpoints"]}
        assert eps[pods["web-1"].ip]["nodeName"] == "node1"
        assert eps[pods["web-1"].ip]["conditions"]["ready"] is True
        ep = api.get("Endpoints", "default", "web")
        assert {a["ip"] for a in ep["subsets"][0]["addresses"]} == want


def test_deleted_pod_leaves_the_slice_and_its_namespace_goes(cp):
    with cp.api() as api:
        api.create(web_pod("web-tmp", "node2"))
        wait_for(api, "Pod", lambda ps: any(p["metadata"]["name"] == "web-tmp" and p.get("status", {}).get("podIP")
                                            for p in ps), timeout=10)
        tmp = cp.pod("web-tmp")
        wait_for(api, "EndpointSlice", lambda _: tmp.ip in slice_ips(api), timeout=10)
        assert netns.exists(tmp.netns)
        api.delete("Pod", "default", "web-tmp")
        wait_for(api, "EndpointSlice", lambda _: tmp.ip not in slice_ips(api), timeout=10)
        wait_for(api, "Pod", lambda ps: all(p["metadata"]["name"] != "web-tmp" for p in ps), timeout=10)
        wait_for(api, "Event", lambda evs: any(e["reason"] == "Killing" and e["involvedObject"]["name"] == "web-tmp"
                                               for e in evs), namespace="default", timeout=10)
    assert not netns.exists(tmp.netns)


def test_bad_manifest_is_refused_with_field_path_and_nothing_stored(cp):
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
           "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}}
    with cp.api() as api:
        with pytest.raises(api_errors.ApiError) as e:
            api.create(bad)
        assert str(e.value) == ('Service "bad" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port '
                                'is not in the valid range. The range of valid ports is 30000-32767')
        with pytest.raises(api_errors.NotFound):
            api.get("Service", "default", "bad")


def test_events_show_the_flow(cp):
    with cp.api() as api:
        events, _ = api.list("Event", "default")
    reasons = {(e["involvedObject"]["kind"], e["reason"]) for e in events}
    assert ("Pod", "Scheduled") in reasons
    assert ("Pod", "Started") in reasons


def test_store_survives_a_control_plane_restart(cp):
    with cp.api() as api:
        api.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "keep"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 81, "targetPort": 8080}]}})
        before = api.get("Service", "default", "keep")
        pods_before = {p["metadata"]["name"]: p["status"]["podIP"] for p in api.list("Pod", "default")[0]}
    cp.restart_control_plane()
    with cp.api() as api:
        after = api.get("Service", "default", "keep")
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["spec"]["clusterIP"] == before["spec"]["clusterIP"]
        assert int(api.list("Service")[1]) >= int(before["metadata"]["resourceVersion"])
        pods_after = {p["metadata"]["name"]: p["status"]["podIP"] for p in api.list("Pod", "default")[0]}
        assert pods_after == pods_before
        # the adopted pods answer again (the workload restarted with the control plane)
        p = cp.pod("web-1")
        assert http_get(cp.plan.node("node2").netns, p.ip, "/hostname") == "web-1"
        # and the restarted controllers still work
        api.create(web_pod("web-new", "node1"))
        wait_for(api, "EndpointSlice", lambda _: any(
            ip not in pods_before.values() for ip in slice_ips(api)), timeout=10)


def cli(*args: str, stdin: str | None = None):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args, "-c", ITCP], capture_output=True,
                          text=True, input=stdin)


def test_kubectl_like_cli(cp):
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: cli-svc}\nspec:\n  type: NodePort\n"
           "  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n---\n"
           "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: other}}\n")
    res = cli("apply", "-f", "-", stdin=svc)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["service/cli-svc created", "namespace/other created"]
    assert cli("apply", "-f", "-", stdin=svc).stdout.splitlines() == ["service/cli-svc unchanged",
                                                                       "namespace/other unchanged"]
    res = cli("get", "svc", "-o", "json")
    doc = json.loads(res.stdout)
    assert doc["kind"] == "List" and {i["metadata"]["name"] for i in doc["items"]} >= {"kubernetes", "web", "cli-svc"}
    res = cli("get", "svc", "cli-svc", "-o", "yaml")
    assert "kind: Service" in res.stdout and "nodePort: 3" in res.stdout
    res = cli("get", "pods", "-o", "wide")
    header = res.stdout.splitlines()[0].split()
    assert header[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert "web-1" in res.stdout and "Running" in res.stdout
    res = cli("get", "ep", "cli-svc")
    assert res.stdout.splitlines()[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert ":8080" in res.stdout
    res = cli("describe", "svc", "cli-svc")
    assert "Selector:                 app=web" in res.stdout and "Type:                     NodePort" in res.stdout
    res = cli("events")
    assert "ClusterIPAllocated" in res.stdout and "Scheduled" in res.stdout
    res = cli("delete", "svc", "cli-svc")
    assert res.stdout.strip() == 'service "cli-svc" deleted'
    res = cli("get", "svc", "cli-svc")
    assert res.returncode != 0 and 'services "cli-svc" not found' in res.stderr
    res = cli("get", "frobs")
    assert res.returncode != 0 and "frobs" in res.stderr


def test_state_directory_and_its_files_are_private(cp):
    import os
    import stat

    from testbed import state

    root = state.directory(cp.name)
    # the cluster's own tmpfs (its pods' files never touch the host's disk), named after it
    with open("/proc/self/mountinfo") as f:
        mine = [line.split(" - ")[1].split()[:2] for line in f if line.split()[4] == root]
    assert mine == [["tmpfs", f"testbed.{cp.name}"]]
    loose = []
    for d, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = os.path.join(d, name)
            st = os.lstat(p)
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if ((os.path.basename(d) == "etc" and os.path.basename(os.path.dirname(os.path.dirname(d))) == "pods"
                 and name in ("hosts", "resolv.conf", "hostname"))
                    or (os.path.dirname(d) == os.path.join(root, "etc") and name == "resolv.conf")):
                want = 0o644  # a sandboxed pod's own files, which it reads (in a 0700 directory)
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                if st.st_mode & 0o777 != want:
                    loose.append(f"{p} {oct(st.st_mode & 0o777)}")
    assert oct(os.stat(root).st_mode & 0o777) == oct(0o700)
    assert loose == []
    assert any(f.endswith(".log") for _, _, fs in os.walk(root) for f in fs)  # the walk saw the logs


def test_wrong_types_and_unknown_fields_never_reach_a_traceback(cp):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typed"}, "spec": {"containers": "x"}}
    with cp.api() as api:
        with pytest.raises(api_errors.Invalid) as e:
            api.create(pod)
        assert str(e.value) == ('Pod "typed" is invalid: spec.containers: Invalid value: "string": '
                                "spec.containers in body must be of type array")
    res = cli("apply", "-f", "-", stdin="apiVersion: v1\nkind: Service\nmetadata: {name: listsel}\n"
                                        "spec: {selector: [app=web], ports: [{port: 80}]}\n")
    assert res.returncode == 1 and res.stderr.strip() == (
        'error: Error from server (Invalid): error when creating "<stdin>#0": '
        'Service "listsel" is invalid: spec.selector: Invalid value: "array": '
        "spec.selector in body must be of type object")
    res = cli("apply", "-f", "-", stdin="apiVersion: v1\nkind: Pod\nmetadata: {name: extra}\n"
                                        "spec: {containers: [{name: c, image: testbed/echo}], foo: 1}\n")
    assert res.returncode == 1 and res.stderr.strip() == (
        'error: Error from server (BadRequest): error when creating "<stdin>#0": '
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.foo"')


def test_logs_takes_the_cluster_as_c_and_the_container_as_long_option(cp):
    res = cli("logs", "web-1", "--container", "web")
    assert res.returncode == 0, res.stderr
    res = cli("logs", "web-1", "--container", "nosuch")
    assert res.returncode == 1 and "container nosuch is not valid for pod web-1" in res.stderr
