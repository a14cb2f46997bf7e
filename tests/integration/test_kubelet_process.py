"""The kubelets run outside the control plane: killing or restarting the daemon fails no request
and kills no ``exec`` session; a killed kubelet comes back, re-attaches to its pods' processes and
serves their default workload again (needs root)."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading

import pytest

from testbed import cgroups, controlplane, naming, netns, state
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.inotify import IN_DELETE, DirWatch
from testbed.kubelet.sandbox import container_cgroup, pod_cgroup, running_sandbox
from testbed.scenario import parse

from .netutil import uniq
from .test_workloads import proxies_synced

pytestmark = pytest.mark.root
NAME = uniq("itkp")


def echo_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "testbed/echo:v1",
                                                        "ports": [{"name": "http", "containerPort": 8080}]}]}}


SLEEPER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
           "spec": {"nodeName": "node1", "containers": [{"name": "sh", "image": "busybox",
                                                          "command": ["sh", "-c", "sleep 3600"]}]}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


@pytest.fixture(scope="module")
def kp():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": NAME},
           "spec": {"nodes": 2, "proxyMode": "iptables"},
           "manifests": [echo_pod("web-1", "node1"), echo_pod("web-2", "node2"), SLEEPER, SERVICE]}
    c = Cluster.up(parse(doc))
    yield c
    c.down()
    assert not netns.list_names(f"tb.{NAME}.")


class Traffic:
    """A client in node1's namespace sending one request after another to the Service (a new
    connection each), counting every request and every failure."""

    def __init__(self, ns: str, ip: str, port: int = 80):
        self.ns, self.ip, self.port = ns, ip, port
        self.ok = 0
        self.phase = "before"
        self.failed: list[str] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=netns.run_in, args=(ns, self._loop), daemon=True)

    def _one(self) -> None:
        with socket.create_connection((self.ip, self.port), timeout=3) as s:
            s.sendall(b"GET /hostname HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(data[:80].decode(errors="replace"))

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self._one()
                err = None
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                err = f"{self.phase}: {exc.__class__.__name__}: {exc}"
            with self.cond:
                if err is None:
                    self.ok += 1
                else:
                    self.failed.append(err)
                self.cond.notify_all()

    def total(self) -> int:
        with self.cond:
            return self.ok + len(self.failed)

    def more(self, n: int, timeout: float = 60) -> None:
        """Block until ``n`` more requests were made."""
        target = self.total() + n
        with self.cond:
            assert self.cond.wait_for(lambda: self.ok + len(self.failed) >= target, timeout), "traffic stalled"

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


def _kubelet_pids(name: str) -> dict[str, int]:
    pids = state.read_json(name, "state.json", {}).get("pids", {})
    return {k: v for k, v in pids.items() if k.startswith("kubelet/")}


def test_each_node_has_a_kubelet_process_in_its_own_cgroup(kp):
    pids = _kubelet_pids(NAME)
    assert set(pids) == {"kubelet/node1", "kubelet/node2"}
    for key, pid in pids.items():
        cg = cgroups.path(NAME, cgroups.kubelet_name(key.split("/")[1]))
        assert pid in cgroups.procs(cg)
    daemon = controlplane.daemon_pids(NAME)
    assert not set(pids.values()) & set(cgroups.procs(cgroups.path(NAME, cgroups.CONTROL_PLANE)))
    assert len(daemon) == 1


def test_kill_9_and_restart_of_the_daemon_fail_no_request_and_keep_exec(kp):
    with kp.api() as api:
        ip = api.get("Service", "default", "web")["spec"]["clusterIP"]
        proxies_synced(kp, api)  # the Service's rules are in place before the first request
    kubelets = _kubelet_pids(NAME)
    session = subprocess.Popen([sys.executable, "-m", "testbed.cli", "exec", "-c", NAME, "pod/shell", "--",
                                "sh", "-c", "echo in; exec sleep 3600"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        assert session.stdout.readline() == b"in\n", session.stderr.read()  # the session runs in the pod
        with Traffic(kp.plan.node("node1").netns, ip) as t:
            t.more(50)
            (daemon,) = controlplane.daemon_pids(NAME)
            t.phase = "kill -9"
            os.kill(daemon, signal.SIGKILL)
            t.more(100)  # with no control plane at all
            t.phase = "start after kill -9"
            kp.restart_control_plane()
            t.more(50)
            t.phase = "restart"
            kp.restart_control_plane()  # a plain restart (SIGTERM, start) under traffic
            t.more(50)
            t.phase = "testbed restart"
            res = subprocess.run([sys.executable, "-m", "testbed.cli", "restart", NAME], capture_output=True,
                                 text=True)
            assert res.returncode == 0, res.stderr
            t.more(50)
        assert t.failed == [], f"{len(t.failed)} of {t.total()} requests failed: {t.failed[:8]}"
        assert t.ok >= 300
        assert session.poll() is None, session.stderr.read() if session.stderr else ""
        assert _kubelet_pids(NAME) == kubelets  # adopted, never restarted
    finally:
        session.kill()
        session.wait(10)
    # the kubelets resumed with the API: a new pod runs and joins the Service
    with kp.api() as api:
        api.create(echo_pod("web-3", "node2"))
        pod = wait_for(api, "Pod", lambda ps: next((p for p in ps if p["metadata"]["name"] == "web-3" and
                                                    (p.get("status") or {}).get("phase") == "Running"), None),
                       timeout=30)
        ip3 = pod["status"]["podIP"]
        wait_for(api, "EndpointSlice", lambda ss: any(ip3 in e["addresses"] for s in ss
                                                      for e in s.get("endpoints") or []), timeout=30)


def _ready(p: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


def test_a_killed_kubelet_is_restarted_and_reattaches_its_pods(kp):
    old = _kubelet_pids(NAME)["kubelet/node1"]
    shell_cg = container_cgroup(NAME, "default", "shell", "sh")
    sandbox_pid = running_sandbox(shell_cg)
    assert sandbox_pid is not None
    with kp.api() as api:
        ip = api.get("Pod", "default", "web-1")["status"]["podIP"]
        _, rv = api.list("Pod")
        os.kill(old, signal.SIGKILL)
        # the new kubelet takes the pods over and writes their status again (Ready once served)
        wait_for(api, "Pod", lambda ps: any(p["metadata"]["name"] == "web-1" and _ready(p) and
                                            int(p["metadata"]["resourceVersion"]) > int(rv) for p in ps), timeout=30)
        new = _kubelet_pids(NAME)["kubelet/node1"]
        assert new != old
        assert api.get("Pod", "default", "web-1")["status"]["podIP"] == ip
        # the container process was re-attached, not restarted
        assert running_sandbox(shell_cg) == sandbox_pid
        shell = api.get("Pod", "default", "shell")
        assert shell["status"]["containerStatuses"][0]["restartCount"] == 0 and _ready(shell)
        # and its exit is seen by the new kubelet: killed -> 137, restarted by restartPolicy
        api.patch("Pod", "default", "shell", {"metadata": {"annotations": {"testbed.io/kill": "after-reattach"}}})
        st = wait_for(api, "Pod", lambda ps: next((p["status"]["containerStatuses"][0] for p in ps
                                                   if p["metadata"]["name"] == "shell" and
                                                   p["status"]["containerStatuses"][0]["restartCount"] == 1), None),
                      timeout=60)
        assert st["lastState"]["terminated"]["exitCode"] == 137

    def get() -> bytes:
        with socket.create_connection((ip, 8080), timeout=3) as s:
            s.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(4096)
    assert b"web-1" in netns.run_in(kp.plan.node("node1").netns, get)


def test_a_daemon_that_lost_the_pids_adopts_the_kubelets_found_in_their_cgroups(kp):
    before = _kubelet_pids(NAME)
    pids = state.read_json(NAME, "state.json", {})["pids"]
    state.update_json(NAME, "state.json", pids={k: v for k, v in pids.items() if not k.startswith("kubelet/")})
    kp.restart_control_plane()
    assert _kubelet_pids(NAME) == before  # the same processes, none started twice
    for key in before:
        procs = cgroups.procs(cgroups.path(NAME, cgroups.kubelet_name(key.split("/")[1])))
        assert len([p for p in procs if b"testbed.kubelet" in open(f"/proc/{p}/cmdline", "rb").read()]) == 1


def test_a_pod_force_deleted_while_its_kubelet_was_away_is_removed_with_its_processes(kp):
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"},
              "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "busybox",
                                                            "command": ["sh", "-c", "sleep 3601"]}]}}
    with kp.api() as api:
        api.create(orphan)
        wait_for(api, "Pod", lambda ps: any(p["metadata"]["name"] == "orphan" and _ready(p) for p in ps), timeout=30)
    pod_ns = naming.pod_netns(NAME, "default", "orphan")
    cg = pod_cgroup(NAME, "default", "orphan")
    assert netns.exists(pod_ns) and cgroups.procs(cg)
    kubelet = _kubelet_pids(NAME)["kubelet/node2"]
    fd = os.pidfd_open(kubelet)
    try:
        os.kill(kubelet, signal.SIGTERM)  # stopped on request: the daemon does not start it again
        assert select.select([fd], [], [], 30)[0]
    finally:
        os.close(fd)
    with kp.api() as api:
        api.delete("Pod", "default", "orphan", grace_seconds=0)  # no kubelet to stop it
    assert netns.exists(pod_ns) and cgroups.procs(cg)
    with DirWatch(netns.RUN_DIR, mask=IN_DELETE) as w:
        kp.restart_control_plane()  # starts node2's kubelet again, which finds the orphan
        while netns.exists(pod_ns):
            assert w.wait(30), "the orphaned pod namespace was not removed"
    assert not os.path.exists(cg)
