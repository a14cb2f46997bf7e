"""The echo mode of the default workload (image registry.k8s.io/echoserver)."""

from __future__ import annotations

import json

import pytest

from testbed.workload.http import PodContext, Request, handle, serve_request, workload_mode


@pytest.mark.parametrize("image,mode", [
    ("registry.k8s.io/echoserver:1.10", "echo"),
    ("registry.k8s.io/echoserver", "echo"),
    ("registry.k8s.io/echoserver@sha256:5d99aa1120524c801bc8c1a7077e8f5ec122ba16b6dda1a5d3826057f67b9bcb", "echo"),
    ("registry.k8s.io/echoserver-other:1", "default"),
    ("testbed/echo:v2", "default"),
    (None, "default"),
])
def test_mode_from_image(image, mode):
    assert workload_mode(image) == mode


def test_every_path_answers_200_with_the_request():
    ctx = PodContext("echo-1", "v1", True, "10.244.0.3:41000", "10.244.1.2:8080", "echo")
    req = Request("POST", "/any/path?x=1", "HTTP/1.1", {"host": "foo.example.com", "x-real-ip": "10.0.0.9"}, b"hi")
    status, body, ctype = handle(req, ctx)
    doc = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert {k: doc[k] for k in ("hostname", "path", "query", "method", "clientip", "body")} == {
        "hostname": "echo-1", "path": "/any/path", "query": "x=1", "method": "POST",
        "clientip": "10.244.0.3", "body": "hi"}
    assert doc["headers"]["host"] == "foo.example.com" and doc["headers"]["x-real-ip"] == "10.0.0.9"
    # paths the default workload reserves are echoed too
    resp, keep = serve_request(Request("GET", "/healthz", "HTTP/1.1", {}), ctx)
    assert resp.startswith(b"HTTP/1.1 200 OK") and b'"path":"/healthz"' in resp and keep


def test_default_mode_unchanged():
    ctx = PodContext("p", "v1", True, "10.0.0.1:1", "10.0.0.2:8080")
    assert handle(Request("GET", "/nothing", "HTTP/1.1", {}), ctx)[0] == 404
