"""etcd's v3 API through its JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``).

etcd 3.4 serves the gateway on its client URL under ``/v3/``. Keys and values travel base64
encoded, 64-bit numbers as decimal strings, and fields with their zero value (``false``, 0,
the PUT event type) are left out of responses. One keep-alive connection per thread serves
the unary calls; each watch has its own connection, streaming one JSON object per line
(HTTP/1.1 by :mod:`.http1`).
"""

from __future__ import annotations

import base64
import json
import threading
import ssl
import urllib.parse
from dataclasses import dataclass

from ... import jsoncodec
from .http1 import Connection, HTTPError, LineStream


class EtcdError(Exception):
    """An error answered by etcd (``code`` is the gRPC status code) or a failed connection
    (``code`` None)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TLS:
    """Client credentials for an etcd served over HTTPS (etcdctl's ``--cacert``, ``--cert``,
    ``--key``); without a CA the system's trusted CAs verify the server."""
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cacert)
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def etcdctl_flags(self) -> list[str]:
        return [f"--{name}={path}" for name, path in (("cacert", self.cacert), ("cert", self.cert),
                                                      ("key", self.key)) if path]


def b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(data: str) -> bytes:
    return base64.b64decode(data)


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that makes a range cover every key starting with *prefix*."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # keys here end in "/" (0x2f), so no carry
    return b64(bytes(raw))


class WatchStream:
    """One ``/v3/watch`` response stream. :meth:`next` blocks for the next message;
    :meth:`close` (any thread) ends it."""

    def __init__(self, conn: Connection):
        self._conn = conn
        self._lines = LineStream(conn)

    def next(self) -> dict | None:
        """The next ``result`` message, or None when the stream ended or was closed."""
        try:
            line = self._lines.readline()
        except (OSError, ValueError):  # ValueError: read after close() on another thread
            return None
        if not line:
            return None
        msg = jsoncodec.loads(line)
        if "error" in msg:
            err = msg["error"]
            raise EtcdError(err.get("message", str(err)), err.get("grpc_code") or err.get("http_code"))
        return msg.get("result") or {}

    def set_timeout(self, seconds: float | None) -> None:
        self._conn.sock.settimeout(seconds)

    def close(self) -> None:
        self._conn.close()


class EtcdClient:
    def __init__(self, endpoint: str, timeout: float = 10.0, *, tls: TLS | None = None,
                 serializable: bool = False):
        """*endpoint*: one client URL or several separated by commas (members of one etcd
        cluster: a new connection goes to the first that answers). ``https://`` URLs use *tls*.
        *serializable*: ranges read the member's own state without etcd's ReadIndex round
        through raft; only for a one-member etcd, where that state is the latest (a write is
        answered after it is applied), so the read stays linearizable."""
        self.serializable = serializable
        self.endpoints = [e.strip() for e in endpoint.split(",") if e.strip()]
        self._addrs = []
        for e in self.endpoints or [endpoint]:
            url = urllib.parse.urlsplit(e)
            if url.scheme not in ("http", "https") or not url.hostname or not url.port:
                raise ValueError(f"etcd endpoint {e!r}: expected http://HOST:PORT or https://HOST:PORT")
            self._addrs.append((url.scheme, url.hostname, url.port))
        self.endpoint = ",".join(self.endpoints)
        self._ssl = (tls or TLS()).context() if any(a[0] == "https" for a in self._addrs) else None
        self._timeout = timeout
        self._local = threading.local()
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()

    def _connect(self, timeout: float | None) -> Connection:
        error: OSError | None = None
        for scheme, host, port in self._addrs:
            try:
                return Connection(host, port, timeout, self._ssl if scheme == "https" else None)
            except OSError as e:  # the next member may answer
                error = e
        raise error or OSError("no etcd endpoint")

    def _thread_conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self._connect(self._timeout)
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop_thread_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)

    def call(self, path: str, body: dict) -> dict:
        """POST *body* to ``/v3/<path>``; returns the answer or raises :class:`EtcdError`."""
        data = jsoncodec.dumpb(body)
        while True:
            conn = getattr(self._local, "conn", None)
            reused = conn is not None and not conn.closed
            answered = False
            try:
                conn = self._thread_conn()
                conn.send("/v3/" + path, data)
                status, headers = conn.response_head()
                answered = True
                raw = conn.request_body(headers)
                break
            except OSError as e:
                self._drop_thread_conn()
                # etcd closed an idle kept-alive connection: the request never reached it, so
                # sending it again cannot apply a write twice; anything else is reported
                if reused and not answered and isinstance(e, (HTTPError, BrokenPipeError, ConnectionResetError)):
                    continue
                raise EtcdError(f"etcd at {self.endpoint} is unreachable: {e}") from None
        msg = jsoncodec.loads(raw) if raw else {}
        if status != 200 or "error" in msg:
            raise EtcdError(msg.get("message") or msg.get("error") or f"HTTP {status}", msg.get("code"))
        return msg

    def range(self, key: str, *, prefix: bool = False, revision: int | None = None,
              count_only: bool = False, limit: int = 0) -> dict:
        body: dict = {"key": b64(key)}
        if prefix:
            body["range_end"] = prefix_end(key)
        if revision:
            body["revision"] = str(revision)
        if count_only:
            body["count_only"] = True
        if limit:
            body["limit"] = str(limit)
        if self.serializable:
            body["serializable"] = True
        return self.call("kv/range", body)

    def txn(self, compare: list, success: list, failure: list | None = None) -> dict:
        return self.call("kv/txn", {"compare": compare, "success": success, "failure": failure or []})

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with *prefix*; returns how many there were."""
        return int(self.call("kv/deleterange", {"key": b64(prefix), "range_end": prefix_end(prefix)})
                   .get("deleted", 0))

    def compact(self, revision: int) -> dict:
        return self.call("kv/compaction", {"revision": str(revision)})

    def watch(self, key: str, *, prefix: bool, start_revision: int) -> tuple[WatchStream, dict]:
        """Open a watch with ``prev_kv`` (DELETED events need the last state); returns the
        stream and its ``created`` message (whose header revision is etcd's current one)."""
        req = {"key": b64(key), "start_revision": str(start_revision), "prev_kv": True}
        if prefix:
            req["range_end"] = prefix_end(key)
        conn = None
        try:
            conn = self._connect(self._timeout)
            conn.send("/v3/watch", json.dumps({"create_request": req}).encode())
            status, _ = conn.response_head()
        except OSError as e:
            if conn is not None:
                conn.close()
            raise EtcdError(f"etcd at {self.endpoint} is unreachable: {e}") from None
        if status != 200:
            conn.close()
            raise EtcdError(f"etcd watch: HTTP {status}")
        stream = WatchStream(conn)
        created = stream.next()
        if created is None or not created.get("created"):
            stream.close()
            raise EtcdError(f"etcd watch on {key}: not created ({created})")
        return stream, created

    def close(self) -> None:
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()
