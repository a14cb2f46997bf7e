"""A pod's /etc/resolv.conf, /etc/hosts and /etc/hostname: written once in the pod's directory
(``<state>/pods/<ns>_<name>/etc/``, see ``sandbox.py``), which its container sandboxes bind-mount
over ``/etc/<file>``, and reachable through the convention of ``ip netns exec``:
``/etc/netns/<netns>`` is a symbolic link to that directory, whose files ``ip netns exec`` (so
``testbed exec pod/...`` and exec'd commands) bind-mounts over ``/etc``. The host's own files are
never written; the contents come from the pure functions of ``kubelet.plan``.

Why a link and not the files themselves: the state directory is the cluster's own tmpfs, while
``/etc`` is the host's disk, where a directory and three files per pod cost four inodes to create
and to delete (on ext4 without a journal, allocating one scans every inode freed in the last
seconds to minutes: quadratic when clusters of 1,000 pods come and go); the link is one.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from .. import naming
from ..plan import Plan
from .plan import cluster_dns, host_nameserver, hosts_file, pod_hostname, resolv_conf

ETC_NETNS = "/etc/netns"
FILE_MODE = 0o644  # read by the pod's program, whatever its user (its directory is root's, 0700)


def files(plan: Plan, pod: dict, ip: str | None) -> dict[str, str]:
    """File name -> content of one pod's view of /etc (pure)."""
    host, _ = pod_hostname(pod)
    return {"resolv.conf": resolv_conf(pod, cluster_dns(plan), host_nameserver(plan)),
            "hosts": hosts_file(pod, ip), "hostname": host + "\n"}


def write(contents: dict[str, str], d: str, netns_name: str, root: str = ETC_NETNS) -> dict[str, str]:
    """Write ``contents`` (name -> text) in directory ``d`` and link ``root/<netns_name>`` to it;
    returns ``/etc/<name>`` -> the file's path."""
    try:
        os.mkdir(d, 0o700)
        fresh = True   # nothing runs in the pod yet: no reader can see a half-written file
    except FileExistsError:
        fresh = False
    except FileNotFoundError:
        os.makedirs(d, 0o700, exist_ok=True)
        fresh = True
    out = {}
    for name, text in contents.items():
        path = out[f"/etc/{name}"] = os.path.join(d, name)
        target = path if fresh else os.path.join(d, f".{name}.tmp")  # a rewrite stays atomic
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, FILE_MODE)  # the creator's umask does not decide who may read it
            f.write(text)
        if not fresh:
            os.replace(target, path)
    _link(d, os.path.join(root, netns_name))
    return out


def _link(d: str, link: str) -> None:
    try:
        os.symlink(d, link)
        return
    except FileNotFoundError:
        os.makedirs(os.path.dirname(link), 0o755, exist_ok=True)
    except FileExistsError:
        if os.path.islink(link) and os.readlink(link) == d:
            return
        _remove_path(link)
    os.symlink(d, link)


def _remove_path(p: str) -> None:
    if os.path.islink(p) or os.path.isfile(p):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    else:  # a directory of files, as an older testbed wrote them
        shutil.rmtree(p, ignore_errors=True)


def remove(netns_name: str, root: str = ETC_NETNS) -> None:
    _remove_path(os.path.join(root, netns_name))


def remove_cluster(cluster: str, root: str = ETC_NETNS) -> int:
    """``down``: every /etc/netns entry of the cluster's namespaces (named ``tb.<cluster>.``)."""
    prefix = naming.cluster_prefix(cluster)
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if name.startswith(prefix):
                remove(name, root)
                removed += 1
    return removed
