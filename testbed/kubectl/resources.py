"""Resource names as kubectl resolves them: plural, singular, short names, the kind itself
(case-insensitive), ``plural.group`` (``deployments.apps``), and ``TYPE/NAME``."""

from __future__ import annotations

from dataclasses import dataclass


class ResourceError(ValueError):
    """An unknown resource type or a malformed ``TYPE/NAME``."""


@dataclass(frozen=True)
class ResourceInfo:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    group: str
    version: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def names(self) -> tuple[str, ...]:
        return (self.plural, self.singular, *self.short_names)


RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo("Pod", "pods", "pod", ("po",), "", "v1", True),
    ResourceInfo("Service", "services", "service", ("svc",), "", "v1", True),
    ResourceInfo("Endpoints", "endpoints", "endpoints", ("ep",), "", "v1", True),
    ResourceInfo("EndpointSlice", "endpointslices", "endpointslice", (), "discovery.k8s.io", "v1", True),
    ResourceInfo("Deployment", "deployments", "deployment", ("deploy",), "apps", "v1", True),
    ResourceInfo("ReplicaSet", "replicasets", "replicaset", ("rs",), "apps", "v1", True),
    ResourceInfo("Node", "nodes", "node", ("no",), "", "v1", False),
    ResourceInfo("Event", "events", "event", ("ev",), "", "v1", True),
    ResourceInfo("Namespace", "namespaces", "namespace", ("ns",), "", "v1", False),
    ResourceInfo("Ingress", "ingresses", "ingress", ("ing",), "networking.k8s.io", "v1", True),
    ResourceInfo("IngressClass", "ingressclasses", "ingressclass", (), "networking.k8s.io", "v1", False),
    ResourceInfo("Secret", "secrets", "secret", (), "", "v1", True),
    ResourceInfo("ConfigMap", "configmaps", "configmap", ("cm",), "", "v1", True),
)

_BY_NAME: dict[str, ResourceInfo] = {}
for _r in RESOURCES:
    for _n in (*_r.names, _r.kind.lower()):
        _BY_NAME.setdefault(_n, _r)
        if _r.group:
            _BY_NAME.setdefault(f"{_n}.{_r.group}", _r)
            _BY_NAME.setdefault(f"{_n}.{_r.version}.{_r.group}", _r)


def accepted_names() -> str:
    """``pods (pod, po), services (service, svc), ...``."""
    parts = []
    for r in RESOURCES:
        alts = [n for n in (r.singular, *r.short_names) if n != r.plural]
        parts.append(f"{r.plural} ({', '.join(alts)})" if alts else r.plural)
    return ", ".join(parts)


def resolve(name: str) -> ResourceInfo:
    """The resource for a name kubectl accepts; raises :class:`ResourceError` listing the
    accepted names otherwise."""
    info = _BY_NAME.get((name or "").strip().lower())
    if info is None:
        raise ResourceError(f'the server doesn\'t have a resource type "{name}"; '
                            f"accepted: {accepted_names()}")
    return info


def parse_ref(arg: str) -> tuple[ResourceInfo, str]:
    """``TYPE/NAME`` (``svc/web``, ``deployments.apps/web``) -> (resource, name)."""
    typ, sep, name = (arg or "").partition("/")
    if not sep or not typ or not name or "/" in name:
        raise ResourceError(f'arguments in resource/name form must have a single resource and name: "{arg}"')
    return resolve(typ), name


def parse_args(args: list[str] | tuple[str, ...]) -> list[tuple[ResourceInfo, str | None]]:
    """Arguments of ``kubectl get``: ``TYPE [NAME...]``, ``TYPE1,TYPE2``, or ``TYPE/NAME...``.
    Returns (resource, name or None for "all") pairs."""
    args = list(args)
    if not args:
        raise ResourceError(f"You must specify the type of resource to get. Use one of: {accepted_names()}")
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            raise ResourceError("there is no need to specify a resource type as a separate argument "
                                "when passing arguments in resource/name form")
        return [parse_ref(a) for a in args]
    types = [resolve(t) for t in args[0].split(",") if t]
    names = args[1:]
    if names and len(types) > 1:
        return [(t, n) for t in types for n in names]
    if names:
        return [(types[0], n) for n in names]
    return [(t, None) for t in types]
