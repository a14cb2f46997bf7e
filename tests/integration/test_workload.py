"""The default pod workload served inside a namespace, reached over a veth from another one."""

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from testbed import netlink, netns
from testbed.workload import WorkloadClient, WorkloadServer

pytestmark = pytest.mark.root

SRV_IP, CLI_IP = "10.250.0.1", "10.250.0.2"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _build_server_side() -> None:
    b = netlink.Batch()
    b.link_set("lo up", index=1, up=True)
    b.apply()


def _build_client_side(srv_fd: int) -> None:
    b = netlink.Batch()
    b.link_set("cli: lo up", index=1, up=True)
    b.veth_add("cli: eth0 <-> srv eth0", name="eth0", index=2, mtu=1500, mac=None, peer_name="eth0",
               peer_netns_fd=srv_fd, peer_index=2, up=True)
    b.addr_add(f"cli: {CLI_IP}/24", index=2, address=CLI_IP, prefixlen=24)
    b.apply()


def _finish_server_side() -> None:
    b = netlink.Batch()
    b.addr_add(f"srv: {SRV_IP}/24", index=2, address=SRV_IP, prefixlen=24)
    b.link_set("srv: eth0 up", index=2, up=True)
    b.apply()


@pytest.fixture
def pair():
    """Namespaces (server, client) joined by a veth pair: 10.250.0.1 <-> 10.250.0.2."""
    base = f"tb.wltest{os.getpid()}"
    srv, cli = f"{base}.srv", f"{base}.cli"
    created = []
    try:
        with netns.Runner(1) as r:
            created.append(srv)
            r.run_new(srv, _build_server_side)
            fd = netns.open_fd(srv)
            try:
                created.append(cli)
                r.run_new(cli, _build_client_side, fd)
            finally:
                os.close(fd)
            r.run_in(srv, _finish_server_side)
        yield srv, cli
    finally:
        for name in created:
            netns.delete(name)
        assert not netns.list_names(base + ".")


