import json

import pytest

from testbed.workload.http import (
    CONTINUE,
    MAX_BODY,
    MAX_HEAD,
    HttpError,
    PodContext,
    Request,
    RequestParser,
    handle,
    response,
    serve_request,
    split_target,
    udp_reply,
)

CTX = PodContext(hostname="web-1", version="v2", ready=True, client="10.0.0.5:40000", server="10.244.1.3:8080")


def parse_all(data: bytes) -> list[Request]:
    p = RequestParser()
    p.feed(data)
    out = []
    while (r := p.next()) is not None:
        out.append(r)
    return out


def test_simple_get():
    (r,) = parse_all(b"GET /hostname HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n")
    assert (r.method, r.target, r.version, r.path, r.query) == ("GET", "/hostname", "HTTP/1.1", "/hostname", "")
    assert r.headers == {"host": "a", "x-y": "z"}
    assert r.body == b"" and r.keep_alive


def test_incremental_bytes_one_at_a_time():
    data = b"POST /echo?q=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n"
    p = RequestParser()
    got = []
    for i in range(len(data)):
        p.feed(data[i:i + 1])
        while (r := p.next()) is not None:
            got.append(r)
    assert [(r.method, r.path, r.query, r.body) for r in got] == [("POST", "/echo", "q=1", b"hello"), ("GET", "/", "", b"")]
    assert not p.buf


def test_pipelined_requests_and_leading_crlf():
    rs = parse_all(b"\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
    assert [r.path for r in rs] == ["/a", "/b", "/c"]


def test_bare_lf_head():
    (r,) = parse_all(b"GET /x HTTP/1.0\nHost: h\n\n")
    assert r.path == "/x" and r.headers["host"] == "h"


def test_chunked_body_with_trailer():
    data = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    p = RequestParser()
    p.feed(data[:-3])
    assert p.next() is None
    p.feed(data[-3:])
    r = p.next()
    assert r.body == b"hello world" and not p.buf


@pytest.mark.parametrize("version,conn,keep", [
    ("HTTP/1.1", None, True), ("HTTP/1.1", "close", False), ("HTTP/1.1", "Keep-Alive", True),
    ("HTTP/1.0", None, False), ("HTTP/1.0", "keep-alive", True), ("HTTP/1.1", "foo, Close", False),
])
def test_keep_alive_rules(version, conn, keep):
    head = f"GET / {version}\r\n" + (f"Connection: {conn}\r\n" if conn else "") + "\r\n"
    (r,) = parse_all(head.encode())
    assert r.keep_alive is keep


@pytest.mark.parametrize("data,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / FOO\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 10), 431),
])
def test_malformed(data, status):
    with pytest.raises(HttpError) as exc:
        parse_all(data)
    assert exc.value.status == status


def test_duplicate_equal_content_length_is_fine():
    (r,) = parse_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
    assert r.body == b"ok"


def test_expect_continue_once():
    p = RequestParser()
    p.feed(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert p.next() is None
    assert p.want_continue() is True
    assert p.want_continue() is False
    p.feed(b"abc")
    assert p.next().body == b"abc"
    assert p.want_continue() is False
    assert CONTINUE.startswith(b"HTTP/1.1 100")


def test_split_target():
    assert split_target("/echo?a=b&c") == ("/echo", "a=b&c")
    assert split_target("http://svc:80/hostname?x") == ("/hostname", "x")
    assert split_target("http://svc") == ("/", "")
    assert split_target("/p#frag") == ("/p", "")


def req(target, body=b"", method="GET", headers=None):
    return Request(method, target, "HTTP/1.1", headers or {}, body)


def test_handlers():
    assert handle(req("/hostname"), CTX)[:2] == (200, b"web-1")
    assert handle(req("/clientip"), CTX)[:2] == (200, b"10.0.0.5:40000")
    assert handle(req("/echo", b"body"), CTX)[:2] == (200, b"body")
    assert handle(req("/echo?msg=hi%20there"), CTX)[:2] == (200, b"msg=hi%20there")
    assert handle(req("/echo"), CTX)[:2] == (200, b"")
    assert handle(req("/healthz"), CTX)[:2] == (200, b"ok")
    assert handle(req("/readyz"), CTX)[:2] == (200, b"ok")
    not_ready = PodContext(**{**CTX.__dict__, "ready": False})
    assert handle(req("/readyz"), not_ready)[:2] == (503, b"not ready")
    assert handle(req("/version"), CTX)[:2] == (200, b"v2")
    assert handle(req("/nope"), CTX)[0] == 404
    status, body, ctype = handle(req("/"), CTX)
    assert status == 200 and ctype == "application/json"
    assert json.loads(body) == {"hostname": "web-1", "clientip": "10.0.0.5:40000", "version": "v2",
                                "serverAddr": "10.244.1.3:8080"}


def test_response_framing():
    raw = response(200, b"hello")
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Length: 5" in lines and b"Connection: keep-alive" in lines
    assert body == b"hello"
    assert b"Connection: close" in response(503, b"x", keep_alive=False)


def test_serve_request_head_and_close():
    raw, keep = serve_request(Request("HEAD", "/hostname", "HTTP/1.1", {}), CTX)
    assert keep and raw.endswith(b"\r\n\r\n") and b"Content-Length: 5" in raw
    raw, keep = serve_request(Request("GET", "/hostname", "HTTP/1.1", {"connection": "close"}), CTX)
    assert not keep and raw.endswith(b"web-1") and b"Connection: close" in raw


def test_udp_reply():
    assert udp_reply(b"hostname", "p", "v1", "1.2.3.4:5") == b"p"
    assert udp_reply(b"hostname\n", "p", "v1", "1.2.3.4:5") == b"p"
    assert udp_reply(b"clientip", "p", "v1", "1.2.3.4:5") == b"1.2.3.4:5"
    assert udp_reply(b"version", "p", "v1", "1.2.3.4:5") == b"v1"
    assert udp_reply(b"\x00anything else\n", "p", "v1", "x") == b"\x00anything else\n"
