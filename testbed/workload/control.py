"""Control channel of a standalone workload process: JSON lines over a unix socket.

Each request is one JSON object on one line with an ``op``; each answer is one line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "...", "type": "ValueError"}``:

=========  ========================================================================  ==================
op         fields                                                                    result
=========  ========================================================================  ==================
``add``    ``key``, ``netns`` (null: own netns, loopback only), ``pod``, ``ports``    pod info (dict)
           (``[[8080, "TCP"], ...]``), optional ``version``, ``ready``, ``host``
``remove`` ``key``                                                                   true if it existed
``ready``  ``key``, ``ready`` (bool)                                                 null
``list``                                                                             list of pod infos
``ping``                                                                             ``{"pid": ...}``
=========  ========================================================================  ==================
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from .server import PodInfo, WorkloadServer

MAX_LINE = 1 << 20


class ControlError(Exception):
    """The workload process refused a command; ``type`` names the server-side exception."""

    def __init__(self, message: str, type_: str = ""):
        super().__init__(message)
        self.type = type_


class ControlValueError(ControlError, ValueError):
    pass


class ControlKeyError(ControlError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _error(reply: dict) -> ControlError:
    type_ = reply.get("type", "")
    cls = {"ValueError": ControlValueError, "KeyError": ControlKeyError}.get(type_, ControlError)
    return cls(reply.get("error", "error"), type_)


def dispatch(server: WorkloadServer, msg: dict):
    """Run one control command against ``server`` and return its JSON-able result."""
    if not isinstance(msg, dict):
        raise ValueError("a command is a JSON object")
    op = msg.get("op")
    if op == "ping":
        return {"pid": os.getpid(), "pods": len(server.pods())}
    if op == "add":
        kwargs = {}
        for name in ("version", "ready", "host", "mode"):
            if name in msg:
                kwargs[name] = msg[name]
        ports = [tuple(p) for p in msg.get("ports") or ()]
        return server.add_pod(msg["key"], msg.get("netns"), msg["pod"], ports, **kwargs).to_dict()
    if op == "remove":
        return server.remove_pod(msg["key"])
    if op == "ready":
        server.set_ready(msg["key"], bool(msg["ready"]))
        return None
    if op == "list":
        return [p.to_dict() for p in server.pods()]
    raise ValueError(f"unknown op {op!r}")


def _answer(server: WorkloadServer, line: bytes) -> bytes:
    try:
        result = dispatch(server, json.loads(line))
        reply = {"ok": True, "result": result}
    except KeyError as exc:
        reply = {"ok": False, "error": f"missing or unknown key: {exc.args[0]!s}", "type": "KeyError"}
    except Exception as exc:  # reported to the client, the process keeps serving
        reply = {"ok": False, "error": str(exc), "type": type(exc).__name__}
    return json.dumps(reply).encode() + b"\n"


class ControlServer:
    """Accepts control connections on ``path``; one thread per connection (there are few)."""

    def __init__(self, server: WorkloadServer, path: str):
        self.server = server
        self.path = path
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> ControlServer:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="workload-control", daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="workload-control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        conn.sendall(_answer(self.server, line))
                if len(buf) > MAX_LINE:
                    conn.sendall(json.dumps({"ok": False, "error": "line too long"}).encode() + b"\n")
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class WorkloadClient:
    """Talk to ``python -m testbed.workload --control PATH``; mirrors ``WorkloadServer``'s methods.

    One connection, opened lazily and reopened after an error; thread-safe.
    """

    def __init__(self, control_path: str, timeout: float = 30.0):
        self.path = control_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file = None
        self._lock = threading.Lock()

    def __enter__(self) -> WorkloadClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def call(self, op: str, **fields):
        msg = json.dumps({"op": op, **fields}).encode() + b"\n"
        with self._lock:
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                    sock.settimeout(self.timeout)
                    try:
                        sock.connect(self.path)
                    except OSError:
                        sock.close()
                        raise
                    self._sock, self._file = sock, sock.makefile("rb")
                self._sock.sendall(msg)
                line = self._file.readline(MAX_LINE)
            except BaseException:
                self._drop()
                raise
            if not line.endswith(b"\n"):
                self._drop()
                raise ConnectionError("workload control channel closed")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise _error(reply)
        return reply.get("result")

    def wait(self, timeout: float = 10.0) -> dict:
        """Ping until the process answers (it may still be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ping()
            except (OSError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def ping(self) -> dict:
        return self.call("ping")

    def add_pod(self, key: str, netns_name: str | None, pod_name: str, ports=(), version: str = "v1", *,
                ready: bool = True, host: str = "0.0.0.0") -> PodInfo:
        result = self.call("add", key=key, netns=netns_name, pod=pod_name, ports=[list(p) for p in ports],
                           version=version, ready=ready, host=host)
        return PodInfo.from_dict(result)

    def remove_pod(self, key: str) -> bool:
        return bool(self.call("remove", key=key))

    def set_ready(self, key: str, ready: bool) -> None:
        self.call("ready", key=key, ready=bool(ready))

    def pods(self) -> list[PodInfo]:
        return [PodInfo.from_dict(d) for d in self.call("list")]
