"""RFC 6455 framing, and pods/exec over WebSocket end to end on the unix socket (the runner
runs the command on the host: the protocol is what is tested here; the sandbox in
tests/integration/test_kubectl.py)."""

import io
import json
import os
import select
import socket
import struct

import pytest

from testbed.apiserver import podexec, websocket
from testbed.apiserver.errors import BadRequest
from testbed.apiserver.memory import MemoryStore
from testbed.apiserver.server import serve


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    head = struct.pack("!BB", first, 0x80 | n) if n < 126 else struct.pack("!BBH", first, 0x80 | 126, n)
    return head + mask + websocket.unmask(payload, mask)


class Headers(dict):
    def get_all(self, k):
        return [self[k]] if k in self else None


def test_accept_key_is_the_rfc_example():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_picks_the_clients_first_supported_protocol():
    h = Headers({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Protocol": "v6.channel.k8s.io, v5.channel.k8s.io,v4.channel.k8s.io"})
    head, chosen = websocket.handshake(h, podexec.PROTOCOLS)
    assert chosen == "v5.channel.k8s.io"
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n" in head and head.endswith(b"\r\n\r\n")
    with pytest.raises(BadRequest, match="none of the requested subprotocols"):
        websocket.handshake(Headers(h, **{"Sec-WebSocket-Protocol": "SPDY/3.1"}), podexec.PROTOCOLS)
    with pytest.raises(BadRequest, match="Sec-WebSocket-Key"):
        websocket.handshake(Headers(h, **{"Sec-WebSocket-Key": "short"}), podexec.PROTOCOLS)


@pytest.mark.parametrize("n", [0, 5, 125, 126, 65535, 65536])
def test_frame_lengths_round_trip(n):
    data = bytes(range(256)) * (n // 256 + 1)
    data = data[:n]
    raw = websocket.frame(websocket.BINARY, data)
    # a server frame is unmasked: mask it as a client would to read it back
    first, second = raw[0], raw[1]
    hdr = 2 + (2 if second == 126 else 8 if second == 127 else 0)
    masked = bytes([first, second | 0x80]) + raw[2:hdr] + b"abcd" + websocket.unmask(raw[hdr:], b"abcd")
    assert websocket.read_frame(io.BytesIO(masked).read) == (True, websocket.BINARY, data)


def test_recv_reassembles_fragments_and_answers_pings():
    wire = (client_frame(websocket.BINARY, b"\x00he", fin=False) + client_frame(websocket.PING, b"hi")
            + client_frame(websocket.CONT, b"llo") + client_frame(websocket.CLOSE, struct.pack("!H", 1000)))
    sent = []
    conn = websocket.Conn(io.BytesIO(wire).read, sent.append)
    assert conn.recv() == b"\x00hello"
    assert sent == [websocket.frame(websocket.PONG, b"hi")]
    assert conn.recv() is None  # the close is answered
    assert sent[-1] == websocket.frame(websocket.CLOSE, struct.pack("!H", 1000)) and conn.closed


def test_unmasked_client_frame_is_a_protocol_error():
    sent = []
    conn = websocket.Conn(io.BytesIO(websocket.frame(websocket.BINARY, b"x")).read, sent.append)
    assert conn.recv() is None
    assert sent[0][0] == 0x88 and sent[0][2:4] == struct.pack("!H", 1002)


def test_exit_status_is_upstreams():
    assert podexec.exit_status(["true"], 0) == {"metadata": {}, "status": "Success"}
    st = podexec.exit_status(["sh", "-c", "exit 3"], 3)
    assert st["reason"] == "NonZeroExitCode" and st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert st["message"] == ("command terminated with non-zero exit code: error executing command "
                             "[sh -c exit 3], exit code 3")
    assert podexec.exit_status(["sleep"], -9)["details"]["causes"][0]["message"] == "137"


def test_exec_request_is_checked_as_upstream():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    with pytest.raises(BadRequest, match="at least 1 command"):
        podexec.exec_request(pod, {"stdout": ["true"]})
    with pytest.raises(BadRequest, match="at least one of stdin, stdout, stderr"):
        podexec.exec_request(pod, {"command": ["ls"]})
    with pytest.raises(BadRequest, match="a container name must be specified for pod p, choose one of: \\[a b\\]"):
        podexec.exec_request(pod, {"command": ["ls"], "stdout": ["true"]})
    assert podexec.exec_request(pod, {"command": ["ls", "-l"], "container": ["b"], "stdout": ["true"],
                                      "tty": ["true"], "stderr": ["true"]}) == (
        "b", ["ls", "-l"], {"stdin": False, "stdout": True, "stderr": False, "tty": True})


@pytest.fixture
def exec_api(tmp_path):
    store = MemoryStore()
    store.create({"kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                  "spec": {"containers": [{"name": "c"}]}})
    ran = []

    def runner(pod, container, argv):
        ran.append((pod["metadata"]["name"], container))
        return argv

    handle = serve(store, str(tmp_path / "api.sock"), pod_exec=runner)
    yield handle, ran
    handle.close()


def _exec(sock_path: str, query: str, sends: list[bytes]) -> tuple[bytes, dict[int, bytes]]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(f"GET /api/v1/namespaces/default/pods/p/exec?{query} HTTP/1.1\r\nHost: x\r\n"
              "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n".encode())
    f = s.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += f.read(1)
    for m in sends:
        s.sendall(client_frame(websocket.BINARY, m))
    channels: dict[int, bytes] = {}
    while True:
        fin, op, payload = _server_frame(f)
        if op == websocket.CLOSE:
            s.sendall(client_frame(websocket.CLOSE, payload))
            break
        if payload:
            channels[payload[0]] = channels.get(payload[0], b"") + payload[1:]
    s.close()
    return head, channels


def _server_frame(f):
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", f.read(8))[0]
    assert not b1 & 0x80  # servers do not mask
    return bool(b0 & 0x80), b0 & 0x0F, f.read(n)


def test_exec_streams_stdin_stdout_stderr_and_exit_code(exec_api):
    handle, ran = exec_api
    q = "command=sh&command=-c&command=cat%3B+echo+oops+%3E%262%3B+exit+3&stdin=true&stdout=true&stderr=true"
    head, ch = _exec(handle.socket_path, q, [b"\x00hello ", b"\x00world", bytes([255, 0])])
    assert head.startswith(b"HTTP/1.1 101") and b"v5.channel.k8s.io" in head
    assert ch[1] == b"hello world" and ch[2] == b"oops\n"
    status = json.loads(ch[3])
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3"
    assert ran == [("p", "c")]


def test_exec_success_and_tty(exec_api):
    handle, _ = exec_api
    _, ch = _exec(handle.socket_path, "command=echo&command=hi&stdout=true", [])
    assert ch[1] == b"hi\n" and json.loads(ch[3]) == {"metadata": {}, "status": "Success"}
    # a terminal: the resize reaches it before the line the command waits for; one output
    q = "command=sh&command=-c&command=read+x%3B+stty+size%3B+echo+err+%3E%262&stdin=true&stdout=true&stderr=true&tty=true"
    _, ch = _exec(handle.socket_path, q, [bytes([4]) + b'{"Width":91,"Height":17}', b"\x00go\n"])
    assert json.loads(ch[3])["status"] == "Success" and 2 not in ch
    assert ch[1].replace(b"\r", b"") == b"go\n17 91\nerr\n"  # the terminal echoes what was typed


def test_exec_without_upgrade_is_refused(exec_api):
    handle, _ = exec_api
    s = socket.socket(socket.AF_UNIX)
    s.connect(handle.socket_path)
    s.sendall(b"POST /api/v1/namespaces/default/pods/p/exec?command=ls&stdout=true HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 400")
    assert b"Upgrade request required" in data
    assert os.path.exists(handle.socket_path)


def test_a_client_that_goes_away_hangs_up_on_the_command(exec_api, tmp_path):
    handle, _ = exec_api
    pidfile = tmp_path / "pid"
    s = socket.socket(socket.AF_UNIX)
    s.connect(handle.socket_path)
    q = f"command=sh&command=-c&command=echo+%24%24+%3E+{pidfile}%3B+echo+up%3B+exec+sleep+60&stdout=true"
    s.sendall(f"GET /api/v1/namespaces/default/pods/p/exec?{q} HTTP/1.1\r\nHost: x\r\n"
              "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n".encode())
    f = s.makefile("rb")
    while f.readline() != b"\r\n":
        pass
    assert _server_frame(f)[2] == b"\x01up\n"  # the command runs
    pid = int(pidfile.read_text())
    pidfd = os.pidfd_open(pid)
    s.close()
    f.close()
    try:
        assert select.select([pidfd], [], [], 10)[0], "the command outlived its client"
    finally:
        os.close(pidfd)
