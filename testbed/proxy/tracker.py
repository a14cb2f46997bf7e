"""The change trackers of kube-proxy's model: the current Services and EndpointSlices of one IP
family and what changed since the last sync.

Mirrors upstream ``pkg/proxy`` (servicechangetracker.go, endpointschangetracker.go,
endpointslicecache.go): ``ProxyState`` holds the objects; its ``checkout()`` returns a
``StateChange`` (which services changed since the last checkout, and the UDP conntrack-cleanup
facts). The Service and endpoint types it tracks are in ``testbed.proxy.model``.

Everything here is plain data; no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from testbed import jsoncodec
from testbed.proxy.model import (IPV4, EndpointInfo, NamespacedName, ParsedSlice, ServicePortInfo,
                                 ServicePortName, endpoints_for_service, parse_endpoint_slice,
                                 service_port_map)


# ----------------------------------------------------------------------------- change tracking

def _fingerprint(obj: Mapping) -> bytes:
    return hashlib.blake2b(jsoncodec.dumpb(obj, sort_keys=True, default=str), digest_size=16).digest()


@dataclass(frozen=True)
class ServiceEndpoint:
    """An endpoint (``ip:port``) of one service port; for conntrack cleanup."""

    service_port: ServicePortName
    endpoint: str


@dataclass
class StateChange:
    """What changed between two ``ProxyState.checkout()`` calls.

    ``updated_services`` is upstream's ``serviceUpdateResult.UpdatedServices`` union
    ``endpointUpdateResult.UpdatedServices``: the services whose per-service chains a partial
    sync must rewrite.
    """

    service_changes: dict[NamespacedName, tuple[dict, dict]] = field(default_factory=dict)
    endpoint_changes: dict[NamespacedName, tuple[dict, dict]] = field(default_factory=dict)
    deleted_udp_endpoints: list[ServiceEndpoint] = field(default_factory=list)
    newly_active_udp_services: list[ServicePortName] = field(default_factory=list)
    deleted_udp_cluster_ips: set[str] = field(default_factory=set)

    @property
    def updated_services(self) -> set[NamespacedName]:
        return set(self.service_changes) | set(self.endpoint_changes)

    @property
    def conntrack_cleanup_required(self) -> bool:
        return bool(self.deleted_udp_endpoints or self.newly_active_udp_services
                    or self.deleted_udp_cluster_ips)


def _stale_udp(prev: Mapping[ServicePortName, tuple[EndpointInfo, ...]],
               cur: Mapping[ServicePortName, tuple[EndpointInfo, ...]], out: StateChange) -> None:
    """Pre-1.31 ``detectStaleConntrackEntries`` (UDP only)."""
    for spn, eps in prev.items():
        if spn.protocol != "UDP":
            continue
        now = {(e.endpoint, e.serving) for e in cur.get(spn, ())}
        for ep in eps:
            if ep.serving and (ep.endpoint, True) not in now:
                out.deleted_udp_endpoints.append(ServiceEndpoint(spn, ep.endpoint))
    for spn, eps in cur.items():
        if spn.protocol != "UDP":
            continue
        if any(e.serving for e in eps) and not any(e.serving for e in prev.get(spn, ())):
            out.newly_active_udp_services.append(spn)


class ProxyState:
    """Current Services and endpoints of one IP family, plus pending-change bookkeeping.

    Feed it objects (``update_service``/``delete_service``/``update_endpoint_slice``/
    ``delete_endpoint_slice``, or ``replace`` with a full object list); read ``svc_port_map`` and
    ``endpoints_map``; call ``checkout()`` once per sync to learn what changed since the last one.
    """

    def __init__(self, node_name: str, family: str = IPV4) -> None:
        self.node_name = node_name
        self.family = family
        self.svc_port_map: dict[ServicePortName, ServicePortInfo] = {}
        self.endpoints_map: dict[ServicePortName, tuple[EndpointInfo, ...]] = {}
        self._svc_by_nn: dict[NamespacedName, dict[ServicePortName, ServicePortInfo]] = {}
        self._eps_by_nn: dict[NamespacedName, dict[ServicePortName, tuple[EndpointInfo, ...]]] = {}
        self._slices: dict[NamespacedName, dict[str, ParsedSlice]] = {}
        self._slice_owner: dict[tuple[str, str], NamespacedName] = {}
        self._slice_parsed: dict[tuple[str, str], ParsedSlice] = {}
        self._slice_applied: dict[tuple[str, str], tuple[bytes, bool]] = {}
        self._slice_pending: dict[tuple[str, str], tuple[bytes, bool]] = {}
        self._svc_prev: dict[NamespacedName, dict] = {}
        self._eps_count: dict[NamespacedName, int] = {}
        self._total_eps = 0
        self._eps_prev: dict[NamespacedName, dict] = {}

    # -- services
    def update_service(self, service: Mapping) -> None:
        meta = service.get("metadata") or {}
        nn = (meta.get("namespace") or "default", meta.get("name") or "")
        self._set_service(nn, service_port_map(service, self.family))

    def delete_service(self, service: Mapping | NamespacedName) -> None:
        if isinstance(service, tuple):
            nn = service
        else:
            meta = service.get("metadata") or {}
            nn = (meta.get("namespace") or "default", meta.get("name") or "")
        self._set_service(nn, {})

    def _set_service(self, nn: NamespacedName, ports: dict) -> None:
        old = self._svc_by_nn.get(nn, {})
        if old == ports and nn not in self._svc_prev:
            return
        self._svc_prev.setdefault(nn, old)
        for spn in old:
            self.svc_port_map.pop(spn, None)
        self.svc_port_map.update(ports)
        if ports:
            self._svc_by_nn[nn] = ports
        else:
            self._svc_by_nn.pop(nn, None)
        self._recount(nn)

    # -- endpoint slices
    def update_endpoint_slice(self, es: Mapping) -> None:
        self._slice_update(es, remove=False)

    def delete_endpoint_slice(self, es: Mapping) -> None:
        self._slice_update(es, remove=True)

    def _slice_update(self, es: Mapping, remove: bool) -> None:
        """Upstream ``EndpointSliceCache.updatePending`` + recomputing the service's endpoints.

        Like upstream, *any* change to the slice object (compared by value against the pending,
        else the applied version) marks its service as updated, even if the endpoints that
        kube-proxy derives from it stay the same. Objects are compared through a digest of
        their JSON (not the JSON itself: 40 kB per 200-endpoint slice, kept until the next
        change), so callers may mutate and re-submit the same dict.
        """
        meta = es.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        if remove:
            pending = self._slice_pending.get(key)
            if pending is not None and pending[1]:
                return
            if key not in self._slice_parsed:
                return
            data = ((pending or self._slice_applied[key])[0], True)
            ps = self._slice_parsed[key]
        else:
            ps = parse_endpoint_slice(es, self.family)
            if ps is None:
                return
            data = (_fingerprint(es), False)
        if key in self._slice_pending:
            changed = data != self._slice_pending[key]
        elif key in self._slice_applied:
            changed = data != self._slice_applied[key]
        else:
            changed = not remove
        if not changed:
            return
        self._slice_pending[key] = data
        owner = self._slice_owner.get(key)
        if owner is not None and owner != ps.service:   # service label changed
            self._drop_slice(key, owner)
        if remove:
            self._slice_parsed.pop(key, None)
            self._drop_slice(key, ps.service)
        else:
            self._slice_parsed[key] = ps
            self._slice_owner[key] = ps.service
            self._slices.setdefault(ps.service, {})[key[1]] = ps
            self._recompute_endpoints(ps.service)

    def _drop_slice(self, key: tuple[str, str], owner: NamespacedName) -> None:
        self._slice_owner.pop(key, None)
        slices = self._slices.get(owner, {})
        slices.pop(key[1], None)
        if not slices:
            self._slices.pop(owner, None)
        self._recompute_endpoints(owner)

    def _recompute_endpoints(self, nn: NamespacedName) -> None:
        new = endpoints_for_service(self._slices.get(nn, {}).values(), self.node_name)
        old = self._eps_by_nn.get(nn, {})
        self._eps_prev.setdefault(nn, old)
        for spn in old:
            self.endpoints_map.pop(spn, None)
        self.endpoints_map.update(new)
        if new:
            self._eps_by_nn[nn] = new
        else:
            self._eps_by_nn.pop(nn, None)
        self._recount(nn)

    # -- bulk
    def apply(self, objects: Iterable[Mapping]) -> None:
        """Add/update every Service and EndpointSlice in ``objects`` (others are ignored)."""
        for obj in objects:
            kind = obj.get("kind")
            if kind == "Service":
                self.update_service(obj)
            elif kind == "EndpointSlice":
                self.update_endpoint_slice(obj)

    def replace(self, objects: Iterable[Mapping]) -> None:
        """Make the state equal to ``objects``: apply them and delete whatever is missing."""
        objects = list(objects)
        svcs, slices = set(), set()
        for obj in objects:
            meta = obj.get("metadata") or {}
            if obj.get("kind") == "Service":
                svcs.add((meta.get("namespace") or "default", meta.get("name") or ""))
            elif obj.get("kind") == "EndpointSlice":
                slices.add((meta.get("namespace") or "", meta.get("name") or ""))
        for nn in [nn for nn in self._svc_by_nn if nn not in svcs]:
            self._set_service(nn, {})
        for key in [k for k in self._slice_owner if k not in slices]:
            self.delete_endpoint_slice({"metadata": {"namespace": key[0], "name": key[1]}})
        self.apply(objects)

    def services(self) -> list[NamespacedName]:
        """Names of the proxied Services (those with at least one port), sorted."""
        return sorted(self._svc_by_nn)

    def service_count(self) -> int:
        return len(self._svc_by_nn)

    def total_endpoints(self) -> int:
        """Endpoints summed over all service ports (upstream's large-cluster-mode input)."""
        return self._total_eps

    def _recount(self, nn: NamespacedName) -> None:
        eps = self._eps_by_nn.get(nn, {})
        n = sum(len(eps[spn]) for spn in self._svc_by_nn.get(nn, {}) if spn in eps)
        self._total_eps += n - self._eps_count.pop(nn, 0)
        if n:
            self._eps_count[nn] = n

    def ports_of(self, nn: NamespacedName) -> dict[ServicePortName, ServicePortInfo]:
        return self._svc_by_nn.get(nn, {})

    # -- changes
    def has_pending_changes(self) -> bool:
        return bool(self._eps_prev) or \
            any(self._svc_by_nn.get(nn, {}) != prev for nn, prev in self._svc_prev.items())

    def checkout(self) -> StateChange:
        """Changes since the previous checkout.

        Services count as changed if their derived port map differs (upstream compares
        ``ServicePortMap``s); endpoints count as changed if any of the service's EndpointSlice
        objects changed (upstream compares the slice objects), even if the endpoints did not.
        """
        out = StateChange()
        for nn, prev in self._svc_prev.items():
            cur = self._svc_by_nn.get(nn, {})
            if cur != prev:
                out.service_changes[nn] = (prev, cur)
                for spn, info in prev.items():
                    if info.protocol == "UDP" and spn not in cur:
                        out.deleted_udp_cluster_ips.add(info.cluster_ip)
        for nn, prev in self._eps_prev.items():
            cur = self._eps_by_nn.get(nn, {})
            out.endpoint_changes[nn] = (prev, cur)
            _stale_udp(prev, cur, out)
        for key, (fingerprint, remove) in self._slice_pending.items():
            if remove:
                self._slice_applied.pop(key, None)
            else:
                self._slice_applied[key] = (fingerprint, False)
        self._slice_pending.clear()
        self._svc_prev.clear()
        self._eps_prev.clear()
        return out
