"""Proxy-mode independent model of Services and endpoints, as kube-proxy sees them.

Mirrors upstream ``pkg/proxy`` (serviceport.go, endpoint.go, endpointslicecache.go,
servicechangetracker.go, endpointschangetracker.go, topology.go) closely enough that the
iptables/ipvs/nftables renderers built on it produce upstream's output:

- ``service_port_map(service)``: one ``ServicePortInfo`` per ``spec.ports`` entry (headless and
  ExternalName services yield nothing; IPs of the other family are dropped);
- ``endpoints_map(slices)``: one sorted tuple of ``EndpointInfo`` per ``ServicePortName``
  (first address of each endpoint only, de-duplicated by ``ip:port``, sorted by that string);
- ``categorize_endpoints``: upstream's ``CategorizeEndpoints`` (ready, else serving+terminating
  fallback, topology hints, cluster/local split);
- ``ProxyState``: the current Services/EndpointSlices plus pending-change bookkeeping; its
  ``checkout()`` returns a ``StateChange`` (which services changed since the last checkout, and
  the UDP conntrack-cleanup facts).

Everything here is plain data; no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

IPV4 = "IPv4"
IPV6 = "IPv6"

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"
ANNOTATION_TOPOLOGY_AWARE_HINTS = "service.kubernetes.io/topology-aware-hints"
ANNOTATION_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
DEFAULT_CLIENT_IP_TIMEOUT = 10800

TOPOLOGY_PREFER_SAME_ZONE = "PreferSameZone"
TOPOLOGY_PREFER_SAME_NODE = "PreferSameNode"

NamespacedName = tuple[str, str]


# ----------------------------------------------------------------------------- addresses

def _sloppy_v4(text: str) -> str:
    """Go's ParseIPSloppy accepts leading zeros in IPv4 octets (decimal)."""
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return ".".join(str(int(p)) for p in parts)
    return text


# Cached: 500 Services over one 200-pod Deployment are 100k endpoints but 200 addresses; the
# cache parses each once and makes every endpoint share one string per address. Bounded, so
# a cluster of distinct addresses costs it a little memory, never more.
@functools.lru_cache(maxsize=8192)
def canonical_ip(text: str | None) -> tuple[str, str] | None:
    """``(canonical string, family)`` of an IP (parsed sloppily), or None. Fast for IPv4."""
    if not text:
        return None
    parts = text.split(".")
    if len(parts) == 4:
        try:
            octets = [int(p) for p in parts]
        except ValueError:
            return None
        if all(0 <= o <= 255 for o in octets) and all(p.isdigit() for p in parts):
            return ".".join(map(str, octets)), IPV4
        return None
    ip = parse_ip(text)
    if ip is None:
        return None
    return str(ip), ip_family(ip)


def parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an IP "sloppily" (leading zeros allowed); None if invalid."""
    if not text:
        return None
    text = text.strip()
    try:
        return ipaddress.ip_address(_sloppy_v4(text))
    except ValueError:
        return None


def parse_cidr(text: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Parse a CIDR sloppily; host bits are masked off, as Go's ParseCIDR does."""
    if not text or "/" not in text:
        return None
    addr, _, plen = text.strip().partition("/")
    try:
        return ipaddress.ip_network(f"{_sloppy_v4(addr)}/{plen}", strict=False)
    except ValueError:
        return None


def ip_family(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network
              | ipaddress.IPv6Network) -> str:
    return IPV4 if ip.version == 4 else IPV6


def join_host_port(ip: str, port: int) -> str:
    """Go's net.JoinHostPort: IPv6 addresses in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# ----------------------------------------------------------------------------- services

class ServicePortName(NamedTuple):
    """Upstream ``proxy.ServicePortName``. ``str()`` is ``ns/name[:port]`` (no protocol).

    A NamedTuple (not a dataclass) because it is a hot dict key: C-level hash and equality.
    """

    namespace: str
    name: str
    port: str = ""
    protocol: str = "TCP"

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base

    @property
    def namespaced_name(self) -> NamespacedName:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ServicePortInfo:
    """Upstream ``BaseServicePortInfo`` for one Service port, for one IP family."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str = "TCP"
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_vips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    health_check_node_port: int = 0
    session_affinity: str = "None"
    sticky_max_age_seconds: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False
    hints_annotation: str = ""
    # Informational (not part of upstream's equality, so they never trigger a resync).
    service_type: str = field(default="ClusterIP", compare=False)
    target_port: int | str = field(default=0, compare=False)

    @property
    def name_string(self) -> str:
        return str(self.name)

    @property
    def session_affinity_client_ip(self) -> bool:
        return self.session_affinity == "ClientIP"

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local
                                              and self.externally_accessible)


