"""The ingress controller against a real control plane: nginx in a pod's namespace, echo
backends in others, real HTTP(S) from a node (needs root)."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from testbed import netns, state
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.ingress import certs
from testbed.ingress.controller import COMPONENT
from testbed.scenario import parse
from testbed.workload.server import WorkloadServer

from .netutil import uniq

pytestmark = pytest.mark.root
CLUSTER = uniq("iing")
ECHO_PORT = 8081
APR1_FOO_BAR = "foo:$apr1$sp5sGPd0$.JYZEMLNNo/C3vVZV7sJB1"  # htpasswd entry for foo:bar


def pod(name: str, app: str, port: int = 8080) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "testbed/echo:v1", "ports": [{"containerPort": port}]}]}}


def service(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": ECHO_PORT}]}}


def path(p: str, svc: str, path_type: str = "Prefix") -> dict:
    return {"path": p, "pathType": path_type, "backend": {"service": {"name": svc, "port": {"number": 80}}}}


def ingress(name: str, rules: list, tls: list | None = None, annotations: dict | None = None) -> dict:
    spec: dict = {"ingressClassName": "nginx", "rules": rules}
    if tls:
        spec["tls"] = tls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}}, "spec": spec}


def rule(host: str, *paths: dict) -> dict:
    return {"host": host, "http": {"paths": list(paths)}}


ROUTES = ingress("routes", [rule("foo.example.com", path("/api", "a"), path("/", "b")),
                            rule("bar.example.com", path("/x", "a", "Exact"))])


@pytest.fixture(scope="module")
def cluster():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": CLUSTER},
           "spec": {"nodes": 2, "proxyMode": "none"},
           "manifests": [pod("echo-a", "a"), pod("echo-b", "b"), pod("ingress-ctl", "ingress", 9000),
                         service("a", "a"), service("b", "b"),
                         {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                          "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}]}
    c = Cluster.up(parse(doc))
    try:
        yield c
    finally:
        c.down()


@pytest.fixture(scope="module")
def echo(cluster):
    """The echo mode of the default workload on port 8081 of every backend pod."""
    server = WorkloadServer().start()
    try:
        for p in cluster.pods():
            if p.name.startswith("echo-"):
                server.add_pod(p.name, p.netns, p.name, [(ECHO_PORT, "TCP")], mode="echo")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def controller(cluster, echo):
    ctl = cluster.pod("ingress-ctl")
    directory = Path(state.directory(cluster.name)) / "ingress"
    directory.mkdir(exist_ok=True)
    env = dict(os.environ, TESTBED_CLUSTER=cluster.name)
    with cluster.api() as api:
        api.create(ROUTES)
    log = open(directory / "controller.log", "ab")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ctl.netns, sys.executable, "-m", "testbed.ingress",
         "--api", os.path.join(state.directory(cluster.name), "api.sock"),
         "--pod", "default/ingress-ctl", "--dir", str(directory)],
        env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    try:
        with cluster.api() as api:
            wait_for(api, "Ingress", lambda items: any(
                i["status"]["loadBalancer"].get("ingress") == [{"ip": ctl.ip}] for i in items),
                namespace="default", timeout=20)
        yield ctl
    finally:
        master = (directory / "nginx.pid").read_text().strip() if (directory / "nginx.pid").exists() else ""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, (directory / "controller.log").read_text()[-3000:]
        assert not master or not Path(f"/proc/{master}").exists(), "nginx outlived its controller"


class Response:
    def __init__(self, raw: bytes, cert: bytes | None):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        self.cert_cn = None
        if cert:
            cn = x509.load_der_x509_certificate(cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            self.cert_cn = cn[0].value

    def json(self) -> dict:
        return json.loads(self.body)


def request(ns: str, ip: str, host: str, target: str = "/", *, tls: bool = False,
            auth: tuple[str, str] | None = None) -> Response:
    def go() -> Response:
        with socket.create_connection((ip, 443 if tls else 80), timeout=5) as raw:
            sock, cert = raw, None
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(raw, server_hostname=host)
                cert = sock.getpeercert(binary_form=True)
            hdrs = f"Host: {host}\r\nConnection: close\r\n"
            if auth:
                hdrs += "Authorization: Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() + "\r\n"
            sock.sendall(f"GET {target} HTTP/1.1\r\n{hdrs}\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return Response(data, cert)
    return netns.run_in(ns, go)


def wait_for_status(api, name: str) -> None:
    """The controller writes a new Ingress's status once the reload serving it has finished."""
    wait_for(api, "Ingress", lambda items: any(i["metadata"]["name"] == name and
                                               i["status"]["loadBalancer"].get("ingress") for i in items),
             namespace="default", timeout=10)


