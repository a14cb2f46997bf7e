"""healthCheckNodePort servers for externalTrafficPolicy=Local services.

Upstream ``pkg/proxy/healthcheck/service_health.go``: one HTTP server per service with a
``healthCheckNodePort``; any path answers ``200`` if the node has local ready endpoints for the
service and the proxy is healthy, else ``503``, with the header
``X-Load-Balancing-Endpoint-Weight: <local endpoints>`` and the body::

    {
    	"service": {
    		"namespace": "ns",
    		"name": "svc"
    	},
    	"localEndpoints": 1,
    	"serviceProxyHealthy": true
    }

Servers listen on the node's address (``bind_address``) in the calling process's netns.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from testbed.proxy.model import NamespacedName

log = logging.getLogger(__name__)


def health_body(nn: NamespacedName, local_endpoints: int, healthy: bool) -> str:
    doc = {"service": {"namespace": nn[0], "name": nn[1]}, "localEndpoints": local_endpoints,
           "serviceProxyHealthy": healthy}
    return json.dumps(doc, indent="\t")


class NodeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server for a node's netns (the proxy's health endpoints)."""

    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves socket.getfqdn(address): a reverse DNS lookup that
        # times out (10 s) in a node netns without DNS. Skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Server(NodeHTTPServer):
    def __init__(self, addr, owner: "ServiceHealthServer", nn: NamespacedName):
        self.owner, self.nn = owner, nn
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass

    def _answer(self, with_body: bool) -> None:
        owner, nn = self.server.owner, self.server.nn
        count, healthy = owner.status(nn)
        body = health_body(nn, count, healthy).encode()
        self.send_response(200 if count and healthy else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Load-Balancing-Endpoint-Weight", str(count))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)


class ServiceHealthServer:
    """``SyncServices`` / ``SyncEndpoints`` of upstream's ServiceHealthServer."""

    def __init__(self, bind_address: str, healthy: Callable[[], bool] = lambda: True):
        self.bind_address = bind_address
        self._healthy = healthy
        self._mu = threading.Lock()
        self._servers: dict[NamespacedName, tuple[int, _Server | None]] = {}
        self._endpoints: dict[NamespacedName, int] = {}

    def status(self, nn: NamespacedName) -> tuple[int, bool]:
        with self._mu:
            count = self._endpoints.get(nn, 0)
        return count, bool(self._healthy())

    def sync_services(self, ports: dict[NamespacedName, int]) -> None:
        """Start servers for new (service, port) pairs, stop those no longer wanted."""
        with self._mu:
            current = dict(self._servers)
        for nn, (port, srv) in current.items():
            if ports.get(nn) != port:
                if srv is not None:
                    log.info("health check: stopping %s/%s on port %d", nn[0], nn[1], port)
                    srv.shutdown()
                    srv.server_close()
                with self._mu:
                    self._servers.pop(nn, None)
        for nn, port in ports.items():
            with self._mu:
                if nn in self._servers:
                    continue
            srv = None
            try:
                srv = _Server((self.bind_address, port), self, nn)
                threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"healthcheck:{port}", daemon=True).start()
                log.info("health check: serving %s/%s on %s:%d", nn[0], nn[1], self.bind_address, port)
            except OSError as exc:
                # upstream: logs and records a FailedToStartServiceHealthcheck event; retried next sync
                log.error("health check: cannot listen on %s:%d for %s/%s: %s",
                          self.bind_address, port, nn[0], nn[1], exc)
                continue
            with self._mu:
                self._servers[nn] = (port, srv)

    def sync_endpoints(self, counts: dict[NamespacedName, int]) -> None:
        with self._mu:
            self._endpoints = {nn: counts.get(nn, 0) for nn in self._servers} | \
                {nn: n for nn, n in counts.items()}

    def ports(self) -> dict[NamespacedName, int]:
        with self._mu:
            return {nn: port for nn, (port, srv) in self._servers.items() if srv is not None}

    def close(self) -> None:
        self.sync_services({})


def probe(address: str, port: int, timeout: float = 2.0, path: str = "/") -> tuple[int, dict, dict]:
    """GET ``path`` from a health-check server: (status, headers, JSON body). For tests and tools."""
    import http.client
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)
    finally:
        conn.close()

