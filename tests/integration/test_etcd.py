"""A cluster's etcd member, and the API server (HTTP on a unix socket) keeping its objects
there; loopback only, no namespaces."""

import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading

import pytest

from testbed.apiserver import etcd
from testbed.apiserver.client import ApiClient
from testbed.apiserver.server import serve

from .netutil import SUFFIX

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None,
                                reason="etcd-server is not installed (scripts/install installs it)")


@pytest.fixture
def state_dir():
    # tmpfs if there is one: etcd fsyncs every commit, and a shared disk can stall for seconds
    d = tempfile.mkdtemp(prefix="tbetcd-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    yield os.path.join(d, "state")
    shutil.rmtree(d, ignore_errors=True)


def listening_addresses(pid):
    """The local addresses of the listening TCP sockets of *pid* (from ``ss``)."""
    out = subprocess.run(["ss", "-Hltnp"], check=True, capture_output=True, text=True).stdout
    return {line.split()[3] for line in out.splitlines() if f"pid={pid}," in line}


def etcdctl(endpoint, *args):
    argv, env = etcd.etcdctl_argv(endpoint, list(args))
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout


def test_member_is_private_named_and_found_again(state_dir):
    cluster = f"etcd{SUFFIX}"
    server = etcd.start(cluster, state_dir)
    try:
        for d in (state_dir, os.path.join(state_dir, "etcd")):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
        with open(f"/proc/{server.pid}/cmdline", "rb") as f:
            assert f"testbed-{cluster}".encode() in f.read().split(b"\0")
        with open(f"/proc/{server.pid}/environ", "rb") as f:
            assert f"TESTBED_CLUSTER={cluster}".encode() in f.read().split(b"\0")
        addrs = listening_addresses(server.pid)
        assert addrs and all(a.startswith("127.0.0.1:") for a in addrs), addrs
        assert etcd.server.healthy(server.client_url)
        etcdctl(server.client_url, "put", "/registry/namespaces/kept", "{}")
    finally:
        server.proc = None  # stop it the way another process (testbed down) would
    found = etcd.load(state_dir)
    assert (found.pid, found.client_url) == (server.pid, server.client_url) and found.running()
    found.stop()
    assert not found.running() and etcd.load(state_dir) is None
    os.waitpid(server.pid, 0)  # reap our child (a daemon's would be reaped by init)
    again = etcd.start(cluster, state_dir)  # the data directory survives a restart
    try:
        assert etcdctl(again.client_url, "get", "/registry/namespaces/kept", "--print-value-only").strip() == "{}"
    finally:
        again.stop()


def test_start_failures_are_one_clear_line(state_dir):
    os.makedirs(os.path.join(state_dir, "etcd"), mode=0o700)
    with open(os.path.join(state_dir, "etcd", "member"), "w") as f:  # etcd cannot use its data dir
        f.write("x")
    with pytest.raises(etcd.EtcdServerError) as ei:
        etcd.start(f"bad{SUFFIX}", state_dir)
    msg = str(ei.value)
    assert "\n" not in msg and "exited with status 1" in msg and "member: not a directory" in msg
    assert etcd.load(state_dir) is None
    blocked = os.path.join(state_dir, "blocked")
    with open(blocked, "w") as f:  # a file where the state directory goes
        f.write("x")
    with pytest.raises(etcd.EtcdServerError, match=r"^etcd for bad\d+: cannot prepare .*/blocked: File exists$"):
        etcd.start(f"bad{SUFFIX}", blocked)


def test_api_server_keeps_objects_in_etcd(state_dir):
    server = etcd.start(f"api{SUFFIX}", state_dir)
    store = etcd.EtcdStore(server.client_url)
    sock = os.path.join(state_dir, "api.sock")
    handle = serve(store, sock)
    api = ApiClient(sock)
    try:
        _, rv = api.list("Service", "default")
        stream = api.watch("Service", "default", resource_version=rv)
        got = []
        seen = threading.Event()

        def read():
            for ev in stream:
                got.append(ev)
                seen.set()
                return
        t = threading.Thread(target=read)
        t.start()
        created = api.create({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "web", "namespace": "default"},
                              "spec": {"ports": [{"port": 80}]}})
        assert seen.wait(10)
        t.join(5)
        stream.stop()
        assert got[0]["type"] == "ADDED" and got[0]["object"]["metadata"]["resourceVersion"] == \
            created["metadata"]["resourceVersion"]
        stored = json.loads(etcdctl(server.client_url, "get", "/registry/services/specs/default/web",
                                    "--print-value-only"))
        assert stored["metadata"]["uid"] == created["metadata"]["uid"]
        api.delete("Service", "default", "web")
        assert etcdctl(server.client_url, "get", "/registry/services/specs/default/web") == ""
    finally:
        api.close()
        handle.close()
        store.close()
        server.stop()