def client_ns(cluster: Cluster) -> str:
    return cluster.plan.node("node1").netns


def test_host_and_path_routing(cluster, controller):
    ns, ip = client_ns(cluster), controller.ip
    r = request(ns, ip, "foo.example.com", "/api/v1?q=1")
    assert r.status == 200
    doc = r.json()
    assert doc["hostname"] == "echo-a" and doc["path"] == "/api/v1" and doc["method"] == "GET"
    assert doc["clientip"] == ip  # nginx connects to the pod itself, not through a ClusterIP
    h = doc["headers"]
    assert h["x-forwarded-for"] == h["x-real-ip"] and ipaddress.ip_address(h["x-real-ip"]) != ipaddress.ip_address(ip)
    assert h["x-forwarded-proto"] == "http" and h["host"] == "foo.example.com" and len(h["x-request-id"]) == 32
    assert request(ns, ip, "foo.example.com", "/api").json()["hostname"] == "echo-a"
    assert request(ns, ip, "foo.example.com", "/apiv1").json()["hostname"] == "echo-b"
    assert request(ns, ip, "bar.example.com", "/x").json()["hostname"] == "echo-a"
    assert request(ns, ip, "bar.example.com", "/x/y").status == 404
    assert request(ns, ip, "nobody.example.com", "/").status == 404


def test_tls_with_sni_and_308_redirect(cluster, controller):
    crt, key = certs.self_signed("secure.example.com", ["secure.example.com"])
    with cluster.api() as api:
        api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secure-tls", "namespace": "default"},
                    "type": "kubernetes.io/tls", "stringData": {"tls.crt": crt.decode(), "tls.key": key.decode()}})
        api.create(ingress("secure", [rule("secure.example.com", path("/", "a"))],
                           tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}]))
        wait_for_status(api, "secure")
    ns, ip = client_ns(cluster), controller.ip
    r = request(ns, ip, "secure.example.com", "/page?x=1", tls=True)
    assert r.status == 200
    assert r.cert_cn == "secure.example.com" and r.json()["headers"]["x-forwarded-proto"] == "https"
    other = request(ns, ip, "foo.example.com", "/", tls=True)
    assert other.cert_cn == certs.FAKE_CERT_CN and other.status == 200  # TLS host without Secret
    plain = request(ns, ip, "secure.example.com", "/page?x=1")
    assert plain.status == 308 and plain.headers["location"] == "https://secure.example.com/page?x=1"


def test_basic_auth(cluster, controller):
    with cluster.api() as api:
        api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "basic-auth", "namespace": "default"},
                    "stringData": {"auth": APR1_FOO_BAR + "\n"}})
        api.create(ingress("private", [rule("private.example.com", path("/", "b"))], annotations={
            "nginx.ingress.kubernetes.io/auth-type": "basic",
            "nginx.ingress.kubernetes.io/auth-secret": "basic-auth",
            "nginx.ingress.kubernetes.io/auth-realm": "Authentication Required - foo"}))
        wait_for_status(api, "private")
    ns, ip = client_ns(cluster), controller.ip
    r = request(ns, ip, "private.example.com")
    assert r.status == 401
    assert r.headers["www-authenticate"] == 'Basic realm="Authentication Required - foo"'
    assert request(ns, ip, "private.example.com", auth=("foo", "wrong")).status == 401
    ok = request(ns, ip, "private.example.com", auth=("foo", "bar"))
    assert ok.status == 200 and ok.json()["hostname"] == "echo-b"


