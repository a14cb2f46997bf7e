"""``pods/portforward`` the way kubectl 1.31+ asks first: WebSocket with subprotocol
``SPDY/3.1+portforward.k8s.io``, whose binary messages carry a SPDY/3.1 connection (``spdy.py``);
and the way older clients ask: an HTTP upgrade to ``SPDY/3.1`` (``X-Stream-Protocol-Version:
portforward.k8s.io``), after which the same SPDY connection runs on the socket itself.

Per forwarded connection the client opens two streams with the same ``requestID`` and ``port``:
``streamType: error`` (the server writes why it could not connect, if it could not) and
``streamType: data`` (the bytes). As the kubelet does, the server connects to ``localhost:port``
inside the pod's network namespace (``Dialer``: the namespace is entered by the thread that makes
the socket; nothing is opened in the host's) and copies both ways; the client's end of a data
stream half-closes the connection to the pod, the pod's end closes both streams."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Callable

from . import spdy, websocket
from .errors import BadRequest

PROTOCOLS = ("SPDY/3.1+portforward.k8s.io",)
# (pod, port) -> a TCP socket connected to that port inside the pod's network namespace
Dialer = Callable[[dict, int], socket.socket]


def _ports(query: dict) -> list[int]:
    out = []
    for v in query.get("ports") or []:
        for p in v.split(","):
            try:
                n = int(p)
            except ValueError:
                raise BadRequest(f'invalid port "{p}"') from None
            if not 0 < n < 65536:
                raise BadRequest(f'port "{p}" must be between 1 and 65535')
            out.append(n)
    return out


def serve(handler, pod: dict, query: dict, dial: Dialer | None) -> None:
    _ports(query)  # kubectl names them; each stream names its own
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise BadRequest(f"cannot port-forward to a completed pod; current phase is {phase}")
    if dial is None:
        raise BadRequest("port-forward is not served on this listener (the API's HTTPS port serves it)")
    if _is_spdy_upgrade(handler.headers):
        handler.close_connection = True
        handler.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                            b"X-Stream-Protocol-Version: " + SPDY_PROTOCOL.encode() + b"\r\n\r\n")
        handler.wfile.flush()
        _Session(_RawConn(handler), pod, dial).run()
        return
    if not websocket.is_upgrade(handler.headers):
        raise BadRequest("Upgrade request required: pods/portforward is served over WebSocket "
                         f"({PROTOCOLS[0]}) or SPDY/3.1 ({SPDY_PROTOCOL})")
    head, _ = websocket.handshake(handler.headers, PROTOCOLS)
    handler.close_connection = True
    handler.wfile.write(head)
    _Session(websocket.Conn(handler.rfile.read, handler.wfile.write), pod, dial).run()


SPDY_PROTOCOL = "portforward.k8s.io"


def _is_spdy_upgrade(headers) -> bool:
    upgrade = (headers.get("Upgrade") or "").lower()
    versions = [v.strip() for v in ",".join(headers.get_all("X-Stream-Protocol-Version") or []).split(",")]
    return upgrade.startswith("spdy/3.1") and SPDY_PROTOCOL in versions


class _RawConn:
    """The connection itself as the SPDY byte stream (what ``websocket.Conn`` is for the tunnel)."""

    def __init__(self, handler):
        self.handler = handler

    def recv(self) -> bytes | None:
        data = self.handler.rfile.read1(65536)
        return data or None

    def send(self, payload: bytes) -> None:
        self.handler.wfile.write(payload)
        self.handler.wfile.flush()

    def close(self, code: int = 0, reason: str = "") -> None:
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)


class _Tunnel:
    """The byte stream the WebSocket's binary messages make."""

    def __init__(self, conn: websocket.Conn):
        self.conn, self.buf = conn, b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            msg = self.conn.recv()
            if msg is None:
                break
            self.buf += msg
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Pair:
    __slots__ = ("port", "error", "data", "sock", "pending", "client_done")

    def __init__(self, port: int):
        self.port, self.error, self.data, self.sock = port, None, None, None
        self.pending: list[bytes] = []
        self.client_done = False


