"""The object kinds the testbed understands (apiVersion, kind, resource, scope)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindInfo:
    api_version: str
    kind: str
    resource: str  # plural, lower case, as in URLs and in error messages
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def qualified_kind(self) -> str:
        """``GroupKind.String()``: ``Service``, ``Deployment.apps``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


KINDS: tuple[KindInfo, ...] = (
    KindInfo("v1", "Namespace", "namespaces", False),
    KindInfo("v1", "Pod", "pods", True),
    KindInfo("v1", "Service", "services", True),
    KindInfo("v1", "Endpoints", "endpoints", True),
    KindInfo("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),
    KindInfo("apps/v1", "Deployment", "deployments", True),
    KindInfo("apps/v1", "ReplicaSet", "replicasets", True),
    KindInfo("networking.k8s.io/v1", "Ingress", "ingresses", True),
    KindInfo("networking.k8s.io/v1", "IngressClass", "ingressclasses", False),
    KindInfo("v1", "Secret", "secrets", True),
    # written by the testbed's own components (nodes by the control plane, events by everyone);
    # admitted with metadata checks only
    KindInfo("v1", "Node", "nodes", False),
    KindInfo("v1", "Event", "events", True),
    KindInfo("v1", "ConfigMap", "configmaps", True),
)

_BY_KIND = {k.kind: k for k in KINDS}
_BY_GVK = {(k.api_version, k.kind): k for k in KINDS}
_BY_RESOURCE = {k.resource: k for k in KINDS}


def by_kind(kind: str) -> KindInfo | None:
    return _BY_KIND.get(kind)


def by_resource(resource: str) -> KindInfo | None:
    return _BY_RESOURCE.get(resource)


def lookup(api_version: str, kind: str) -> KindInfo | None:
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None  # e.g. "kind: [Pod]" in a manifest: no such kind, not a crash
    return _BY_GVK.get((api_version, kind))


def of(obj: dict) -> KindInfo | None:
    return lookup(obj.get("apiVersion", ""), obj.get("kind", ""))


def supported_list() -> str:
    return ", ".join(f"{k.api_version} {k.kind}" for k in KINDS)
