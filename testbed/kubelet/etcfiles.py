"""A pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, written in the pod's directory
(``<state>/pods/<ns>_<name>/etc/``, see ``sandbox.py``), which its container sandboxes bind-mount
over ``/etc/<file>`` (so ``testbed exec pod/...`` and the pod's programs see them all). The host's
own files are never written; the contents come from the pure functions of ``kubelet.plan``.

``ip netns exec <pod netns>`` (and ``Cluster.exec("pod/...")``, which goes through it) follows
iproute2's convention instead: it bind-mounts the files of ``/etc/netns/<netns>/`` over ``/etc``.
There each pod gets its resolv.conf (cluster DNS, its namespace's search path), not its hosts
and hostname: ``/etc/netns/<netns>`` is a name of a symbolic link to a directory of the cluster's
(``<state>/etc/<digest>/``) that holds one resolv.conf, and every pod with the same resolv.conf
gets a new name (a hard link) of the same link. On a real node, ``ip netns exec`` into a pod's
namespace sees none of the pod's files; here DNS names resolve as in the pod.

Why hard links: a pod's four files, or even one symbolic link of its own, cost inodes on the
host's disk to create and to delete, and on ext4 without a journal allocating one scans every
inode freed in the last seconds to minutes (a quarter of the kubelets' CPU when clusters of
1,000 pods came and went); a new name of an existing inode allocates none.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading

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


def write(contents: dict[str, str], d: str, netns_name: str, shared_root: str, root: str = ETC_NETNS) -> dict[str, str]:
    """Write ``contents`` (name -> text) in the pod's directory ``d``, and give ``ip netns exec``
    its resolv.conf: ``root/<netns_name>`` names the link to ``shared_root/<digest>/``. Returns
    ``/etc/<name>`` -> the file's path in ``d``."""
    out = _write_files(contents, d)
    if "resolv.conf" in contents:
        resolv = {"resolv.conf": contents["resolv.conf"]}
        shared = os.path.join(shared_root, hashlib.sha256(resolv["resolv.conf"].encode()).hexdigest()[:16])
        if not os.path.exists(os.path.join(shared, "resolv.conf")):
            _write_shared(resolv, shared)
        _link(shared, os.path.join(root, netns_name))
    return out


def _write_shared(contents: dict[str, str], d: str) -> None:
    """Every kubelet of the cluster may write the same directory at once (the same contents, by
    its name): each file goes in whole, under a name of this process's, then is renamed."""
    os.makedirs(d, 0o700, exist_ok=True)
    for name, text in contents.items():
        tmp = os.path.join(d, f".{name}.{os.getpid()}.{threading.get_ident()}")
        _write_file(tmp, text)
        os.replace(tmp, os.path.join(d, name))


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, FILE_MODE)  # the creator's umask does not decide who may read it
        f.write(text)


def _write_files(contents: dict[str, str], d: str) -> dict[str, str]:
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
        _write_file(target, text)
        if not fresh:
            os.replace(target, path)
    return out


# target directory -> a name in /etc/netns of a symbolic link to it that this process made
_names: dict[str, str] = {}
_names_lock = threading.Lock()


def _link(target: str, link: str) -> None:
    """Make ``link`` a symbolic link to ``target``: a new name of one this process made before
    when there is one, else a new link."""
    if os.path.islink(link):
        if os.readlink(link) == target:
            return
        os.unlink(link)
    elif os.path.lexists(link):
        _remove_path(link)  # a directory of files, as an older testbed wrote them
    with _names_lock:
        src = _names.get(target)
    if src is not None:
        try:
            os.link(src, link, follow_symlinks=False)
        except OSError:  # that name is gone (its pod was removed), or the inode has all it may have
            pass
        else:
            if os.readlink(link) == target:  # the name was not given to another link meanwhile
                return
            os.unlink(link)
    try:
        os.symlink(target, link)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(link), 0o755, exist_ok=True)
        os.symlink(target, link)
    with _names_lock:
        _names[target] = link


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
