"""The cluster state directory, ``/run/testbed/<cluster>/``: its existence is the cluster's lock.

It holds ``plan.json`` (written *before* anything is built, so a crashed ``up`` can be undone),
``state.json`` (pids, host settings changed on request), logs and the API store.
"""

from __future__ import annotations

import json
import os
import tempfile

from . import naming, netns
from .errors import ClusterExistsError, ClusterNotFoundError


def directory(cluster: str) -> str:
    return naming.state_dir(cluster)


def claim(cluster: str) -> str:
    """Create the state directory atomically; fail if the cluster name is taken."""
    os.makedirs(naming.STATE_ROOT, mode=0o755, exist_ok=True)
    d = directory(cluster)
    try:
        os.mkdir(d, 0o755)
    except FileExistsError:
        raise ClusterExistsError(f"cluster {cluster!r} already exists (state in {d}); "
                                 f"use another --name or remove it with: testbed down {cluster}") from None
    if netns.list_names(naming.cluster_prefix(cluster)):
        os.rmdir(d)
        raise ClusterExistsError(f"network namespaces of a cluster {cluster!r} are still present; "
                                 f"remove them with: testbed down {cluster}")
    return d


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


def clusters() -> list[str]:
    """Clusters with a state directory or with namespaces left behind."""
    names = set()
    if os.path.isdir(naming.STATE_ROOT):
        names.update(n for n in os.listdir(naming.STATE_ROOT) if os.path.isdir(os.path.join(naming.STATE_ROOT, n)))
    for ns in netns.list_names(naming.PREFIX + "."):
        parts = ns.split(".")
        if len(parts) >= 3:
            names.add(parts[1])
    return sorted(names)


def resolve(cluster: str | None) -> str:
    """The cluster to act on: the one named, or the only one that is up."""
    if cluster:
        return cluster
    up = clusters()
    if len(up) == 1:
        return up[0]
    if not up:
        raise ClusterNotFoundError("no cluster is up; start one with: testbed up SCENARIO")
    raise ClusterNotFoundError(f"several clusters are up ({', '.join(up)}); choose one with -c/--cluster")
