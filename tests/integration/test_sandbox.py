"""Pods as sandboxes and cgroup ownership, end to end (needs root).

A pod's command runs in its own mount, UTS, IPC and PID namespaces and cgroup, with the
capabilities and user of its securityContext; ``testbed exec pod/...`` enters the same sandbox;
deleting a pod or ``down`` kills every process it started, also after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from testbed import cgroups, controlplane, failpoints, netns, state
from testbed.cluster import Cluster
from testbed.controllers.base import wait_for
from testbed.kubelet import etcfiles
from testbed.kubelet.plan import CAPABILITIES, DEFAULT_CAPABILITIES
from testbed.kubelet.sandbox import pod_cgroup
from testbed.sandbox import last_cap
from testbed.scenario import parse

from .netutil import uniq

pytestmark = pytest.mark.root
ITSB = uniq("itsb")
SLEEPER = ["sh", "-c", "sleep 2222; true"]


def pod(name: str, command=None, **spec) -> dict:
    ctr = {"name": "main", "image": "busybox"}
    if command:
        ctr["command"] = command
    if "securityContext" in spec:
        ctr["securityContext"] = spec.pop("securityContext")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "node1", "terminationGracePeriodSeconds": 1, "containers": [ctr], **spec}}


def doc(name: str, manifests: list[dict]) -> dict:
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
            "spec": {"nodes": 1, "proxyMode": "none"}, "manifests": manifests}


@pytest.fixture(scope="module")
def sb():
    c = Cluster.up(parse(doc(ITSB, [
        pod("plain", SLEEPER),
        pod("named", SLEEPER, hostname="db-0", subdomain="db",
            hostAliases=[{"ip": "192.0.2.7", "hostnames": ["foo.local", "bar"]}]),
        pod("root-all", SLEEPER, securityContext={"privileged": True}),
        pod("user", SLEEPER, securityContext={"runAsUser": 1000, "runAsGroup": 1000}),
        pod("tuned", SLEEPER, securityContext={"capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL", "CAP_CHOWN"]}}),
        pod("echo"),
    ])))
    try:
        yield c
    finally:
        c.down()


def texec(cluster: str, target: str, *argv: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed.cli", "exec", "-c", cluster, target, "--", *argv],
                          input=input, capture_output=True, text=True, timeout=30)


def cap_eff(cluster: str, target: str) -> int:
    out = texec(cluster, target, "cat", "/proc/self/status").stdout
    return int(next(line for line in out.splitlines() if line.startswith("CapEff:")).split()[1], 16)


def mask(names) -> int:
    return sum(1 << CAPABILITIES.index(n) for n in names)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_pod_cannot_see_the_api_socket_the_state_directory_or_other_namespaces(sb):
    sock = controlplane.socket_path(ITSB)
    assert os.path.exists(sock)
    for target in ("pod/plain", "pod/echo"):
        r = texec(ITSB, target, "sh", "-c", f"test -e {sock} && echo SEEN; ls -A /run/testbed /run/netns")
        assert r.returncode == 0, r.stderr
        assert "SEEN" not in r.stdout
        assert r.stdout.split() == ["/run/netns:", "/run/testbed:"], r.stdout


def test_pod_sees_only_its_own_processes(sb):
    r = texec(ITSB, "pod/plain", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'")
    pids = sorted(int(x) for x in r.stdout.split())
    # the exec'd command joins the container's PID namespace: init, sh, sleep, and the exec'd ones
    assert pids[0] == 1 and len(pids) < 10, pids
    assert "sleep" in texec(ITSB, "pod/plain", "cat", "/proc/3/cmdline").stdout


def test_capabilities_user_and_umask_follow_the_security_context(sb):
    assert cap_eff(ITSB, "pod/plain") == mask(DEFAULT_CAPABILITIES)
    with open("/proc/self/status") as f:  # every capability there is to have (what this host grants)
        host = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
    assert cap_eff(ITSB, "pod/root-all") == host & ((1 << (last_cap() + 1)) - 1)
    assert cap_eff(ITSB, "pod/tuned") == (mask(DEFAULT_CAPABILITIES) | mask(["NET_ADMIN"])) & ~mask(["KILL", "CHOWN"])
    assert cap_eff(ITSB, "pod/user") == 0
    assert texec(ITSB, "pod/user", "id", "-u").stdout.strip() == "1000"
    assert texec(ITSB, "pod/user", "id", "-g").stdout.strip() == "1000"
    assert texec(ITSB, "pod/plain", "sh", "-c", "umask").stdout.strip() == "0022"
    # the container's own processes have the same credentials as an exec'd command
    with open(os.path.join(pod_cgroup(ITSB, "default", "user"), "main", "cgroup.procs")) as f:
        uids = set()
        for pid in f.read().split():
            with open(f"/proc/{pid}/status") as s:
                uids.add(next(line.split()[1] for line in s if line.startswith("Uid:")))
    assert "1000" in uids


def test_hostname_hosts_and_resolv_conf_are_the_pods(sb):
    with sb.api() as api:
        plain = api.get("Pod", "default", "plain")["status"]["podIP"]
        named = api.get("Pod", "default", "named")["status"]["podIP"]
    assert texec(ITSB, "pod/plain", "hostname").stdout.strip() == "plain"
    assert texec(ITSB, "pod/named", "hostname").stdout.strip() == "db-0"
    hosts = texec(ITSB, "pod/named", "cat", "/etc/hosts").stdout
    assert f"{named}\tdb-0.db.default.svc.cluster.local\tdb-0\n" in hosts
    assert "192.0.2.7\tfoo.local\tbar\n" in hosts
    assert f"{plain}\tplain\n" in texec(ITSB, "pod/plain", "cat", "/etc/hosts").stdout
    resolv = texec(ITSB, "pod/plain", "cat", "/etc/resolv.conf").stdout
    assert resolv == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                      "nameserver 10.96.0.10\noptions ndots:5\n")
    with open("/etc/hosts") as f:  # the host's own files are untouched
        assert named not in f.read()
    with open("/etc/resolv.conf") as f:
        assert "10.96.0.10" not in f.read()
    assert os.uname().nodename != "db-0"


def test_exec_passes_standard_input_and_the_exit_code(sb):
    r = texec(ITSB, "pod/plain", "sh", "-c", "cat; exit 7", input="from stdin\n")
    assert (r.returncode, r.stdout) == (7, "from stdin\n")
    r = texec(ITSB, "pod/echo", sys.executable, "-", input="import socket; print(socket.gethostname())\n")
    assert (r.returncode, r.stdout) == (0, "echo\n"), r.stderr


def test_deleting_a_pod_kills_its_grandchildren(sb):
    cg = pod_cgroup(ITSB, "default", "plain")
    pids = cgroups.procs(cg)
    cmds = []
    for pid in pids:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmds.append(f.read().replace(b"\0", b" ").decode())
    assert any(c.startswith("sleep 2222") for c in cmds), cmds  # sh's child: a grandchild of the kubelet
    with sb.api() as api:
        api.delete("Pod", "default", "plain")
        wait_for(api, "Pod", lambda ps: "plain" not in {p["metadata"]["name"] for p in ps}, timeout=15)
    assert not [p for p in pids if alive(p)]
    assert not os.path.exists(cg)


def _running_commands(wanted: set[str]) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            if cmd in wanted and alive(int(entry)):
                found.append(cmd)
    return found


def _cluster_leftovers(name: str) -> dict:
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if f"tb.{name}." in line or f"/testbed/{name}" in line]
    etc = [n for n in (os.listdir(etcfiles.ETC_NETNS) if os.path.isdir(etcfiles.ETC_NETNS) else [])
           if n.startswith(f"tb.{name}.")]
    return {"netns": netns.list_names(f"tb.{name}."), "cgroup": os.path.exists(cgroups.cluster_path(name)),
            "state": os.path.exists(state.directory(name)), "mounts": mounts, "etc": etc}


def test_down_after_kill_9_of_the_daemon_leaves_no_process(tmp_path):
    name = uniq("itsbk")
    Cluster.up(parse(doc(name, [pod("a", ["sh", "-c", "sleep 2231; true"]),
                                pod("b", ["sh", "-c", "sleep 2232 & sleep 2233; true"])])))
    try:
        pids = cgroups.procs(cgroups.cluster_path(name))
        daemon = controlplane.daemon_pids(name)
        assert len(daemon) == 1
        assert cgroups.procs(pod_cgroup(name, "default", "a")) and cgroups.procs(pod_cgroup(name, "default", "b"))
        os.kill(daemon[0], signal.SIGKILL)
        assert [p for p in pids if p != daemon[0] and alive(p)]  # the pods outlived their kubelet...
    finally:
        res = subprocess.run([sys.executable, "-m", "testbed.cli", "down", name], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert not [p for p in pids if alive(p)]  # ...and down found every one through the cgroup
    assert not _running_commands({"sleep 2231", "sleep 2232", "sleep 2233"})
    assert _cluster_leftovers(name) == {"netns": [], "cgroup": False, "state": False, "mounts": [], "etc": []}


@pytest.mark.parametrize("point", failpoints.POINTS)
def test_up_killed_at_any_point_then_down_leaves_nothing(tmp_path, point):
    name = uniq("itfp")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc(name, [pod("p", SLEEPER)])))
    env = {**os.environ, failpoints.ENV: point}
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "up", str(path), "-q"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == -9, res.stderr
    pids = cgroups.procs(cgroups.cluster_path(name)) if os.path.isdir(cgroups.cluster_path(name)) else []
    if point in ("manifests", "ready"):
        # the pod runs, owned by a kubelet outside the control plane: both outlive the killed `up`
        assert cgroups.procs(cgroups.path(name, cgroups.kubelet_name("node1")))
        assert cgroups.procs(pod_cgroup(name, "default", "p"))
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "down", name], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert not [p for p in pids if alive(p)]
    assert _cluster_leftovers(name) == {"netns": [], "cgroup": False, "state": False, "mounts": [], "etc": []}
    assert not controlplane.daemon_pids(name)


def test_a_process_started_in_a_cgroup_runs_its_first_instruction_there():
    from testbed import exec as ex

    name = uniq("itcg")
    cg = cgroups.path(name, "x")
    cgroups.create([cgroups.cluster_path(name), cg])
    try:
        p = ex.popen([sys.executable, "-c", "print(open('/proc/self/cgroup').read())"], stdout=subprocess.PIPE,
                     cgroup=cg, text=True)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0 and f"/testbed.{name}/x" in out, out
        with pytest.raises(ex.CommandError, match="No such file"):
            ex.popen(["no-such-program-here"], cgroup=cg)
    finally:
        cgroups.kill_and_remove(cgroups.cluster_path(name))
