"""The ingress-nginx add-on run by the kubelet: the controller image starts the
testbed's controller and nginx in its pod's namespace, echoserver pods answer as JSON, and
nginx stops with its pod (needs root)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from testbed import cgroups
from testbed.addons import ingress_nginx
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.kubelet.sandbox import pod_cgroup
from testbed.scenario import parse
from testbed.verify import http
from testbed.verify.model import HttpRequest
from testbed.verify.settle import deployment_done

from .netutil import uniq

pytestmark = pytest.mark.root
CLUSTER = uniq("iadd")
HOST = "web.example.com"


def manifests() -> list[dict]:
    echo = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo-a", "labels": {"app": "a"}},
            "spec": {"nodeName": "node2", "containers": [{"name": "echo", "image": "registry.k8s.io/echoserver:1.10",
                                                          "ports": [{"containerPort": 8080}]}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
           "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    ing = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"ingressClassName": "nginx", "rules": [{"host": HOST, "http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"number": 80}}}}]}}]}}
    return [echo, svc, ing]


@pytest.fixture(scope="module")
def cluster():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": CLUSTER},
           "spec": {"nodes": 2, "externals": 1, "addons": [ingress_nginx.NAME]}, "manifests": manifests()}
    c = Cluster.up(parse(doc))
    try:
        with c.api() as api:
            wait_for(api, "Deployment", lambda items: all(deployment_done(d) for d in items), timeout=60)
        yield c
    finally:
        c.down()


def get(c: Cluster, source: str, ip: str, port: int, req: HttpRequest) -> http.HttpAnswer:
    return http.request(lambda kind: c.run_in(source, socket.socket, socket.AF_INET, kind), ip, port, req, timeout=5)


def until(fetch, ok, attempts: int = 400):
    """Request until the answer is the expected one (endpoints and reloads land moments apart)."""
    a = None
    for _ in range(attempts):
        a = fetch()
        if ok(a):
            return a
    raise AssertionError(f"never got the expected answer; last: {a}")


def node_port(c: Cluster, name: str) -> int:
    with c.api() as api:
        svc = api.get("Service", "ingress-nginx", "ingress-nginx-controller")
    return next(p["nodePort"] for p in svc["spec"]["ports"] if p["name"] == name)


def controller_pod(c: Cluster):
    return next(p for p in c.pods() if p.namespace == "ingress-nginx")


def test_echoserver_image_answers_every_path_as_json(cluster):
    pod = cluster.pod("echo-a")
    a = get(cluster, "node/node1", pod.ip, 8080, HttpRequest("x.example.com", "/any/path?q=1"))
    assert a.status == 200 and a.hostname == "echo-a" and a.backend_headers["host"] == "x.example.com"


def test_controller_image_serves_ingresses_through_its_node_port(cluster):
    ip = cluster.plan.nodes[0].ip
    a = until(lambda: get(cluster, "external/client", ip, node_port(cluster, "http"), HttpRequest(HOST, "/p")),
              lambda a: a.status == 200)
    assert a.hostname == "echo-a" and a.backend_headers["x-forwarded-proto"] == "http"
    tls = get(cluster, "external/client", ip, node_port(cluster, "https"), HttpRequest(HOST, scheme="https"))
    assert tls.status == 200 and "Fake Certificate" in tls.certificate_subject
    assert get(cluster, "external/client", ip, node_port(cluster, "http"), HttpRequest("other.example.com")).status == 404
    ctl = controller_pod(cluster)
    node_ip = cluster.plan.node(ctl.node).ip
    with cluster.api() as api:  # the address of the controller's node, as upstream without --publish-service
        wait_for(api, "Ingress", lambda items: [i for i in items if (i.get("status") or {}).get("loadBalancer", {})
                                                .get("ingress") == [{"ip": node_ip}]], namespace="default", timeout=10)


def test_nginx_stops_with_its_pod_and_the_replacement_serves(cluster):
    old = controller_pod(cluster)
    # nginx.pid names it as the pod's PID namespace sees it: found through the pod's cgroup instead
    masters = [pid for pid in cgroups.procs(pod_cgroup(cluster.name, "ingress-nginx", old.name))
               if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: master")]
    assert len(masters) == 1, masters
    master = masters[0]
    for ns in ("net", "pid", "mnt"):  # in the pod's sandbox, not the host's namespaces
        assert os.readlink(f"/proc/{master}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    with cluster.api() as api:
        api.delete("Pod", "ingress-nginx", old.name)
        wait_for(api, "Pod", lambda items: all(p["metadata"]["name"] != old.name for p in items),
                 namespace="ingress-nginx", timeout=60)
        wait_for(api, "Deployment", lambda items: all(deployment_done(d) for d in items), timeout=60)
    assert not Path(f"/proc/{master}").exists(), "nginx outlived its pod"
    new = controller_pod(cluster)
    assert new.name != old.name
    ip = cluster.plan.nodes[1].ip
    a = until(lambda: get(cluster, "external/client", ip, node_port(cluster, "http"), HttpRequest(HOST)),
              lambda a: a.status == 200)
    assert a.hostname == "echo-a"