def _service_type(spec: Mapping) -> str:
    return spec.get("type") or "ClusterIP"


def _cluster_ip_by_family(spec: Mapping, family: str) -> str:
    """Upstream ``GetClusterIPByFamily``."""
    families = spec.get("ipFamilies") or []
    if not families:
        cip = spec.get("clusterIP") or ""
        if cip in ("", "None"):
            return ""
        ip = canonical_ip(cip)
        if ip is None or ip[1] != family:
            return ""
        return cip
    cips = spec.get("clusterIPs") or []
    for idx, fam in enumerate(families):
        if fam == family and idx < len(cips):
            return cips[idx]
    return ""


def _externally_accessible_spec(spec: Mapping) -> bool:
    """``pkg/api/v1/service.ExternallyAccessible`` (on the object, not the port)."""
    t = _service_type(spec)
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def service_port_map(service: Mapping, family: str = IPV4) -> dict[ServicePortName, ServicePortInfo]:
    """Upstream ``serviceToServiceMap``: all ports of one Service, or {} if not proxied."""
    if not service:
        return {}
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    status = service.get("status") or {}
    stype = _service_type(spec)
    if spec.get("clusterIP") in (None, "", "None") or stype == "ExternalName":
        return {}
    cip_text = _cluster_ip_by_family(spec, family)
    if not cip_text:
        return {}
    cip = canonical_ip(cip_text)
    cluster_ip = cip[0] if cip is not None else cip_text

    ns, name = meta.get("namespace") or "default", meta.get("name") or ""
    ext_local = _externally_accessible_spec(spec) and spec.get("externalTrafficPolicy") == "Local"
    int_local = spec.get("internalTrafficPolicy") == "Local"
    affinity = spec.get("sessionAffinity") or "None"
    sticky = 0
    if affinity == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        sticky = int(cfg.get("timeoutSeconds") or DEFAULT_CLIENT_IP_TIMEOUT)
    annotations = meta.get("annotations") or {}
    hints = annotations.get(ANNOTATION_TOPOLOGY_AWARE_HINTS)
    if hints is None:
        hints = annotations.get(ANNOTATION_TOPOLOGY_MODE, "")

    external_ips = []
    for text in spec.get("externalIPs") or []:
        ip = canonical_ip(text)
        if ip is not None and ip[1] == family:
            external_ips.append(ip[0])
    source_ranges = []
    for text in spec.get("loadBalancerSourceRanges") or []:
        net = parse_cidr(str(text).strip())
        if net is not None and ip_family(net) == family:
            source_ranges.append(str(net))
    vips = []
    for ing in (status.get("loadBalancer") or {}).get("ingress") or []:
        if not ing.get("ip"):
            continue
        if ing.get("ipMode") not in (None, "VIP"):
            continue
        ip = canonical_ip(ing["ip"])
        if ip is not None and ip[1] == family:
            vips.append(ip[0])
    hc = 0
    if stype == "LoadBalancer" and ext_local:
        hc = int(spec.get("healthCheckNodePort") or 0)

    out: dict[ServicePortName, ServicePortInfo] = {}
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        spn = ServicePortName(ns, name, p.get("name") or "", proto)
        out[spn] = ServicePortInfo(
            name=spn, cluster_ip=cluster_ip, port=int(p.get("port") or 0), protocol=proto,
            node_port=int(p.get("nodePort") or 0), external_ips=tuple(external_ips),
            load_balancer_vips=tuple(vips), load_balancer_source_ranges=tuple(source_ranges),
            health_check_node_port=hc, session_affinity=affinity, sticky_max_age_seconds=sticky,
            external_policy_local=ext_local, internal_policy_local=int_local,
            hints_annotation=hints or "", service_type=stype,
            target_port=p.get("targetPort", p.get("port") or 0))
    return out


