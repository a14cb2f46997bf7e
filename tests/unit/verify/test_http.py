"""The http check kind: its format in ``checks:`` and the request/response handling (no root)."""

from __future__ import annotations

import socket
import threading

import pytest

from testbed.verify import http
from testbed.verify.model import Context, HttpRequest, validate

SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}


def check(**expect) -> dict:
    return {"name": "c1", "from": "node/node1", "to": {"ip": "10.0.0.1", "port": 80}, "expect": expect}


def parsed(*checks):
    return validate(list(checks), Context())


def test_a_full_http_expectation_parses():
    checks, problems = parsed(check(http={
        "request": {"host": "foo.example.com", "path": "/api?x=1", "scheme": "https", "sni": "foo.example.com",
                    "auth": {"username": "foo", "password": "bar"}, "headers": {"X-Name": "v"}},
        "status": 401, "answeredBy": ["echo-a"], "headers": {"WWW-Authenticate": 'Basic realm="x"'},
        "backendHeaders": {"X-Forwarded-Proto": "https"}, "certificate": {"subject": "CN=foo.example.com"}}))
    assert not problems
    h = checks[0].http
    assert h.request == HttpRequest("foo.example.com", "/api?x=1", "https", "foo.example.com", ("foo", "bar"),
                                    (("x-name", "v"),))
    assert (h.status, h.answered_by, h.headers) == (401, ("echo-a",), (("www-authenticate", 'Basic realm="x"'),))
    assert h.backend_headers == (("x-forwarded-proto", "https"),) and h.certificate_subject == "CN=foo.example.com"
    assert checks[0].expected_reach == "answered"


def test_defaults_are_a_plain_get_expecting_200():
    checks, problems = parsed(check(http={}))
    assert not problems and checks[0].http.status == 200 and checks[0].http.request.path == "/"
    assert checks[0].http.request.scheme == "http" and checks[0].http.request.server_name is None


def test_sni_defaults_to_the_host_without_port():
    assert HttpRequest("foo.example.com:8443", scheme="https").server_name == "foo.example.com"
    assert HttpRequest("a.example.com", scheme="https", sni="b.example.com").server_name == "b.example.com"


@pytest.mark.parametrize("http_expect, message", [
    ({"request": {"scheme": "ftp"}}, "checks[0].expect.http.request.scheme: unsupported value 'ftp'; allowed: http, https"),
    ({"request": {"path": "api"}}, "checks[0].expect.http.request.path: 'api' is not an absolute path"),
    ({"request": {"host": "bad host"}}, "checks[0].expect.http.request.host: 'bad host' is not a host name"),
    ({"request": {"sni": "a.example.com"}}, "checks[0].expect.http.request.sni: only with scheme https"),
    ({"request": {"auth": {"username": "foo"}}}, "checks[0].expect.http.request.auth: needs username and password"),
    ({"request": {"verb": "POST"}}, "checks[0].expect.http.request.verb: unknown field; allowed: host, path"),
    ({"status": 700}, "checks[0].expect.http.status: must be an integer from 100 to 599, got 700"),
    ({"headers": {"x": 1}}, "checks[0].expect.http.headers: must be a mapping of header names to string values"),
    ({"certificate": {"subject": "CN=x"}}, "checks[0].expect.http.certificate: only with request.scheme https"),
    ({"certificate": {"subject": "x"}}, "checks[0].expect.http.certificate.subject: 'x' is not a subject"),
    ({"answeredBy": []}, "checks[0].expect.http.answeredBy: must be a non-empty list of pod names"),
])
def test_bad_http_expectations_name_the_field(http_expect, message):
    _, problems = parsed(check(http=http_expect))
    assert any(str(p).startswith(message) for p in problems), [str(p) for p in problems]


def test_http_combines_with_steady_but_not_with_packet_expectations():
    steady = {"action": {"delete": ["pod/x"]}, "until": {"answeredBy": ["y"]}}
    _, problems = parsed(check(http={}, steady=steady))
    assert not problems
    _, problems = parsed(check(http={}, dnat=True))
    assert any(str(p).startswith("checks[0].expect.http: combines only with reach, rules and steady") for p in problems)
    _, problems = parsed(dict(check(http={}), protocol="UDP"))
    assert any("HTTP runs over TCP" in str(p) for p in problems)


def test_request_bytes_carry_host_auth_and_headers():
    req = HttpRequest("foo.example.com", "/p?q=1", auth=("foo", "bar"), headers=(("x-a", "1"),))
    assert http.request_bytes(req, "10.0.0.1", 80) == (
        b"GET /p?q=1 HTTP/1.1\r\nHost: foo.example.com\r\nConnection: close\r\nUser-Agent: testbed-verify\r\n"
        b"Authorization: Basic Zm9vOmJhcg==\r\nx-a: 1\r\n\r\n")
    assert b"Host: 10.0.0.1:30080\r\n" in http.request_bytes(HttpRequest(), "10.0.0.1", 30080)


def test_parse_response_lowercases_headers_and_dechunks():
    raw = (b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://a/\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert http.parse_response(raw) == (308, {"location": "https://a/", "transfer-encoding": "chunked"}, b"abcde")


def serve_once(response: bytes) -> tuple[int, threading.Thread, list]:
    srv = socket.create_server(("127.0.0.1", 0))
    seen: list = []

    def run():
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            seen.append(data)
            conn.sendall(response)
        srv.close()
    t = threading.Thread(target=run)
    t.start()
    return srv.getsockname()[1], t, seen


def test_request_reads_the_echoed_pod_and_headers():
    body = b'{"hostname":"echo-a","clientip":"10.244.0.3","headers":{"X-Forwarded-Proto":"http"}}'
    port, t, seen = serve_once(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + body)
    a = http.request(lambda kind: socket.socket(socket.AF_INET, kind), "127.0.0.1", port,
                     HttpRequest("foo.example.com", "/api"), timeout=5)
    t.join()
    assert a.outcome == "answered" and a.status == 200 and a.hostname == "echo-a"
    assert a.backend_headers == {"x-forwarded-proto": "http"}
    assert seen[0].startswith(b"GET /api HTTP/1.1\r\nHost: foo.example.com\r\n")


def test_a_non_echo_body_is_a_one_line_excerpt():
    page = b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    port, t, _ = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n" + page)
    a = http.request(lambda kind: socket.socket(socket.AF_INET, kind), "127.0.0.1", port, HttpRequest(), timeout=5)
    t.join()
    assert (a.status, a.detail) == (404, "<html> <head><title>404 Not Found</title></head> <body>")


def test_request_to_a_closed_port_is_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    a = http.request(lambda kind: socket.socket(socket.AF_INET, kind), "127.0.0.1", port, HttpRequest(), timeout=2)
    assert a.outcome == "refused" and a.status is None


def test_header_matching_star_means_present():
    assert http.header_matches("*", "x") and not http.header_matches("*", None)
    assert http.header_matches("a", "a") and not http.header_matches("a", "b")
