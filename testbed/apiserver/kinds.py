"""The kinds the API server knows: kind -> (API group/version, resource plural, scope)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindInfo:
    kind: str
    group: str            # "" for the core group
    version: str
    plural: str
    namespaced: bool
    status_subresource: bool  # PUT on the main resource ignores .status; /status ignores the rest

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_prefix(self) -> str:
        """URL prefix of the group/version: ``/api/v1`` or ``/apis/<group>/<version>``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"{self.api_prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.api_prefix}/{self.plural}"

    def item_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace if self.namespaced else None)}/{name}"


KINDS: dict[str, KindInfo] = {k.kind: k for k in (
    KindInfo("Namespace", "", "v1", "namespaces", False, True),
    KindInfo("Node", "", "v1", "nodes", False, True),
    KindInfo("Pod", "", "v1", "pods", True, True),
    KindInfo("Service", "", "v1", "services", True, True),
    KindInfo("Endpoints", "", "v1", "endpoints", True, False),
    KindInfo("Event", "", "v1", "events", True, False),
    KindInfo("ConfigMap", "", "v1", "configmaps", True, False),
    KindInfo("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", True, False),
    KindInfo("Deployment", "apps", "v1", "deployments", True, True),
    KindInfo("ReplicaSet", "apps", "v1", "replicasets", True, True),
    KindInfo("Ingress", "networking.k8s.io", "v1", "ingresses", True, True),
    KindInfo("IngressClass", "networking.k8s.io", "v1", "ingressclasses", False, False),
    KindInfo("Secret", "", "v1", "secrets", True, False),
)}

_BY_RESOURCE = {(k.group, k.version, k.plural): k for k in KINDS.values()}


def kind_info(kind: str) -> KindInfo:
    """Info for a known kind; unknown kinds are treated as core/v1, namespaced,
    plural = lower-case kind + "s", no status subresource (the store accepts them; the
    HTTP server only routes the kinds in :data:`KINDS`)."""
    info = KINDS.get(kind)
    if info is None:
        if not kind:
            raise KeyError("empty kind")
        info = KindInfo(kind, "", "v1", kind.lower() + "s", True, False)
    return info


def by_resource(group: str, version: str, plural: str) -> KindInfo | None:
    return _BY_RESOURCE.get((group, version, plural))


def register(info: KindInfo) -> None:
    """Add a kind (e.g. a CRD-like test kind) to the table."""
    KINDS[info.kind] = info
    _BY_RESOURCE[(info.group, info.version, info.plural)] = info