def test_whitelist_source_range(cluster, controller):
    with cluster.api() as api:
        api.create(ingress("allowlist", [rule("allow.example.com", path("/", "a"))], annotations={
            "nginx.ingress.kubernetes.io/whitelist-source-range": "192.0.2.0/24"}))
        api.create(ingress("allowall", [rule("all.example.com", path("/", "a"))], annotations={
            "nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8,172.16.0.0/12"}))
        wait_for_status(api, "allowlist")
        wait_for_status(api, "allowall")
    ns, ip = client_ns(cluster), controller.ip
    assert request(ns, ip, "allow.example.com").status == 403
    assert request(ns, ip, "all.example.com").status == 200


def test_bad_ingress_gets_event_and_previous_config_keeps_serving(cluster, controller):
    ns, ip = client_ns(cluster), controller.ip
    with cluster.api() as api:
        api.create(ingress("broken", [rule("broken.example.com", path("/", "a"))],
                           tls=[{"hosts": ["broken.example.com"], "secretName": "missing"}]))
        ev = wait_for(api, "Event", lambda items: [e for e in items if e["involvedObject"]["name"] == "broken"
                                                   and e["reason"] == "SecretNotFound"],
                      namespace="default", timeout=10)[0]
    assert ev["type"] == "Warning" and ev["source"]["component"] == COMPONENT
    assert ev["message"] == 'secret "default/missing" not found'
    assert request(ns, ip, "broken.example.com").status == 404  # never served: no previous good config
    assert request(ns, ip, "foo.example.com", "/api").json()["hostname"] == "echo-a"


def wait_until(fetch, ok, timeout: float = 30.0, stable: int = 3):
    """Request until the expected answer came *stable* times in a row: the observable end of a
    reload (the old worker keeps accepting for a moment after the new one answers). Bounded by
    time, not attempts: how many requests fit in a reload depends on the machine's load."""
    r, streak = None, 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = fetch()
        streak = streak + 1 if ok(r) else 0
        if streak >= stable:
            return r
    raise AssertionError(f"never got the expected answer in {timeout:g}s; last status {getattr(r, 'status', None)}")


def test_changes_under_traffic_fail_no_request(cluster, controller, echo):
    ns, ip = client_ns(cluster), controller.ip
    stop, results = threading.Event(), {"ok": 0, "failed": []}

    def traffic() -> None:
        while not stop.is_set():
            try:
                r = request(ns, ip, "foo.example.com", "/steady")
                if r.status == 200:
                    results["ok"] += 1
                else:
                    results["failed"].append(r.status)
            except OSError as e:
                results["failed"].append(f"{time.strftime('%H:%M:%S')} {e!r}")

    t = threading.Thread(target=traffic)
    t.start()
    try:
        with cluster.api() as api:
            for i in range(8):
                ing = api.get("Ingress", "default", "routes")
                ing["spec"]["rules"][0]["http"]["paths"].append(path(f"/v{i}", "a"))
                api.update(ing)
                wait_until(lambda: request(ns, ip, "foo.example.com", f"/v{i}"),
                           lambda r: r.status == 200 and r.json()["hostname"] == "echo-a")
            # an endpoint change: a second pod behind b (its echo port served like the others)
            api.create(pod("echo-b2", "b"))
            p = wait_for(api, "Pod", lambda items: [x for x in items if x["metadata"]["name"] == "echo-b2"
                                                    and x["status"].get("podIP")], namespace="default", timeout=20)[0]
            echo.add_pod("echo-b2", cluster.pod("echo-b2").netns, "echo-b2", [(ECHO_PORT, "TCP")], mode="echo")
            wait_until(lambda: request(ns, ip, "foo.example.com", "/"),
                       lambda r: r.json()["hostname"] == "echo-b2")
            assert p["status"]["podIP"]
            # and an endpoint going away while requests flow
            api.delete("Pod", "default", "echo-b2")
            wait_for(api, "Pod", lambda items: all(x["metadata"]["name"] != "echo-b2" for x in items),
                     namespace="default", timeout=40)
            echo.remove_pod("echo-b2")
            wait_until(lambda: request(ns, ip, "foo.example.com", "/"),
                       lambda r: r.json()["hostname"] == "echo-b", stable=10)
    finally:
        stop.set()
        t.join()
    log = Path(state.directory(cluster.name)) / "ingress" / "nginx.log"
    assert results["failed"] == [] and results["ok"] > 0, log.read_text()[-4000:]
