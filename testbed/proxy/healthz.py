"""kube-proxy's own health endpoints, as upstream's ``ProxyHealthServer``
(``pkg/proxy/healthcheck/proxy_health.go``): ``/healthz`` and ``/livez`` over HTTP on
``--healthz-bind-address`` (default ``0.0.0.0:10256``) in the node's network namespace.

Both answer ``200`` while no Service/EndpointSlice change has waited longer than the health
timeout (``2 x sync period``) to be programmed, else ``503``; the body is upstream's, byte for
byte in shape::

    {"lastUpdated": "2026-01-02 03:04:05.123456789 +0000 UTC m=+12.345678901","currentTime": "...", "nodeEligible": true}

(``/livez`` without ``nodeEligible``). Go prints a ``time.Time`` with its monotonic reading
(``m=+seconds since the process started``); so does this. When healthy, ``lastUpdated`` is the
current time, as upstream keeps it for compatibility; when not, the last successful sync's.
The testbed never marks a node for deletion, so ``nodeEligible`` stays true, as upstream's
does until it sees such a Node.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Callable

from testbed.proxy.healthcheck import NodeHTTPServer, probe

log = logging.getLogger("testbed.proxy")

HEALTHZ_PORT = 10256                       # upstream ports.ProxyHealthzPort
DEFAULT_BIND_ADDRESS = f"0.0.0.0:{HEALTHZ_PORT}"
ZERO_TIME = "0001-01-01 00:00:00 +0000 UTC"  # Go's zero time.Time
_STARTED = time.monotonic()


def go_time(wall: float, mono: float | None = None) -> str:
    """A UTC time as Go's ``time.Time.String()``: nanoseconds without trailing zeros, then the
    monotonic reading (``m=+S.NNNNNNNNN``) when there is one."""
    secs = int(wall)
    nanos = int(round((wall - secs) * 1e9))
    if nanos >= 1_000_000_000:
        secs, nanos = secs + 1, nanos - 1_000_000_000
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    text += " +0000 UTC"
    if mono is not None:
        text += f" m=+{mono - _STARTED:.9f}"
    return text


def healthz_body(last_updated: str, current: str, node_eligible: bool | None) -> str:
    """Upstream's ``fmt.Fprintf`` format, spacing included; ``node_eligible`` None: ``/livez``."""
    body = f'{{"lastUpdated": {json.dumps(last_updated)},"currentTime": {json.dumps(current)}'
    if node_eligible is not None:
        body += f', "nodeEligible": {"true" if node_eligible else "false"}'
    return body + "}"


def parse_bind_address(text: str) -> tuple[str, int] | None:
    """``IP:PORT`` -> (ip, port); an empty string turns the server off (None)."""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--healthz-bind-address: {text!r}; use IP:PORT (e.g. {DEFAULT_BIND_ADDRESS}) or ''")
    return host.strip("[]"), int(port)


class ProxyHealthServer:
    """``healthy()``: the proxy loop's verdict; ``last_updated()``: the wall and monotonic
    times of its last successful sync (None before the first)."""

    def __init__(self, address: tuple[str, int], healthy: Callable[[], bool],
                 last_updated: Callable[[], tuple[float, float] | None],
                 node_eligible: Callable[[], bool] = lambda: True,
                 clock: Callable[[], tuple[float, float]] = lambda: (time.time(), time.monotonic())):
        self.address = address
        self.healthy, self.last_updated, self.node_eligible = healthy, last_updated, node_eligible
        self.clock = clock
        self._server: NodeHTTPServer | None = None

    def answer(self, path: str) -> tuple[int, str]:
        """(status, body) for a request path; what the HTTP handler sends."""
        if path not in ("/healthz", "/livez"):
            return 404, "404 page not found\n"
        healthy = bool(self.healthy())
        eligible = bool(self.node_eligible()) if path == "/healthz" else None
        now = go_time(*self.clock())
        if eligible is not None:
            healthy = healthy and eligible
        if healthy:
            last = now
        else:
            lu = self.last_updated()
            last = go_time(*lu) if lu else ZERO_TIME
        return (200 if healthy else 503), healthz_body(last, now, eligible)

    def start(self) -> bool:
        """Listen and serve on a daemon thread; False (logged) when the address is taken, as
        upstream logs and carries on without it."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

            def _reply(self, with_body: bool) -> None:
                status, body = owner.answer(self.path.split("?", 1)[0])
                data = body.encode()
                self.send_response(status)
                ctype = "application/json" if status != 404 else "text/plain; charset=utf-8"
                self.send_header("Content-Type", ctype)
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if with_body:
                    self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._reply(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._reply(False)

        try:
            self._server = NodeHTTPServer(self.address, Handler)
        except OSError as exc:
            log.error("failed to start proxy healthz on %s:%d: %s", *self.address, exc)
            return False
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                         name="healthz", daemon=True).start()
        log.info("serving /healthz and /livez on %s:%d", *self.address)
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def get(ip: str, port: int = HEALTHZ_PORT, path: str = "/healthz", timeout: float = 1.0
        ) -> tuple[int | None, dict | None, str]:
    """GET a proxy's health endpoint from the calling thread's netns, as ``curl`` would:
    (status, JSON body, error) where status is None when nothing answered (error says why)."""
    import http.client
    import socket

    try:
        status, _, body = probe(ip, port, timeout, path)
    except socket.timeout:
        return None, None, f"no answer within {timeout:g}s"
    except ConnectionRefusedError:
        return None, None, "connection refused"
    except ValueError as exc:
        return None, None, f"not JSON: {exc}"
    except (OSError, http.client.HTTPException) as exc:
        return None, None, str(exc) or type(exc).__name__
    return status, body, ""
