"""A cluster's etcd member, and the API server (HTTP on a unix socket) keeping its objects
there; loopback only, no namespaces."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading

import pytest

from testbed.apiserver import etcd
from testbed.apiserver.etcd import cluster as etcd_cluster
from testbed.apiserver.client import ApiClient
from testbed.apiserver.server import serve

from .netutil import SUFFIX

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


# --- a whole cluster on etcd: `testbed up --store etcd`, `testbed etcdctl`, `down` ----------

def _scenario(tmp_path, name):
    import yaml

    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
           "spec": {"nodes": 1, "externals": 0, "addons": [], "proxyMode": "none"},
           "manifests": [
               {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
               {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "testbed/echo",
                                         "ports": [{"containerPort": 8080}]}]}}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "testbed.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def member_pid(cluster):
    out = subprocess.run(["pgrep", "-f", f"etcd --name testbed-{cluster} "], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.root
def test_up_with_store_etcd_keeps_the_cluster_in_its_own_member(tmp_path):
    name = f"etc{SUFFIX}"
    res = cli("up", _scenario(tmp_path, name), "--store", "etcd", "-q")
    assert res.returncode == 0, res.stderr
    try:
        [pid] = member_pid(name)
        with open(f"/proc/{pid}/cgroup") as f:  # `down` and crash cleanup find it there
            assert f"0::/testbed.{name}/etcd\n" in f.read()
        config = etcd_cluster.read(name)
        assert config.managed and stat.S_IMODE(os.stat(config.data_dir).st_mode) == 0o700
        res = cli("etcdctl", "-c", name, "get", "/registry/services/specs/default/web", "--print-value-only")
        assert res.returncode == 0, res.stderr
        stored = json.loads(res.stdout)
        assert stored["metadata"]["name"] == "web" and "resourceVersion" not in stored["metadata"]
        slices = cli("etcdctl", "-c", name, "get", "--prefix", "--keys-only", "/registry/endpointslices/default/")
        assert "/registry/endpointslices/default/web-" in slices.stdout
        assert cli("etcdctl", "-c", name, "no-such-command").returncode != 0  # exit code passes through
        # the daemon's restart reads the same objects back from etcd
        assert cli("restart", name).returncode == 0
        res = cli("get", "-c", name, "pod", "web-1", "-o", "json")
        assert res.returncode == 0 and json.loads(res.stdout)["status"]["phase"] == "Running", res.stderr
    finally:
        res = cli("down", name)
    assert res.returncode == 0, res.stderr
    assert not member_pid(name) and not os.path.exists(config.data_dir)


@pytest.mark.root
def test_crashed_up_leaves_nothing_of_its_member_after_down(tmp_path):
    name = f"etk{SUFFIX}"
    res = cli("up", _scenario(tmp_path, name), "--store", "etcd", "-q",
              env={"TESTBED_FAILPOINT": "control-plane-ready"})
    assert res.returncode == -9
    assert member_pid(name), "the member outlived the killed up"
    data_dir = etcd_cluster.read(name).data_dir
    assert cli("down", name).returncode == 0
    assert not member_pid(name) and not os.path.exists(data_dir)


@pytest.mark.root
def test_two_clusters_on_one_existing_etcd_keep_apart_and_down_removes_only_its_own(tmp_path, state_dir):
    server = etcd.start(f"ext{SUFFIX}", state_dir)  # the test's etcd, in the test's directory
    a, b = f"etxa{SUFFIX}", f"etxb{SUFFIX}"
    up = []
    try:
        for name in (a, b):
            res = cli("up", _scenario(tmp_path, name), "--etcd-endpoints", server.client_url, "-q")
            assert res.returncode == 0, res.stderr
            up.append(name)
            assert not member_pid(name)
        uids = {}
        for name in (a, b):
            assert etcd_cluster.read(name).prefix == f"/testbed/{name}/registry"
            stored = json.loads(etcdctl(server.client_url, "get", f"/testbed/{name}/registry/pods/default/web-1",
                                        "--print-value-only"))
            assert stored["spec"]["nodeName"] == "node1"
            # the API serves the cluster's own objects; etcdctl's /registry/... is its prefix
            res = cli("get", "-c", name, "pod", "web-1", "-o", "json")
            assert res.returncode == 0, res.stderr
            uids[name] = json.loads(res.stdout)["metadata"]["uid"]
            assert uids[name] == stored["metadata"]["uid"]
            res = cli("etcdctl", "-c", name, "get", "/registry/pods/default/web-1", "--print-value-only")
            assert res.returncode == 0 and json.loads(res.stdout)["metadata"]["uid"] == uids[name], res.stderr
        assert uids[a] != uids[b]
        assert etcdctl(server.client_url, "get", "--prefix", "--keys-only", "/registry/") == ""
        assert cli("down", a).returncode == 0
        up.remove(a)
        assert etcdctl(server.client_url, "get", "--prefix", "--keys-only", f"/testbed/{a}/") == ""
        assert f"/testbed/{b}/registry/services/specs/default/web" in \
            etcdctl(server.client_url, "get", "--prefix", "--keys-only", f"/testbed/{b}/")
        res = cli("get", "-c", b, "pod", "web-1", "-o", "json")  # b goes on as before
        assert res.returncode == 0 and json.loads(res.stdout)["metadata"]["uid"] == uids[b], res.stderr
        assert cli("down", b).returncode == 0
        up.remove(b)
        assert etcdctl(server.client_url, "get", "--prefix", "--keys-only", "/testbed/") == ""
        assert server.running() and etcd.server.healthy(server.client_url)  # never stopped by down
    finally:
        for name in up:
            cli("down", name)
        server.stop()


def _native_modes():
    """The registered proxy modes this kernel runs (ipvs only with ip_vs: else the kernel
    lane of scripts/test covers it)."""
    from testbed.proxy.ipvs.preflight import ipvs_problem
    from testbed.proxy.modes import NAMES

    return [m for m in NAMES if m != "ipvs" or not ipvs_problem()]


@pytest.mark.root
@pytest.mark.parametrize("mode", _native_modes())
def test_a_scenario_passes_on_etcd_in_every_proxy_mode(mode, tmp_path):
    """The same checks and verdicts as on the embedded store (tests/integration/test_scenarios.py:
    a check passes, or differs exactly as ``verify.parity`` declares for the mode), with every
    object in the cluster's etcd."""
    from testbed.cluster import Cluster
    from testbed.scenario import load
    from testbed.verify import parity, verify_cluster

    scenario = load(os.path.join(REPO, "scenarios", "clusterip.yaml"), name=f"ets{mode[:4]}{SUFFIX}")
    scenario.proxy_mode = mode
    c = Cluster.up(scenario, store="etcd")
    try:
        assert etcd_cluster.read(c.name).kind == "etcd"
        results = verify_cluster(c, scenario, artifacts=str(tmp_path / "evidence"))
    finally:
        c.down()
    assert results, "no checks ran"
    verdicts = {r.check: parity.judge(mode, "clusterip", r) for r in results}
    failed = [f"{check}: {why}" for check, (verdict, why) in verdicts.items() if verdict == parity.FAIL]
    assert not failed, "\n".join(failed)