# ----------------------------------------------------------------------------- endpoints

@dataclass(frozen=True)
class EndpointInfo:
    """Upstream ``BaseEndpointInfo``. ``str()`` is ``ip:port`` (``[ip]:port`` for IPv6)."""

    ip: str
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()
    node_name: str | None = field(default=None, compare=False)
    endpoint: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", join_host_port(self.ip, self.port))

    def __str__(self) -> str:
        return self.endpoint


@dataclass(frozen=True)
class _SliceEndpoint:
    ip: str
    node_name: str | None
    ready: bool
    serving: bool
    terminating: bool
    zone_hints: frozenset[str]
    node_hints: frozenset[str]


@dataclass(frozen=True)
class ParsedSlice:
    """The parts of an EndpointSlice kube-proxy uses."""

    service: NamespacedName
    name: str
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol)
    endpoints: tuple[_SliceEndpoint, ...]


def parse_endpoint_slice(es: Mapping, family: str = IPV4) -> ParsedSlice | None:
    """None if kube-proxy would ignore the slice (wrong address type, no service label)."""
    if es.get("addressType") != family:
        return None
    meta = es.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(LABEL_SERVICE_NAME)
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    if not svc or not ns or not name:
        return None
    ports = []
    for p in es.get("ports") or []:
        if p.get("name") is None:          # upstream: "Ignoring port with nil name"
            continue
        if not p.get("port"):
            continue
        ports.append((p["name"], int(p["port"]), p.get("protocol") or "TCP"))
    eps = []
    for ep in es.get("endpoints") or []:
        addrs = ep.get("addresses") or []
        if not addrs:
            continue
        ip = canonical_ip(addrs[0])
        cond = ep.get("conditions") or {}
        hints = ep.get("hints") or {}
        eps.append(_SliceEndpoint(
            ip=ip[0] if ip is not None else addrs[0],
            node_name=ep.get("nodeName"),
            ready=cond.get("ready") is None or bool(cond.get("ready")),
            serving=cond.get("serving") is None or bool(cond.get("serving")),
            terminating=cond.get("terminating") is not None and bool(cond.get("terminating")),
            zone_hints=frozenset(z.get("name", "") for z in hints.get("forZones") or []),
            node_hints=frozenset(n.get("name", "") for n in hints.get("forNodes") or []),
        ))
    return ParsedSlice((ns, svc), name, tuple(ports), tuple(eps))


def endpoints_for_service(slices: Iterable[ParsedSlice], node_name: str
                          ) -> dict[ServicePortName, tuple[EndpointInfo, ...]]:
    """Upstream ``getEndpointsMap`` for one Service's slices (sorted by slice name)."""
    by_spn: dict[ServicePortName, dict[str, EndpointInfo]] = {}
    for sl in sorted(slices, key=lambda s: s.name):
        ns, svc = sl.service
        for pname, pnum, proto in sl.ports:
            spn = ServicePortName(ns, svc, pname, proto)
            epset = by_spn.setdefault(spn, {})
            for e in sl.endpoints:
                is_local = bool(e.node_name) and bool(node_name) and e.node_name == node_name
                info = EndpointInfo(e.ip, pnum, is_local, e.ready, e.serving, e.terminating,
                                    e.zone_hints, e.node_hints, e.node_name)
                key = info.endpoint
                if key not in epset or not e.terminating:
                    epset[key] = info
    return {spn: tuple(epset[k] for k in sorted(epset)) for spn, epset in by_spn.items() if epset}


def endpoints_map(slices: Iterable[Mapping], node_name: str, family: str = IPV4
                  ) -> dict[ServicePortName, tuple[EndpointInfo, ...]]:
    """All services' endpoints from EndpointSlice dicts."""
    grouped: dict[NamespacedName, list[ParsedSlice]] = {}
    for es in slices:
        ps = parse_endpoint_slice(es, family)
        if ps is not None:
            grouped.setdefault(ps.service, []).append(ps)
    out: dict[ServicePortName, tuple[EndpointInfo, ...]] = {}
    for group in grouped.values():
        out.update(endpoints_for_service(group, node_name))
    return out


