"""cgroup v2 ownership of a cluster's processes: ``<cgroup2>/testbed.<cluster>/...``.

Every process a cluster runs sits in its cluster's cgroup (the control plane in
``control-plane``, each kube-proxy in ``proxy.<node>``, each kubelet in ``kubelet.<node>``, each
pod in ``pod.<ns>.<name>``), and
the kernel keeps a forked child in its parent's cgroup, so nothing a pod or the daemon starts can
leave it. ``cgroup.kill`` then stops exactly a pod's processes, or all of a cluster's, without
knowing a single pid, also after the process that started them was killed.

Only the filesystem is used (mkdir, write, rmdir): no shell per cgroup. No controller is
enabled, so processes may live in inner cgroups too (the "no internal processes" rule applies
to controllers only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time

PREFIX = "testbed."
_root: str | None = None


def root() -> str:
    """The cgroup v2 mount: ``/sys/fs/cgroup`` on a unified host, ``/sys/fs/cgroup/unified`` on a
    hybrid one (systemd's legacy layout)."""
    global _root
    if _root is None:
        found = None
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    found = found or parts[1]
                    if parts[1] == "/sys/fs/cgroup":
                        found = parts[1]
        if found is None:
            raise OSError(errno.ENOENT, "no cgroup v2 hierarchy is mounted (looked in /proc/self/mounts)")
        _root = found
    return _root


def cluster_path(cluster: str) -> str:
    return os.path.join(root(), PREFIX + cluster)


def path(cluster: str, *parts: str) -> str:
    return os.path.join(cluster_path(cluster), *parts)


def pod_name(namespace: str, name: str) -> str:
    """The pod's cgroup below its cluster's (names of pods and namespaces carry no dots' worth of
    ambiguity: a namespace is a DNS label)."""
    return f"pod.{namespace}.{name}"


def proxy_name(node: str) -> str:
    return f"proxy.{node}"


def kubelet_name(node: str) -> str:
    return f"kubelet.{node}"


CONTROL_PLANE = "control-plane"


def create(paths: list[str]) -> None:
    """Create cgroups (parents first); existing ones are kept."""
    for p in sorted(paths, key=len):
        with contextlib.suppress(FileExistsError):
            os.mkdir(p)


def attach(cg: str, pid: int = 0) -> None:
    """Move ``pid`` (0: the caller) into ``cg``; its future children are born there."""
    fd = os.open(os.path.join(cg, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def procs(cg: str) -> list[int]:
    """Every pid in ``cg`` and below it."""
    out: list[int] = []
    for d, _, _ in os.walk(cg):
        with contextlib.suppress(FileNotFoundError), open(os.path.join(d, "cgroup.procs")) as f:
            out.extend(int(x) for x in f.read().split())
    return out


def populated(cg: str) -> bool:
    try:
        with open(os.path.join(cg, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except FileNotFoundError:
        return False


def kill_async(cg: str) -> None:
    """SIGKILL every process in ``cg`` and below; the caller learns of their exits elsewhere."""
    with open(os.path.join(cg, "cgroup.kill"), "w") as f:
        f.write("1")


def kill(cg: str, timeout: float = 5.0) -> bool:
    """SIGKILL every process in ``cg`` and its descendants and wait until it is empty.

    The wait is on ``cgroup.events``, which the kernel notifies (POLLPRI) when ``populated``
    changes. Returns False if the cgroup does not exist.
    """
    try:
        fd = os.open(os.path.join(cg, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        with open(os.path.join(cg, "cgroup.kill"), "w") as f:
            f.write("1")
        poller = select.poll()
        poller.register(fd, select.POLLPRI | select.POLLERR)
        deadline = time.monotonic() + timeout
        while True:
            if b"populated 0" in os.pread(fd, 256, 0):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"processes of {cg} survived cgroup.kill for {timeout:g}s")
            poller.poll(left * 1000)
    finally:
        os.close(fd)


def remove(cg: str) -> int:
    """Remove ``cg`` and every cgroup below it (deepest first); they must be empty. Returns the
    number removed."""
    if not os.path.isdir(cg):
        return 0
    dirs = [d for d, _, _ in os.walk(cg)]
    n = 0
    for d in sorted(dirs, key=len, reverse=True):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(d)
            n += 1
    return n


def kill_and_remove(cg: str, timeout: float = 5.0) -> int:
    kill(cg, timeout)
    return remove(cg)


def clusters() -> list[str]:
    """Clusters that have a cgroup (also after their state directory is gone)."""
    try:
        return sorted(n[len(PREFIX):] for n in os.listdir(root()) if n.startswith(PREFIX))
    except OSError:
        return []
