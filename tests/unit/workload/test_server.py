"""WorkloadServer end to end on 127.0.0.1 in the test's own namespace (no root needed)."""

import http.client
import json
import socket
import threading
import time

import pytest

from testbed.workload import WorkloadServer
from testbed.workload.http import MAX_BODY

LO = "127.0.0.1"


def add(server, key="p", pod="pod-a", ports=((0, "TCP"),), **kw):
    return server.add_pod(key, None, pod, list(ports), host=LO, **kw)


_readers: dict[int, "Reader"] = {}


class Reader:
    """Reads Content-Length framed responses from a blocking socket, keeping what follows."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {self.buf[:200]!r}")
        self.buf += chunk

    def response(self) -> tuple[int, dict, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        n = int(headers["content-length"])
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Read one response; bytes after it are kept for the next call on the same socket."""
    reader = _readers.get(id(sock))
    if reader is None or reader.sock is not sock:
        reader = _readers[id(sock)] = Reader(sock)
    return reader.response()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LO, 0))
        return s.getsockname()[1]


def test_all_paths_on_one_keepalive_connection(server):
    info = add(server, version="v7")
    port = info.bound[0]
    with socket.create_connection((LO, port), timeout=5) as c:
        me = "%s:%d" % c.getsockname()

        def get(path, body=b"", method="GET"):
            extra = f"Content-Length: {len(body)}\r\n" if body else ""
            c.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode() + body)
            return read_response(c)

        assert get("/hostname")[::2] == (200, b"pod-a")
        assert get("/clientip")[::2] == (200, me.encode())
        assert get("/echo", b"payload", "POST")[::2] == (200, b"payload")
        assert get("/echo?a=1&b=2")[::2] == (200, b"a=1&b=2")
        assert get("/healthz")[::2] == (200, b"ok")
        assert get("/readyz")[::2] == (200, b"ok")
        assert get("/version")[::2] == (200, b"v7")
        status, headers, body = get("/nope")
        assert status == 404 and headers["connection"] == "keep-alive"
        status, headers, body = get("/")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"hostname": "pod-a", "clientip": me, "version": "v7",
                                    "serverAddr": f"{LO}:{port}"}
        assert server.connection_count("p") == 1


