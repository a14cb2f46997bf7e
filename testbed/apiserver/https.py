"""The API over HTTPS on 127.0.0.1, for kubectl and client libraries (as kind serves a
cluster's API on a loopback port chosen at creation). Same handler and store as the unix
socket; every request must carry a client certificate signed by the cluster's CA (see
``tls.py``), anonymous ones get 401."""

from __future__ import annotations

import socketserver
import ssl
import threading

from .podexec import Runner
from .portforward import Dialer
from .podlogs import LogPath
from .server import Handler, ServerHandle, ServerMixin
from .store import Store
from .tls import Paths, server_context


class _HttpsServer(ServerMixin, socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, ctx: ssl.SSLContext, log_path: LogPath | None,
                 pod_exec: Runner | None, pod_dial: Dialer | None):
        self._setup(store, 64 << 20, log_path, pod_exec, pod_dial)
        self._ctx = ctx
        super().__init__(address, Handler)

    def finish_request(self, request, client_address) -> None:
        # the handshake runs in the connection's own thread: a slow client never stalls accept()
        try:
            request = self._ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # e.g. a certificate from another CA: refused in the handshake
        with request:
            super().finish_request(request, client_address)


class HttpsHandle(ServerHandle):
    @property
    def port(self) -> int:
        return self._server.server_address[1]


def serve_https(store: Store, paths: Paths, port: int = 0, host: str = "127.0.0.1", *,
                log_path: LogPath | None = None, pod_exec: Runner | None = None,
                pod_dial: Dialer | None = None) -> HttpsHandle:
    """Serve *store* over HTTPS at *host*:*port* (0: a free port, see ``.port``); ``log_path``
    locates a container's log file for ``pods/log``, ``pod_exec`` makes the command line of a
    ``pods/exec`` and ``pod_dial`` connects a ``pods/portforward`` (the cluster's processes on the
    unix socket have no use for either)."""
    server = _HttpsServer((host, port), store, server_context(paths), log_path, pod_exec, pod_dial)
    thread = threading.Thread(target=server.accept_loop, name=f"apiserver-https:{server.server_address[1]}",
                              daemon=True)
    thread.start()
    return HttpsHandle(server, thread, None)