def http_get(path: str, port: int = 8080, body: bytes = b"") -> tuple[int, bytes, str]:
    """One request from the calling (client namespace) thread: (status, body, client ip:port)."""
    with socket.create_connection((SRV_IP, port), timeout=5) as c:
        me = "%s:%d" % c.getsockname()
        method = "POST" if body else "GET"
        c.sendall(f"{method} {path} HTTP/1.1\r\nHost: pod\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, payload = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), payload, me


def udp(msg: bytes, port: int) -> tuple[bytes, str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.connect((SRV_IP, port))
        me = "%s:%d" % u.getsockname()
        u.send(msg)
        return u.recv(65535), me


def test_pod_in_namespace(pair):
    srv, cli = pair
    with WorkloadServer() as server:
        info = server.add_pod("default/web-0", srv, "web-0", [(8080, "TCP"), (5353, "UDP")], version="v1")
        assert info.bound == (8080, 5353)

        def checks():
            status, body, _ = http_get("/hostname")
            assert (status, body) == (200, b"web-0")
            status, body, me = http_get("/clientip")
            assert status == 200 and body.decode() == me and me.startswith(CLI_IP + ":")
            assert http_get("/echo", body=b"hello pod")[:2] == (200, b"hello pod")
            assert http_get("/echo?x=1")[:2] == (200, b"x=1")
            assert http_get("/version")[:2] == (200, b"v1")
            assert http_get("/healthz")[:2] == (200, b"ok")
            status, body, me = http_get("/")
            assert json.loads(body) == {"hostname": "web-0", "clientip": me, "version": "v1",
                                        "serverAddr": f"{SRV_IP}:8080"}
            assert http_get("/missing")[0] == 404
            # HTTP on the UDP port number too, and UDP on the TCP port number
            assert http_get("/hostname", port=5353)[:2] == (200, b"web-0")
            for port in (5353, 8080):
                assert udp(b"hostname", port)[0] == b"web-0"
                reply, me = udp(b"clientip", port)
                assert reply.decode() == me and me.startswith(CLI_IP + ":")
                assert udp(b"version", port)[0] == b"v1"
                assert udp(b"some bytes\n", port)[0] == b"some bytes\n"

        netns.run_in(cli, checks)

        def readyz():
            return http_get("/readyz")[:2]

        assert netns.run_in(cli, readyz) == (200, b"ok")
        server.set_ready("default/web-0", False)
        assert netns.run_in(cli, readyz) == (503, b"not ready")
        server.set_ready("default/web-0", True)
        assert netns.run_in(cli, readyz) == (200, b"ok")

        # nothing of the pod leaked into this (root) namespace
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", 8080), timeout=2).close()

        # remove_pod: the open connection is closed and new ones are refused at once
        def open_conn():
            c = socket.create_connection((SRV_IP, 8080), timeout=5)
            c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
            assert c.recv(4096).endswith(b"web-0")
            return c

        conn = netns.run_in(cli, open_conn)
        assert server.remove_pod("default/web-0") is True
        try:
            assert conn.recv(10) == b""
        except ConnectionResetError:
            pass
        conn.close()

        def refused():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((SRV_IP, 8080), timeout=5)
            with pytest.raises((ConnectionRefusedError, TimeoutError)):
                udp(b"hostname", 5353)

        netns.run_in(cli, refused)
        assert server.pods() == []


def test_default_port_and_process_mode(pair):
    srv, cli = pair
    d = tempfile.mkdtemp(prefix="tbwl-")
    path = os.path.join(d, "control.sock")
    proc = subprocess.Popen([sys.executable, "-m", "testbed.workload", "--control", path], cwd=REPO)
    try:
        with WorkloadClient(path) as client:
            client.wait(10)
            info = client.add_pod("default/db-0", srv, "db-0", [], version="v2")
            assert info.ports == ((8080, "TCP"),) and info.bound == (8080,)
            assert netns.run_in(cli, http_get, "/version")[:2] == (200, b"v2")
            assert netns.run_in(cli, udp, b"hostname", 8080)[0] == b"db-0"
            client.set_ready("default/db-0", False)
            assert netns.run_in(cli, http_get, "/readyz")[:2] == (503, b"not ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(d)


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def _lo_up() -> None:
    b = netlink.Batch()
    b.link_set("lo up", index=1, up=True)
    b.apply()


@pytest.mark.slow
def test_many_pods_are_cheap():
    n = 300
    base = f"tb.wltest{os.getpid()}m"
    names = [f"{base}.{i}" for i in range(n)]
    created = []
    server = WorkloadServer().start()
    try:
        with netns.Runner(4) as r:
            futures = []
            for name in names:
                created.append(name)
                futures.append(r.submit_new(name, _lo_up))
            for f in futures:
                f.result()
        server.add_pod("warm-up", names[0], "warm-up", [])
        server.remove_pod("warm-up")
        gc.collect()
        rss0, cpu0, wall0 = _rss_kib(), time.process_time(), time.perf_counter()
        for i, name in enumerate(names):
            server.add_pod(str(i), name, f"pod-{i}", [(8080, "TCP"), (53, "UDP")])
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        gc.collect()
        per_pod_kib = (_rss_kib() - rss0) / n
        print(f"\n{n} pods: {wall * 1e6 / n:.0f} us wall, {cpu * 1e6 / n:.0f} us cpu, {per_pod_kib:.1f} KiB RSS per pod")
        assert cpu / n < 1e-3 and wall / n < 2e-3 and per_pod_kib < 100

        def get_last():
            with socket.create_connection(("127.0.0.1", 8080), timeout=5) as c:
                c.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
                return c.recv(4096)
        assert netns.run_in(names[-1], get_last).endswith(f"pod-{n - 1}".encode())
    finally:
        server.stop()
        for name in created:
            netns.delete(name)
        assert not netns.list_names(base + ".")
