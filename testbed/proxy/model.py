"""Proxy-mode independent model of Services and endpoints, as kube-proxy sees them.

Mirrors upstream ``pkg/proxy`` (serviceport.go, endpoint.go, endpointslicecache.go,
topology.go) closely enough that the
iptables/ipvs/nftables renderers built on it produce upstream's output:

- ``service_port_map(service)``: one ``ServicePortInfo`` per ``spec.ports`` entry (headless and
  ExternalName services yield nothing; IPs of the other family are dropped);
- ``endpoints_map(slices)``: one sorted tuple of ``EndpointInfo`` per ``ServicePortName``
  (first address of each endpoint only, de-duplicated by ``ip:port``, sorted by that string);
- ``categorize_endpoints``: upstream's ``CategorizeEndpoints`` (ready, else serving+terminating
  fallback, topology hints, cluster/local split).

The change trackers built on these types are in ``testbed.proxy.tracker``.
Everything here is plain data; no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
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


_host_port = functools.lru_cache(maxsize=16384)(join_host_port)   # one string per endpoint value


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

@dataclass(frozen=True, slots=True)
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
        object.__setattr__(self, "endpoint", _host_port(self.ip, self.port))

    def __str__(self) -> str:
        return self.endpoint


@dataclass(frozen=True, slots=True)
class _SliceEndpoint:
    ip: str
    node_name: str | None
    ready: bool
    serving: bool
    terminating: bool
    zone_hints: frozenset[str]
    node_hints: frozenset[str]


@dataclass(frozen=True, slots=True)
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
        eps.append(_slice_endpoint(
            ip[0] if ip is not None else addrs[0],
            ep.get("nodeName"),
            cond.get("ready") is None or bool(cond.get("ready")),
            cond.get("serving") is None or bool(cond.get("serving")),
            cond.get("terminating") is not None and bool(cond.get("terminating")),
            _names(hints.get("forZones")),
            _names(hints.get("forNodes")),
        ))
    return ParsedSlice((ns, svc), name, tuple(ports), tuple(eps))


_NO_HINTS: frozenset[str] = frozenset()


def _names(hints: list | None) -> frozenset[str]:
    # one shared empty set: a new one per endpoint is 216 bytes, 20 MB at 100k endpoints
    return frozenset(h.get("name", "") for h in hints) if hints else _NO_HINTS


# Endpoints are values: 500 Services over one 200-pod Deployment are 100k endpoints but 200
# distinct values (per slice entry, and per EndpointInfo for each port number). Sharing one
# object per value is most of the tracker's memory at that size; the caches are bounded, so a
# cluster of distinct endpoints costs a few MB of them at most.
_slice_endpoint = functools.lru_cache(maxsize=16384)(_SliceEndpoint)
_endpoint_info = functools.lru_cache(maxsize=16384)(EndpointInfo)


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
                info = _endpoint_info(e.ip, pnum, is_local, e.ready, e.serving, e.terminating,
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
