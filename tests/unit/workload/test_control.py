"""The standalone process (``python -m testbed.workload``) and its JSON-lines control channel."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from testbed.workload import ControlError, PodInfo, WorkloadClient, WorkloadServer
from testbed.workload.control import ControlServer

LO = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def get(port: int, path: str) -> bytes:
    with socket.create_connection((LO, port), timeout=5) as c:
        c.sendall(f"GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
def process(short_dir):
    path = os.path.join(short_dir, "control.sock")
    proc = subprocess.Popen([sys.executable, "-m", "testbed.workload", "--control", path], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = WorkloadClient(path)
    try:
        client.wait(10)
        yield proc, client, path
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_process_lifecycle(process):
    proc, client, path = process
    assert client.ping()["pid"] == proc.pid
    info = client.add_pod("ns/a", None, "pod-a", [(0, "TCP")], version="v2", host=LO)
    assert isinstance(info, PodInfo) and info.pod == "pod-a" and info.version == "v2"
    port = info.bound[0]
    assert get(port, "/hostname") == b"pod-a"
    assert get(port, "/version") == b"v2"
    client.set_ready("ns/a", False)
    assert get(port, "/readyz") == b"not ready"
    assert [p.key for p in client.pods()] == ["ns/a"] and client.pods()[0].ready is False
    with pytest.raises(ValueError):
        client.add_pod("ns/a", None, "pod-a", [(0, "TCP")], host=LO)
    with pytest.raises(ValueError, match="loopback"):
        client.add_pod("ns/b", None, "pod-b", [])
    with pytest.raises(KeyError):
        client.set_ready("missing", True)
    assert client.remove_pod("ns/a") is True
    assert client.remove_pod("ns/a") is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LO, port), timeout=5)

    client.add_pod("ns/c", None, "pod-c", [(0, "TCP")], host=LO)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not os.path.exists(path)


def test_raw_json_lines(process):
    proc, client, path = process
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        f = s.makefile("rb")
        s.sendall(b'{"op":"ping"}\n\n{"op":"bogus"}\nnot json\n{"op":"add","key":"k","netns":null,"pod":"p",'
                  b'"ports":[[0,"UDP"]],"host":"127.0.0.1"}\n{"op":"list"}\n{"op":"ready","key":"k","ready":false}\n'
                  b'{"op":"remove","key":"k"}\n')
        replies = [json.loads(f.readline()) for _ in range(7)]
    assert replies[0]["ok"] and replies[0]["result"]["pid"] == proc.pid
    assert replies[1] == {"ok": False, "error": "unknown op 'bogus'", "type": "ValueError"}
    assert replies[2]["ok"] is False and replies[2]["type"] == "JSONDecodeError"
    assert replies[3]["ok"] and replies[3]["result"]["ports"] == [[0, "UDP"]]
    assert [p["key"] for p in replies[4]["result"]] == ["k"]
    assert replies[5] == {"ok": True, "result": None}
    assert replies[6] == {"ok": True, "result": True}


def test_sigint_also_exits_cleanly(process):
    proc, client, path = process
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert not os.path.exists(path)


def test_client_errors_when_nothing_listens(short_dir):
    client = WorkloadClient(os.path.join(short_dir, "nothing.sock"))
    with pytest.raises(OSError):
        client.ping()
    with pytest.raises(OSError):
        client.wait(0.1)


def test_in_process_control_server(short_dir):
    path = os.path.join(short_dir, "c.sock")
    with WorkloadServer() as srv:
        ctl = ControlServer(srv, path).start()
        try:
            assert os.stat(path).st_mode & 0o777 == 0o600
            with WorkloadClient(path) as client:
                port = client.add_pod("k", None, "p", [(0, "TCP")], host=LO, version="v9").bound[0]
                assert get(port, "/version") == b"v9"
                assert srv.get("k").version == "v9"
                with pytest.raises(ControlError):
                    client.call("nope")
        finally:
            ctl.close()
        assert not os.path.exists(path)