class _Session:
    def __init__(self, conn: websocket.Conn, pod: dict, dial: Dialer):
        self.conn, self.pod, self.dial = conn, pod, dial
        self.codec = spdy.HeaderCodec()
        self.lock = threading.Lock()  # one header compressor, frames whole on the wire
        self.pairs: dict[str, _Pair] = {}
        self.by_stream: dict[int, _Pair] = {}
        self.last_stream = 0

    def send(self, frame: bytes) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(frame)

    def run(self) -> None:
        tunnel = _Tunnel(self.conn)
        try:
            while True:
                frame = spdy.read_frame(tunnel.read)
                if frame is None:
                    break
                if frame.control:
                    if not self._control(frame):
                        break
                else:
                    self._data(frame)
        except spdy.ProtocolError as exc:
            with self.lock:
                self.send(spdy.goaway(self.last_stream, 1))
            with contextlib.suppress(OSError):
                self.conn.close(websocket.PROTOCOL_ERROR, str(exc)[:100])
        finally:
            for pair in list(self.pairs.values()):
                self._close_pod(pair)
            with contextlib.suppress(OSError):
                self.conn.close()

    def _control(self, f: spdy.Frame) -> bool:
        if f.type == spdy.SYN_STREAM:
            with self.lock:
                headers = spdy.syn_stream_headers(self.codec, f)
                self.last_stream = max(self.last_stream, f.stream_id)
                self.send(self.codec.syn_reply(f.stream_id))
            self._stream(f.stream_id, headers)
        elif f.type == spdy.PING:
            with self.lock:
                self.send(spdy.ping(f.data))
        elif f.type == spdy.RST_STREAM:
            pair = self.by_stream.get(f.stream_id)
            if pair is not None:
                self._close_pod(pair)
        elif f.type == spdy.GOAWAY:
            return False
        return True  # SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do

    def _stream(self, sid: int, headers: dict[str, list[str]]) -> None:
        typ = (headers.get("streamtype") or [""])[0]
        rid = (headers.get("requestid") or [str(sid)])[0]
        try:
            port = int((headers.get("port") or [""])[0])
        except ValueError:
            port = 0
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = _Pair(port)
        self.by_stream[sid] = pair
        if typ == "error":
            pair.error = sid
        elif typ == "data":
            pair.data = sid
        else:
            with self.lock:
                self.send(spdy.rst_stream(sid, spdy.RST_CANCEL))
            return
        if pair.error is not None and pair.data is not None:
            threading.Thread(target=self._forward, args=(rid, pair), daemon=True, name="portforward").start()

    def _data(self, f: spdy.Frame) -> None:
        pair = self.by_stream.get(f.stream_id)
        if pair is None or f.stream_id != pair.data:
            return  # the client's end of the error stream, or a stream already gone
        with self.lock:
            sock = pair.sock
            if sock is None:
                pair.pending.append(f.data)
                pair.client_done = pair.client_done or f.fin
                return
        try:
            if f.data:
                sock.sendall(f.data)
            if f.fin:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close_pod(pair)

    def _forward(self, rid: str, pair: _Pair) -> None:
        try:
            sock = self.dial(self.pod, pair.port)
        except OSError as exc:
            name = self.pod["metadata"]["name"]
            msg = (f"error forwarding port {pair.port} to pod {name}: failed to connect to localhost:{pair.port} "
                   f"inside the pod's network namespace: {exc.strerror or exc}")
            with self.lock:
                self.send(spdy.data_frame(pair.error, msg.encode()))
                self.send(spdy.data_frame(pair.error, b"", fin=True))
                self.send(spdy.data_frame(pair.data, b"", fin=True))
            self.pairs.pop(rid, None)
            return
        with self.lock:
            pair.sock = sock
            pending, done = pair.pending, pair.client_done
            pair.pending = []
        try:
            for chunk in pending:
                sock.sendall(chunk)
            if done:
                sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(32768)
                if not data:
                    break
                with self.lock:
                    self.send(spdy.data_frame(pair.data, data))
        except OSError:
            pass
        finally:
            with self.lock:
                self.send(spdy.data_frame(pair.data, b"", fin=True))
                self.send(spdy.data_frame(pair.error, b"", fin=True))
            self._close_pod(pair)
            self.pairs.pop(rid, None)

    @staticmethod
    def _close_pod(pair: _Pair) -> None:
        sock = pair.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

