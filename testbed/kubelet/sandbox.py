"""Where a pod's sandbox lives on the host, and writing it there (the kubelet's side of
``testbed.sandbox``).

    <state>/pods/<ns>_<name>/etc/{hosts,resolv.conf,hostname}  the pod's own files (0644: the pod
                                                                reads them)
    <state>/etc/<digest>/resolv.conf                what ``ip netns exec`` shows (see etcfiles.py)
    <state>/pods/<ns>_<name>/<container>.json               the container's sandbox spec
    <cgroup2>/testbed.<cluster>/pod.<ns>.<name>/<container>  its processes

Everything rendered comes from the pure functions of ``kubelet.plan``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys

from .. import cgroups, naming, netns, sandbox, state
from ..errors import TestbedError
from . import etcfiles
from .plan import sandbox_spec

# What a pod never sees: the testbed's state (API socket, store, logs), the names of every
# namespace on the host, and the cgroup tree (writing cgroup.procs would let it leave its own).
HIDDEN = (naming.STATE_ROOT, netns.RUN_DIR, "/sys/fs/cgroup")


def pod_dir(cluster: str, namespace: str, name: str) -> str:
    return os.path.join(state.directory(cluster), "pods", f"{namespace}_{name}")


def write_etc(plan, pod: dict, ip: str | None) -> dict[str, str]:
    """Write the pod's /etc files (``etcfiles``); ``/etc/<name>`` -> the file's path."""
    meta = pod["metadata"]
    ns, name = meta.get("namespace", "default"), meta["name"]
    return etcfiles.write(etcfiles.files(plan, pod, ip), os.path.join(pod_dir(plan.cluster, ns, name), "etc"),
                          naming.pod_netns(plan.cluster, ns, name), os.path.join(state.directory(plan.cluster), "etc"))


def pod_cgroup(cluster: str, namespace: str, name: str) -> str:
    return cgroups.path(cluster, cgroups.pod_name(namespace, name))


def container_cgroup(cluster: str, namespace: str, name: str, container: str) -> str:
    return os.path.join(pod_cgroup(cluster, namespace, name), container)


def spec_path(cluster: str, namespace: str, name: str, container: str) -> str:
    return os.path.join(pod_dir(cluster, namespace, name), f"{container}.json")


def status_path(cluster: str, namespace: str, name: str, container: str) -> str:
    """Where a container's sandbox writes its exit status (what a restarted kubelet reads)."""
    return os.path.join(pod_dir(cluster, namespace, name), f"{container}.status")


def running_sandbox(cg: str) -> int | None:
    """The pid of the outer process of the container sandbox running in ``cg`` (``run``, not an
    ``enter`` of an exec session), or None."""
    helper = HELPER[-1].encode()
    for pid in cgroups.procs(cg):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if helper in argv and argv[argv.index(helper) + 1:argv.index(helper) + 2] == [b"run"]:
            return pid
    return None


class Adopted:
    """A container's sandbox started by an earlier kubelet: not our child, so its exit status
    comes from the file it writes (``status_path``); one killed outright (SIGKILL) wrote none."""

    def __init__(self, pid: int, status: str):
        self.pid = pid
        self.status = status

    def wait(self) -> int:
        """As ``Popen.wait``: the exit code, or minus the signal that ended the program."""
        try:
            with open(self.status) as f:
                code = int(f.read().strip())
        except (OSError, ValueError):
            return -9
        return -(code - 128) if 128 < code < 128 + signal.NSIG else code


def _write(path: str, text: str, mode: int) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def prepare(plan, pod: dict, ip: str | None, ctr: dict, last_cap: int, binds: list[tuple[str, str]] = ()) -> str:
    """Write the pod's files and the container's spec; create its cgroup; return the spec's path.
    ``binds``: (source, target) paths inside the hidden directories the container sees after all."""
    meta = pod["metadata"]
    ns, name = meta.get("namespace", "default"), meta["name"]
    cluster = plan.cluster
    files = write_etc(plan, pod, ip)
    cg = container_cgroup(cluster, ns, name, ctr["name"])
    cgroups.create([cgroups.cluster_path(cluster), pod_cgroup(cluster, ns, name), cg])
    spec = sandbox_spec(pod, ctr, cgroup=cg, files=files, hide=list(HIDDEN), last_cap=last_cap, binds=binds)
    spec["status"] = status_path(cluster, ns, name, ctr["name"])
    path = spec_path(cluster, ns, name, ctr["name"])
    _write(path, json.dumps(spec), 0o600)
    return path


# The helper needs only the standard library: run as a script, isolated (-I: no PYTHON*
# variables of the container's environment apply to it) and without site (-S), it starts in
# about two thirds of the time of ``-m testbed.sandbox``.
HELPER = (sys.executable, "-I", "-S", sandbox.__file__)


def run_argv(spec_file: str, argv: list[str], netns_path: str | None = None, sync_fd: int | None = None) -> list[str]:
    opts = (["--netns", netns_path] if netns_path else []) + (["--sync-fd", str(sync_fd)] if sync_fd is not None else [])
    return [*HELPER, "run", spec_file, *opts, "--", *argv]


def exec_argv(spec_file: str, cg: str, argv: list[str], netns_path: str | None = None) -> list[str]:
    """Run ``argv`` in the container: entering it when its sandbox runs, else in a new one (a
    container of the default workload has no process of its own to enter) in ``netns_path``, or
    in the caller's network namespace."""
    pid = sandbox.init_pid(cg)
    if pid is None:
        return run_argv(spec_file, argv, netns_path)
    return [*HELPER, "enter", spec_file, str(pid), "--", *argv]


def remove(cluster: str, namespace: str, name: str) -> None:
    """Kill every process of the pod and remove its cgroup and files."""
    cgroups.kill_and_remove(pod_cgroup(cluster, namespace, name))
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(pod_dir(cluster, namespace, name))


def pod_command(plan, pod: dict, container: str | None, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` in a pod's container (the first one unless named), for
    ``testbed exec pod/...``; it joins the pod's namespaces itself."""
    ctrs = (pod.get("spec") or {}).get("containers") or []
    names = [c.get("name") for c in ctrs]
    ctr = next((c for c in ctrs if c.get("name") == container), None) if container else (ctrs[0] if ctrs else None)
    meta = pod["metadata"]
    if ctr is None:
        raise TestbedError(f"--container: pod {meta['name']!r} has no container {container!r}; "
                           f"its containers: {', '.join(map(str, names)) or 'none'}")
    ns, name, cluster = meta.get("namespace", "default"), meta["name"], plan.cluster
    spec = spec_path(cluster, ns, name, ctr["name"])
    if not os.path.exists(spec):
        spec = prepare(plan, pod, (pod.get("status") or {}).get("podIP"), ctr, sandbox.last_cap())
    return exec_argv(spec, container_cgroup(cluster, ns, name, ctr["name"]), argv,
                     netns.path(naming.pod_netns(cluster, ns, name)))
