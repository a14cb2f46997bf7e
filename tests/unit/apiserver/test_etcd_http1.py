"""The etcd client's HTTP/1.1 against a server of the test's own on loopback: bodies by length
and chunked, lines streamed across chunks, a kept-alive connection the server closed."""

import socket
import threading

from testbed.apiserver.etcd.client import EtcdClient
from testbed.apiserver.etcd.http1 import Connection, LineStream


class Server:
    """Accepts connections; answers each request with the next of *answers* (bytes), or
    closes the connection without answering when the answer is None."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        with conn:
            while self.answers:
                head = f.readline()
                if not head:
                    return
                length = 0
                while (line := f.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append((head.split()[1].decode(), f.read(length)))
                answer = self.answers.pop(0)
                if answer is None:
                    return
                conn.sendall(answer)

    def close(self):
        self.sock.close()


def chunked(*parts):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_bodies_by_length_and_chunked_and_connection_close():
    s = Server([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"a\":\"1\"}",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b'{"b":', b'"2"}'),
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"])
    c = EtcdClient(f"http://127.0.0.1:{s.port}")
    try:
        assert c.call("kv/range", {"key": "x"}) == {"a": "1"}
        assert c.call("kv/range", {"key": "y"}) == {"b": "2"}
        assert c.call("kv/txn", {}) == {}
        assert c.call("kv/txn", {}) == {}  # on a new connection: the server closed the last one
        assert [r[0] for r in s.requests] == ["/v3/kv/range", "/v3/kv/range", "/v3/kv/txn", "/v3/kv/txn"]
        assert s.requests[0][1] == b'{"key":"x"}'
    finally:
        c.close()
        s.close()


def test_a_request_on_a_connection_the_server_closed_is_sent_again_once():
    s = Server([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", None,
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"a\":\"2\"}"])
    c = EtcdClient(f"http://127.0.0.1:{s.port}")
    try:
        assert c.call("kv/range", {}) == {}
        assert c.call("kv/range", {"n": 2}) == {"a": "2"}
        assert [r[1] for r in s.requests] == [b"{}", b'{"n":2}', b'{"n":2}']
    finally:
        c.close()
        s.close()


def test_lines_stream_across_chunks():
    s = Server([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked(b'{"result":{"created":true}}\n{"res', b'ult":{}}\n', b'{"x":1}\n{"y":2}\n')])
    conn = Connection("127.0.0.1", s.port, 5)
    try:
        conn.send("/v3/watch", b"{}")
        assert conn.response_head()[0] == 200
        lines = LineStream(conn)
        assert [lines.readline() for _ in range(5)] == [
            b'{"result":{"created":true}}\n', b'{"result":{}}\n', b'{"x":1}\n', b'{"y":2}\n', b""]
    finally:
        conn.close()
        s.close()
