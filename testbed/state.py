"""The cluster state directory, ``/run/testbed/<cluster>/``: its existence is the cluster's lock.

It holds ``plan.json`` (written *before* anything is built, so a crashed ``up`` can be undone),
``state.json`` (pids, host settings changed on request), logs, the API store and each pod's files.
``up`` mounts a tmpfs of the cluster's own on it (``in_memory``; ``down`` unmounts it): a pod
makes and removes several files there, which on a disk filesystem cost an inode each (on this
kind of host, where ``/run`` is ext4 without a journal, allocating one after thousands were
freed scans them all), and what is in it lives no longer than the cluster's namespaces anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable

from . import cgroups, mounts, naming, netns
from .errors import ClusterExistsError, ClusterNotFoundError


# The directory holds the API store (Secrets-to-be, every object), logs and the API socket:
# readable by root only, like /var/lib/kubelet and /etc/kubernetes/pki on a real node.
DIR_MODE = 0o700
FILE_MODE = 0o600


def directory(cluster: str) -> str:
    return naming.state_dir(cluster)


def claim(cluster: str) -> str:
    """Create the state directory atomically; fail if the cluster name is taken."""
    os.makedirs(naming.STATE_ROOT, mode=0o755, exist_ok=True)
    d = directory(cluster)
    try:
        os.mkdir(d, DIR_MODE)
    except FileExistsError:
        raise ClusterExistsError(f"cluster {cluster!r} already exists (state in {d}); "
                                 f"use another --name or remove it with: testbed down {cluster}") from None
    if netns.list_names(naming.cluster_prefix(cluster)):
        os.rmdir(d)
        raise ClusterExistsError(f"network namespaces of a cluster {cluster!r} are still present; "
                                 f"remove them with: testbed down {cluster}")
    os.chmod(d, DIR_MODE)  # mkdir's mode is masked by the umask; the result must not depend on it
    return d


def in_memory(cluster: str) -> None:
    """Mount a tmpfs (``testbed.<cluster>``, mode 0700) on the freshly claimed, still empty state
    directory."""
    mounts.tmpfs(directory(cluster), f"{cgroups.PREFIX}{cluster}", f"mode={DIR_MODE:o}")


def remove(cluster: str) -> bool:
    """``down``: unmount the state directory's tmpfs, if any, and remove the directory; whether
    there was one."""
    d = directory(cluster)
    existed = os.path.isdir(d)
    mounts.unmount_all(d)
    shutil.rmtree(d, ignore_errors=True)
    return existed


def open_private(path: str, mode: str = "ab"):
    """Open a file in a state directory, creating it readable by its owner only."""
    flags = {"ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode]
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a file left by an older run keeps its mode on open
    return os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {}))


def write_json(cluster: str, name: str, data: dict) -> None:
    d = directory(cluster)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, os.path.join(d, name))


def read_json(cluster: str, name: str, default: dict | None = None) -> dict:
    try:
        with open(os.path.join(directory(cluster), name)) as f:
            return json.load(f)
    except FileNotFoundError:
        if default is not None:
            return default
        raise ClusterNotFoundError(f"cluster {cluster!r} is not up (no {name} in {directory(cluster)})") from None


def update_json(cluster: str, name: str, **changes) -> dict:
    data = read_json(cluster, name, {})
    data.update(changes)
    write_json(cluster, name, data)
    return data


@contextlib.contextmanager
def _locked(cluster: str):
    """An exclusive lock (``flock`` of the state directory) across the processes and threads
    that rewrite the same file: ``up`` records the daemon's pid, the daemon's supervisors those
    of the kubelets and kube-proxies they (re)start."""
    fd = os.open(directory(cluster), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_pids(cluster: str, add: dict[str, int] | None = None, drop: Iterable[str] = ()) -> dict:
    """Record (``add``) or forget (``drop``) processes in ``state.json``'s ``pids``, atomically
    with respect to every other writer; returns the pids recorded now."""
    with _locked(cluster):
        info = read_json(cluster, "state.json", {})
        gone = set(drop)
        pids = {k: v for k, v in info.get("pids", {}).items() if k not in gone}
        pids.update(add or {})
        info["pids"] = pids
        write_json(cluster, "state.json", info)
    return pids


def clusters() -> list[str]:
    """Clusters with a state directory, or with namespaces or a cgroup left behind."""
    names = set()
    if os.path.isdir(naming.STATE_ROOT):
        names.update(n for n in os.listdir(naming.STATE_ROOT) if os.path.isdir(os.path.join(naming.STATE_ROOT, n)))
    for ns in netns.list_names(naming.PREFIX + "."):
        parts = ns.split(".")
        if len(parts) >= 3:
            names.add(parts[1])
    names.update(cgroups.clusters())  # a crash can leave only processes behind
    return sorted(names)


def resolve(cluster: str | None) -> str:
    """The cluster to act on: the one named, or the only one that is up."""
    up = clusters()
    if cluster:
        if cluster not in up:
            known = f"clusters: {', '.join(up)}" if up else "no cluster is up"
            raise ClusterNotFoundError(f"cluster {cluster!r} is not up (no {directory(cluster)}); {known}")
        return cluster
    if len(up) == 1:
        return up[0]
    if not up:
        raise ClusterNotFoundError("no cluster is up; start one with: testbed up SCENARIO")
    raise ClusterNotFoundError(f"several clusters are up ({', '.join(up)}); choose one with -c/--cluster")
