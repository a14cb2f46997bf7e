"""kube-proxy's /healthz and /livez: upstream's status codes and body, over real HTTP on
loopback (no root needed)."""

from __future__ import annotations

import json
import re
import socket

import pytest

from testbed.proxy import healthz
from testbed.proxy.healthz import ProxyHealthServer, go_time, healthz_body, parse_bind_address

WALL = 1767323045.123456789


def test_go_time_is_gos_time_string():
    assert go_time(1767323045.0) == "2026-01-02 03:04:05 +0000 UTC"
    assert go_time(1767323045.5) == "2026-01-02 03:04:05.5 +0000 UTC"
    text = go_time(WALL, healthz._STARTED + 12.5)
    assert re.fullmatch(r"2026-01-02 03:04:05\.1234\d* \+0000 UTC m=\+12\.500000000", text), text


def test_body_is_upstreams_format():
    assert healthz_body("a", "b", True) == '{"lastUpdated": "a","currentTime": "b", "nodeEligible": true}'
    assert healthz_body("a", "b", None) == '{"lastUpdated": "a","currentTime": "b"}'
    assert json.loads(healthz_body("a", "b", False))["nodeEligible"] is False


def test_answers_follow_the_loops_health():
    state = {"healthy": True, "last": None}
    srv = ProxyHealthServer(("127.0.0.1", 0), lambda: state["healthy"], lambda: state["last"],
                            clock=lambda: (1767323045.0, healthz._STARTED + 1))
    code, body = srv.answer("/healthz")
    assert code == 200 and json.loads(body) == {"lastUpdated": "2026-01-02 03:04:05 +0000 UTC m=+1.000000000",
                                                "currentTime": "2026-01-02 03:04:05 +0000 UTC m=+1.000000000",
                                                "nodeEligible": True}
    state["healthy"] = False
    code, body = srv.answer("/livez")
    assert code == 503 and json.loads(body)["lastUpdated"] == healthz.ZERO_TIME and "nodeEligible" not in body
    state["last"] = (1767323000.0, healthz._STARTED)
    assert json.loads(srv.answer("/healthz")[1])["lastUpdated"] == "2026-01-02 03:03:20 +0000 UTC m=+0.000000000"
    assert srv.answer("/metrics") == (404, "404 page not found\n")


def test_served_over_http_and_get_reports_what_answered():
    state = {"healthy": True}
    srv = ProxyHealthServer(("127.0.0.1", 0), lambda: state["healthy"], lambda: None)
    assert srv.start()
    try:
        port = srv._server.server_address[1]
        code, body, err = healthz.get("127.0.0.1", port)
        assert (code, err) == (200, "") and body["nodeEligible"] is True
        state["healthy"] = False
        code, body, err = healthz.get("127.0.0.1", port, "/livez")
        assert code == 503 and set(body) == {"lastUpdated", "currentTime"}
    finally:
        srv.close()
    code, body, err = healthz.get("127.0.0.1", port)
    assert code is None and err == "connection refused"


def test_a_taken_port_is_logged_not_fatal():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        srv = ProxyHealthServer(("127.0.0.1", s.getsockname()[1]), lambda: True, lambda: None)
        assert srv.start() is False
    finally:
        s.close()


@pytest.mark.parametrize("text,want", [("0.0.0.0:10256", ("0.0.0.0", 10256)), ("", None),
                                       ("[::]:10256", ("::", 10256))])
def test_bind_address(text, want):
    assert parse_bind_address(text) == want


@pytest.mark.parametrize("text", ["10256", "0.0.0.0:", "0.0.0.0:70000"])
def test_bad_bind_address(text):
    with pytest.raises(ValueError, match="--healthz-bind-address"):
        parse_bind_address(text)
