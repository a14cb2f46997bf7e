"""Upstream's etcd key layout: ``<prefix>/<resource>/<namespace>/<name>``, or
``<prefix>/<resource>/<name>`` for cluster-scoped kinds, with ``--etcd-prefix`` /registry
(or the cluster's own prefix on an etcd shared by several clusters).

The resource part is the plural, except where the API server keeps its historical names
(kube-apiserver's storage factory): Services under ``services/specs``, Endpoints under
``services/endpoints``, Nodes under ``minions``.
"""

from __future__ import annotations

from ..kinds import KindInfo

DEFAULT_PREFIX = "/registry"

RESOURCE_PREFIXES = {
    "Service": "services/specs",
    "Endpoints": "services/endpoints",
    "Node": "minions",
}


def resource_prefix(info: KindInfo) -> str:
    return RESOURCE_PREFIXES.get(info.kind, info.plural)


def collection_key(prefix: str, info: KindInfo, namespace: str | None = None) -> str:
    """The key prefix (ending in "/") of every object of *info* (in *namespace*)."""
    base = f"{prefix}/{resource_prefix(info)}/"
    if info.namespaced and namespace:
        base += namespace + "/"
    return base


def object_key(prefix: str, info: KindInfo, namespace: str, name: str) -> str:
    return collection_key(prefix, info, namespace if info.namespaced else None) + name


def relocate(arg: str, prefix: str) -> str:
    """*arg* with upstream's ``/registry`` swapped for *prefix* if it is a key under
    ``/registry``: ``testbed etcdctl get /registry/...`` reads the cluster's own keys on a
    shared etcd too (etcdctl has no prefix option of its own)."""
    if prefix != DEFAULT_PREFIX and (arg == DEFAULT_PREFIX or arg.startswith(DEFAULT_PREFIX + "/")):
        return prefix + arg[len(DEFAULT_PREFIX):]
    return arg
