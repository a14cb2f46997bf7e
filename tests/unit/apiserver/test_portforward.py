"""SPDY/3.1 framing and pods/portforward tunnelled in WebSocket, end to end on the unix socket
(the dialer connects to a TCP server of the test; the pod's namespace is in
tests/integration/test_kubectl.py)."""

import io
import socket
import struct
import threading
import zlib

import pytest

from testbed.apiserver import spdy, websocket
from testbed.apiserver.memory import MemoryStore
from testbed.apiserver.server import serve

from .test_websocket import _server_frame, client_frame


def test_dictionary_is_the_specifications():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2  # the dictionary id SPDY/3 peers check


def test_headers_round_trip_over_one_compression_context():
    client, server = spdy.HeaderCodec(), spdy.HeaderCodec()
    for n in range(3):  # later blocks depend on the earlier ones' context
        block = client.encode({"streamType": "data", "port": "8080", "requestID": str(n)})
        assert server.decode(block) == {"streamtype": ["data"], "port": ["8080"], "requestid": [str(n)]}


def test_frames():
    f = spdy.read_frame(io.BytesIO(spdy.data_frame(5, b"abc", fin=True)).read)
    assert (f.control, f.stream_id, f.data, f.fin) == (False, 5, b"abc", True)
    f = spdy.read_frame(io.BytesIO(spdy.rst_stream(7, spdy.RST_CANCEL)).read)
    assert (f.control, f.type, f.stream_id, f.data[4:]) == (True, spdy.RST_STREAM, 7, struct.pack("!I", 5))
    with pytest.raises(spdy.ProtocolError, match="version 2"):
        spdy.read_frame(io.BytesIO(struct.pack("!HHI", 0x8002, 1, 0)).read)
    assert spdy.read_frame(io.BytesIO(b"").read) is None


class Client:
    """A port-forward client: SPDY frames in WebSocket messages over the unix socket."""

    def __init__(self, path: str):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.s.sendall(b"GET /api/v1/namespaces/default/pods/p/portforward?ports=80 HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n")
        self.f = self.s.makefile("rb")
        self.head = b""
        while not self.head.endswith(b"\r\n\r\n"):
            self.head += self.f.read(1)
        self.codec = spdy.HeaderCodec()
        self.buf = b""

    def send(self, frame: bytes) -> None:
        self.s.sendall(client_frame(websocket.BINARY, frame))

    def syn(self, sid: int, typ: str, port: int, rid: int) -> None:
        block = self.codec.encode({"streamType": typ, "port": str(port), "requestID": str(rid)})
        self.send(spdy.control(spdy.SYN_STREAM, struct.pack("!IIH", sid, 0, 0) + block))

    def frame(self) -> spdy.Frame:
        def read(n):
            while len(self.buf) < n:
                _, op, payload = _server_frame(self.f)
                assert op == websocket.BINARY
                self.buf += payload
            out, self.buf = self.buf[:n], self.buf[n:]
            return out
        return spdy.read_frame(read)


@pytest.fixture
def pf_api(tmp_path):
    store = MemoryStore()
    store.create({"kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c"}]}})
    backend = socket.create_server(("127.0.0.1", 0))

    def echo():
        while True:
            try:
                c, _ = backend.accept()
            except OSError:
                return
            with c:
                data = b""
                while chunk := c.recv(4096):
                    data += chunk
                c.sendall(b"got " + data)  # answers after the client's end of file

    threading.Thread(target=echo, daemon=True).start()
    port = backend.getsockname()[1]
    dialed = []

    def dial(pod, p):
        dialed.append((pod["metadata"]["name"], p))
        return socket.create_connection(("127.0.0.1", port if p == 80 else 1), timeout=5)

    handle = serve(store, str(tmp_path / "api.sock"), pod_dial=dial)
    yield handle, dialed
    handle.close()
    backend.close()


def test_portforward_data_and_error_streams(pf_api):
    handle, dialed = pf_api
    c = Client(handle.socket_path)
    assert c.head.startswith(b"HTTP/1.1 101") and b"SPDY/3.1+portforward.k8s.io" in c.head
    c.send(spdy.control(spdy.PING, struct.pack("!I", 1)))
    f = c.frame()
    assert (f.type, f.data) == (spdy.PING, struct.pack("!I", 1))
    c.syn(1, "error", 80, 0)
    c.syn(3, "data", 80, 0)
    replies = [c.frame(), c.frame()]
    assert [(r.type, r.stream_id) for r in replies] == [(spdy.SYN_REPLY, 1), (spdy.SYN_REPLY, 3)]
    c.send(spdy.data_frame(3, b"hello"))
    c.send(spdy.data_frame(3, b"", fin=True))
    got, fins = b"", set()
    while fins != {1, 3}:
        f = c.frame()
        assert not f.control
        if f.stream_id == 3:
            got += f.data
        else:
            assert f.data == b""  # nothing went wrong
        if f.fin:
            fins.add(f.stream_id)
    assert got == b"got hello" and dialed == [("p", 80)]
    # a port nobody listens on: the reason on the error stream
    c.syn(5, "error", 81, 1)
    c.syn(7, "data", 81, 1)
    errors = b""
    while True:
        f = c.frame()
        if not f.control and f.stream_id == 5:
            errors += f.data
            if f.fin:
                break
    assert b"error forwarding port 81 to pod p: failed to connect to localhost:81" in errors
    c.s.close()