def test_stdlib_http_client_keepalive(server):
    port = add(server).bound[0]
    conn = http.client.HTTPConnection(LO, port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/hostname")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"pod-a")
    conn.request("POST", "/echo", body=b"x" * 5000, headers={"Expect": "100-continue"})
    r = conn.getresponse()
    assert r.read() == b"x" * 5000
    conn.close()


def test_pipelining_and_large_echo(server):
    port = add(server).bound[0]
    big = bytes(range(256)) * (MAX_BODY // 256)
    with socket.create_connection((LO, port), timeout=10) as c:
        c.sendall(b"GET /hostname HTTP/1.1\r\n\r\nGET /version HTTP/1.1\r\n\r\n"
                  + f"POST /echo HTTP/1.1\r\nContent-Length: {len(big)}\r\n\r\n".encode() + big
                  + b"GET /healthz HTTP/1.1\r\n\r\n")
        assert read_response(c)[2] == b"pod-a"
        assert read_response(c)[2] == b"v1"
        assert read_response(c)[2] == big
        assert read_response(c)[2] == b"ok"


def test_expect_100_continue(server):
    port = add(server).bound[0]
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(b"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        assert c.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(b"data")
        assert read_response(c)[2] == b"data"


def test_close_semantics_and_errors(server):
    port = add(server).bound[0]
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(c)
        assert headers["connection"] == "close" and body == b"pod-a"
        assert c.recv(10) == b""
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(b"GET /hostname HTTP/1.1\r\nConnection: close\r\n\r\nGET /version HTTP/1.1\r\n\r\n")
        assert read_response(c)[2] == b"pod-a"
        assert c.recv(10) == b""  # the pipelined second request is not answered
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(b"BROKEN\r\n\r\n")
        status, headers, _ = read_response(c)
        assert status == 400 and headers["connection"] == "close"
        assert c.recv(10) == b""


def test_readyz_toggle(server):
    port = add(server, ready=False).bound[0]
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(b"GET /readyz HTTP/1.1\r\n\r\n")
        assert read_response(c)[::2] == (503, b"not ready")
        server.set_ready("p", True)
        c.sendall(b"GET /readyz HTTP/1.1\r\n\r\n")
        assert read_response(c)[::2] == (200, b"ok")
    assert server.get("p").ready is True
    with pytest.raises(KeyError):
        server.set_ready("missing", True)


def test_udp(server):
    info = add(server, ports=[(0, "UDP")], version="v3")
    port = info.bound[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.bind((LO, 0))
        me = "%s:%d" % u.getsockname()
        for msg, want in [(b"hostname", b"pod-a"), (b"clientip", me.encode()), (b"version", b"v3"),
                          (b"\x01raw bytes\n", b"\x01raw bytes\n")]:
            u.sendto(msg, (LO, port))
            data, src = u.recvfrom(100)
            assert (data, src) == (want, (LO, port))
    # a UDP port also gets an HTTP listener on the same number
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
        assert read_response(c)[2] == b"pod-a"


def test_several_ports(server):
    a, b = free_port(), free_port()
    info = add(server, ports=[(a, "TCP"), (b, "UDP"), (a, "UDP")])
    assert info.bound == (a, b) and info.ports == ((a, "TCP"), (b, "UDP"), (a, "UDP"))
    for port in info.bound:
        with socket.create_connection((LO, port), timeout=5) as c:
            c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
            assert read_response(c)[2] == b"pod-a"


def test_remove_pod_stops_answering_at_once(server):
    port = add(server).bound[0]
    c = socket.create_connection((LO, port), timeout=5)
    c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
    assert read_response(c)[2] == b"pod-a"
    assert server.remove_pod("p") is True
    assert server.remove_pod("p") is False
    assert server.pods() == []
    try:
        assert c.recv(10) == b""  # established connection closed
    except ConnectionResetError:
        pass
    c.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LO, port), timeout=5)
    # the key and the port can be reused right away
    again = server.add_pod("p", None, "pod-b", [(port, "TCP")], host=LO)
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
        assert read_response(c)[2] == b"pod-b"
    assert again.bound == (port,)


def test_validation(server):
    add(server)
    with pytest.raises(ValueError, match="already"):
        add(server)
    with pytest.raises(ValueError, match="loopback"):
        server.add_pod("x", None, "x", [], host="0.0.0.0")
    for bad in ([(70000, "TCP")], [(80, "ICMP")], [("80", "TCP")], [(True, "TCP")], [80]):
        with pytest.raises(ValueError):
            add(server, key="y", ports=bad)
    with pytest.raises(ValueError):
        server.add_pod("", None, "x", [], host=LO)
    # a failed bind does not keep the key reserved
    taken = server.get("p").bound[0]
    with pytest.raises(OSError):
        add(server, key="z", ports=[(taken, "TCP")])
    assert [p.key for p in server.pods()] == ["p"]


def test_default_port_is_8080():
    from testbed.workload import normalize_ports
    assert normalize_ports([]) == ((8080, "TCP"),)
    assert normalize_ports([(53, "udp"), (53, "UDP"), (80, "TCP")]) == ((53, "UDP"), (80, "TCP"))


def test_concurrent_adds_and_removes(server):
    errors = []

    def worker(n):
        try:
            for i in range(20):
                key = f"{n}-{i}"
                port = add(server, key=key, pod=key).bound[0]
                with socket.create_connection((LO, port), timeout=5) as c:
                    c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
                    assert read_response(c)[2] == key.encode()
                if i % 2:
                    assert server.remove_pod(key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(server.pods()) == 40


def test_stop_closes_everything():
    srv = WorkloadServer().start()
    port = srv.add_pod("p", None, "a", [(0, "TCP")], host=LO).bound[0]
    c = socket.create_connection((LO, port), timeout=5)
    c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
    assert read_response(c)[2] == b"a"
    queued = socket.create_connection((LO, port), timeout=5)  # maybe still in the backlog
    srv.stop()
    srv.stop()  # idempotent
    assert c.recv(10) == b""
    c.close()
    try:
        assert queued.recv(10) == b""  # accepted, then closed
    except ConnectionResetError:  # or reset with the listener
        pass
    queued.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LO, port), timeout=5)
    with pytest.raises(RuntimeError):
        srv.add_pod("q", None, "a", [], host=LO)


def test_idle_connections_are_closed():
    srv = WorkloadServer(idle_timeout=0.2).start()
    try:
        port = srv.add_pod("p", None, "a", [(0, "TCP")], host=LO).bound[0]
        with socket.create_connection((LO, port), timeout=5) as c:
            t = time.monotonic()
            assert c.recv(10) == b""
            assert time.monotonic() - t < 3
    finally:
        srv.stop()
