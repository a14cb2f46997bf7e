"""A pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, through the convention of
``ip netns exec``: files in ``/etc/netns/<netns>/`` are bind-mounted over ``/etc/<file>`` for
whatever runs through it (``testbed exec pod/...``, command containers, exec probes). The
host's own files are never written; the contents come from the pure functions of
``kubelet.plan``.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from .. import naming
from ..plan import Plan, PodPlan
from .plan import cluster_dns, host_nameserver, hosts_file, pod_hostname, resolv_conf

ETC_NETNS = "/etc/netns"


def files(plan: Plan, pod: dict, ip: str | None) -> dict[str, str]:
    """File name -> content of one pod's view of /etc (pure)."""
    host, _ = pod_hostname(pod)
    return {"resolv.conf": resolv_conf(pod, cluster_dns(plan), host_nameserver(plan)),
            "hosts": hosts_file(pod, ip), "hostname": host + "\n"}


def write(plan: Plan, pod: dict, p: PodPlan, root: str = ETC_NETNS) -> None:
    d = os.path.join(root, p.netns)
    try:
        os.mkdir(d)
        fresh = True   # nothing runs in the pod yet: no reader can see a half-written file
    except FileExistsError:
        fresh = False
    except FileNotFoundError:
        os.makedirs(d, exist_ok=True)
        fresh = True
    for name, text in files(plan, pod, p.ip).items():
        if fresh:  # one inode per file instead of two: creating inodes is most of this on ext4
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
            continue
        tmp = os.path.join(d, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(d, name))


def remove(netns_name: str, root: str = ETC_NETNS) -> None:
    shutil.rmtree(os.path.join(root, netns_name), ignore_errors=True)


def remove_cluster(cluster: str, root: str = ETC_NETNS) -> int:
    """``down``: every /etc/netns directory of the cluster's namespaces (named ``tb.<cluster>.``)."""
    prefix = naming.cluster_prefix(cluster)
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if name.startswith(prefix):
                remove(name, root)
                removed += 1
    return removed