# ----------------------------------------------------------------------------- categorisation

class CategorizedEndpoints(NamedTuple):
    cluster: tuple[EndpointInfo, ...]
    local: tuple[EndpointInfo, ...]
    all_reachable: tuple[EndpointInfo, ...]
    has_any: bool


def _topology_mode(svc: ServicePortInfo, endpoints: Iterable[EndpointInfo], node_name: str,
                   zone: str, prefer_same_node: bool) -> str:
    has_ready = False
    all_node_hints, has_for_node = True, False
    all_zone_hints, has_for_zone = True, False
    for ep in endpoints:
        if not ep.ready:
            continue
        has_ready = True
        if not ep.node_hints:
            all_node_hints = False
        elif node_name in ep.node_hints:
            has_for_node = True
        if not ep.zone_hints:
            all_zone_hints = False
        elif zone in ep.zone_hints:
            has_for_zone = True
    if not has_ready:
        return ""
    if prefer_same_node and all_node_hints and has_for_node:
        return TOPOLOGY_PREFER_SAME_NODE
    if all_zone_hints and has_for_zone:
        return TOPOLOGY_PREFER_SAME_ZONE
    return ""


def _available_for_topology(ep: EndpointInfo, mode: str, node_name: str, zone: str) -> bool:
    if mode == "":
        return True
    if mode == TOPOLOGY_PREFER_SAME_NODE:
        return node_name in ep.node_hints
    if mode == TOPOLOGY_PREFER_SAME_ZONE:
        return zone in ep.zone_hints
    return False


def categorize_endpoints(endpoints: Iterable[EndpointInfo], svc: ServicePortInfo, node_name: str,
                         topology_labels: Mapping[str, str] | None = None, *,
                         prefer_same_node: bool = True) -> CategorizedEndpoints:
    """Upstream ``CategorizeEndpoints``.

    ``prefer_same_node`` is the PreferSameTrafficDistribution feature gate (node hints).
    ``all_reachable`` is sorted by endpoint string (upstream's merged list is map-ordered).
    """
    endpoints = tuple(endpoints)
    if not endpoints:
        return CategorizedEndpoints((), (), (), False)
    cluster: tuple[EndpointInfo, ...] = ()
    local: tuple[EndpointInfo, ...] = ()
    has_any = False
    mode = ""
    use_serving_terminating = False
    if svc.uses_cluster_endpoints:
        zone = (topology_labels or {}).get(LABEL_TOPOLOGY_ZONE, "")
        mode = _topology_mode(svc, endpoints, node_name, zone, prefer_same_node)
        cluster = tuple(ep for ep in endpoints
                        if ep.ready and _available_for_topology(ep, mode, node_name, zone))
        if not cluster:
            cluster = tuple(ep for ep in endpoints if ep.serving and ep.terminating)
        has_any = bool(cluster)
    if not svc.uses_local_endpoints:
        return CategorizedEndpoints(cluster, (), cluster, has_any)

    local_ready = local_st = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            has_any = True
            local_st = local_st or ep.is_local
    if local_ready:
        local = tuple(ep for ep in endpoints if ep.is_local and ep.ready)
    elif local_st:
        use_serving_terminating = True
        local = tuple(ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating)

    if not svc.uses_cluster_endpoints:
        return CategorizedEndpoints((), local, local, has_any)
    if mode == "" and not use_serving_terminating:
        return CategorizedEndpoints(cluster, local, cluster, has_any)
    merged = {ep.endpoint: ep for ep in cluster}
    merged.update((ep.endpoint, ep) for ep in local)
    return CategorizedEndpoints(cluster, local, tuple(merged[k] for k in sorted(merged)), has_any)


# ----------------------------------------------------------------------------- change tracking

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
        self._slice_applied: dict[tuple[str, str], tuple[str, bool]] = {}
        self._slice_pending: dict[tuple[str, str], tuple[str, bool]] = {}
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
        kube-proxy derives from it stay the same. Objects are compared through a JSON
        fingerprint, so callers may mutate and re-submit the same dict.
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
            data = (json.dumps(es, sort_keys=True, default=str), False)
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
