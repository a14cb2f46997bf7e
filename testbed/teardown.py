"""``down``: remove exactly what a cluster owns, also after the process that built it was killed.

Ownership is proven by name (``tb.<cluster>.*`` namespaces, the state directory) and by the
kernel: every process the cluster started is in its cgroup (``cgroups.py``), whatever crashed
and whichever pids were or were not saved, and the processes someone started by hand in one of
its namespaces (``testbed exec node/...``) are found through their network namespace.
Idempotent.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal

from . import cgroups, hostsettings, naming, netns, state
from .kubelet import etcfiles


def _netns_processes(inodes: set[int]) -> list[int]:
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                pids.append(int(entry))
    return pids


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, wait on a pidfd (no polling), then SIGKILL."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def down(cluster: str) -> dict:
    """Remove the cluster; returns what was removed."""
    prefix = naming.cluster_prefix(cluster)
    info = state.read_json(cluster, "state.json", {})
    stopped = removed_cgroups = 0
    try:
        cg: str | None = cgroups.cluster_path(cluster)
    except OSError:  # no cgroup v2 hierarchy: then nothing of ours is in one
        cg = None
    if cg is not None and os.path.isdir(cg):
        stopped = len(cgroups.procs(cg))
        cgroups.kill(cg)
        removed_cgroups = cgroups.remove(cg)
    names = netns.list_names(prefix)
    inodes = {i for i in (netns.inode(n) for n in names) if i is not None}
    killed = _netns_processes(inodes) if inodes else []
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for name in names:
        netns.delete(name)
    etcfiles.remove_cluster(cluster)
    # imported here: the kubelets reach this module (stop_pid) and need no etcd client
    from .apiserver.etcd import cluster as etcd_cluster

    etcd_cluster.remove(cluster)  # its member died with the cgroup; its data may be on tmpfs
    hostsettings.restore(info.get("host_settings", {}))
    existed = state.remove(cluster)
    return {"netns": len(names), "processes": stopped + len(killed), "cgroups": removed_cgroups,
            "state_dir": existed}
