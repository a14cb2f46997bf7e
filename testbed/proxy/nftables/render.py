"""Desired state of the ``ip kube-proxy`` table from the proxy model (pure).

``render_base(config)`` gives the table-wide objects (base chains and their priorities, the
dispatch and check chains, the sets and verdict maps, masquerading); ``render_service(...)``
gives one Service's objects: its ``service-``/``local-``/``external-``/``firewall-``/
``endpoint-`` chains, affinity sets and its elements in the shared sets and maps. Both follow
upstream ``pkg/proxy/nftables/proxier.go`` (``setupNFTables`` and the per-service loop of
``syncProxyRules``) as of the version its current tests describe.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Mapping

from testbed.proxy.model import (
    IPV4,
    IPV6,
    EndpointInfo,
    NamespacedName,
    ServicePortInfo,
    ServicePortName,
    categorize_endpoints,
    parse_cidr,
)
from testbed.proxy.nftables import names
from testbed.proxy.nftables.table import Chain, Container, Element, Fragment, Table

TABLE_COMMENT = "rules for kube-proxy"

# Base and helper chain names (upstream constants).
SERVICES = "services"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NODEPORT_IPS = "nodeport-ips"
CLUSTER_IPS = "cluster-ips"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_IPS = "firewall-ips"
FIREWALL_CHECK = "firewall-check"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"

# (name, type, hook, priority): the filter chains run before DNAT (-110) so they see the
# original destination; the post-DNAT ones (0) see the endpoint.
BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-forward", "filter", "forward", 0),
    ("filter-input", "filter", "input", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
    ("nat-prerouting", "nat", "prerouting", -100),
)
BASE_CHAIN_NAMES = tuple(b[0] for b in BASE_CHAINS)

# (destination, source chain, match): which helper chain each base chain jumps to, in order.
# The endpoints checks hang off input/forward/output because ``reject`` was only valid there
# on older kernels.
JUMPS = (
    (FIREWALL_CHECK, "filter-prerouting-pre-dnat", "ct state new"),
    (FIREWALL_CHECK, "filter-output-pre-dnat", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-forward", "ct state new"),
    (CLUSTER_IPS_CHECK, "filter-forward", "ct state new"),
    (NODEPORT_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-output", "ct state new"),
    (CLUSTER_IPS_CHECK, "filter-output", "ct state new"),
    (SERVICES, "nat-output", ""),
    (SERVICES, "nat-prerouting", ""),
    (MASQUERADING, "nat-postrouting", ""),
)

LOCAL_DETECTOR_MODES = ("ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix")


@dataclass(frozen=True)
class NftablesConfig:
    """What ``kube-proxy --proxy-mode=nftables`` is started with, for one IP family."""

    node_name: str
    node_ip: str = ""
    ip_family: str = IPV4
    detect_local_mode: str = ""          # one of LOCAL_DETECTOR_MODES, or "" (none)
    detect_local_value: str = ""         # the CIDR, bridge name or interface prefix
    masquerade_all: bool = False
    masquerade_bit: int = 14
    mark_format: str = "padded"          # "padded": 0x00004000 (kube-proxy), "short": 0x4000
    nodeport_addresses: tuple[str, ...] = ()   # CIDRs; empty = every local address
    node_addresses: tuple[str, ...] = ()  # the node's own IPs (fill nodeport-ips)
    service_cidrs: tuple[str, ...] = ()  # drop traffic to unallocated ClusterIPs in these

    def __post_init__(self) -> None:
        if self.detect_local_mode and self.detect_local_mode not in LOCAL_DETECTOR_MODES:
            raise ValueError(f"detect-local-mode {self.detect_local_mode!r}: allowed values are "
                             + ", ".join(LOCAL_DETECTOR_MODES))
        if self.mark_format not in ("padded", "short"):
            raise ValueError(f"mark format {self.mark_format!r}: allowed values are padded, short")
        if self.ip_family not in (IPV4, IPV6):
            raise ValueError(f"ipFamily {self.ip_family!r}: allowed values are IPv4, IPv6")

    @property
    def family(self) -> str:
        """nftables address family of the table."""
        return "ip6" if self.ip_family == IPV6 else "ip"

    @property
    def addr_type(self) -> str:
        return "ipv6_addr" if self.ip_family == IPV6 else "ipv4_addr"

    @property
    def mark(self) -> str:
        value = 1 << self.masquerade_bit
        return hex(value) if self.mark_format == "short" else "0x%08x" % value

    def if_local(self) -> str:
        mode, value, ipx = self.detect_local_mode, self.detect_local_value, self.family
        if mode in ("ClusterCIDR", "NodeCIDR"):
            return f"{ipx} saddr {value}"
        if mode == "BridgeInterface":
            return f"iifname {value}"
        if mode == "InterfaceNamePrefix":
            return f"iifname {value}*"
        return ""

    def if_not_local(self) -> str:
        mode, value, ipx = self.detect_local_mode, self.detect_local_value, self.family
        if mode in ("ClusterCIDR", "NodeCIDR"):
            return f"{ipx} saddr != {value}"
        if mode == "BridgeInterface":
            return f"iifname != {value}"
        if mode == "InterfaceNamePrefix":
            return f"iifname != {value}*"
        return ""

    def nodeport_ips(self) -> tuple[str, ...]:
        """Node addresses inside ``nodeport_addresses`` (of this family, loopback excluded)."""
        nets = [n for n in (parse_cidr(c) for c in self.nodeport_addresses)
                if n is not None and (n.version == 6) == (self.ip_family == IPV6)]
        out: list[str] = []
        for text in self.node_addresses:
            ip = ipaddress.ip_address(text.split("/")[0])
            if ip.is_loopback or not any(ip in n for n in nets):
                continue
            if str(ip) not in out:
                out.append(str(ip))
        return tuple(out)


def _verdict_map_spec(addr_type: str | None, comment: str) -> str:
    key = f"{addr_type} . inet_proto . inet_service" if addr_type else "inet_proto . inet_service"
    return f'{{ type {key} : verdict ; comment "{comment}" ; }}'


def render_base(cfg: NftablesConfig) -> Fragment:
    ipx, at = cfg.family, cfg.addr_type
    match_all = not cfg.nodeport_addresses
    no_localhost = "ip6 daddr != ::1" if cfg.ip_family == IPV6 else "ip daddr != 127.0.0.0/8"
    rules: dict[str, list[str]] = {name: [] for name in BASE_CHAIN_NAMES}
    for dst, src, match in JUMPS:
        rules.setdefault(dst, [])
        rules[src].append(f"{match} jump {dst}" if match else f"jump {dst}")
    rules[MARK_MASQ] = [f"mark set mark or {cfg.mark}"]
    rules[MASQUERADING] = [f"mark and {cfg.mark} == 0 return",
                           f"mark set mark xor {cfg.mark}",
                           "masquerade fully-random"]
    rules[CLUSTER_IPS_CHECK] = [
        f'{ipx} daddr @{CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"']
    if cfg.service_cidrs:
        rules[CLUSTER_IPS_CHECK].append(
            f"{ipx} daddr {{ {','.join(cfg.service_cidrs)} }} drop "
            f'comment "Drop traffic to unallocated ClusterIPs"')
    rules[REJECT_CHAIN] = ["reject"]
    rules[SERVICE_ENDPOINTS_CHECK] = [
        f"{ipx} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"]
    rules[NODEPORT_ENDPOINTS_CHECK] = [
        (f"{no_localhost} " if match_all else f"{ipx} daddr @{NODEPORT_IPS} ")
        + f"meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"]
    rules[FIREWALL_CHECK] = [f"{ipx} daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"]
    rules[SERVICES] = [
        f"{ipx} daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
        (f"fib daddr type local {no_localhost} " if match_all
         else f"{ipx} daddr @{NODEPORT_IPS} ")
        + f"meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"]

    frag = Fragment()
    specs = {name: f"{{ type {t} hook {h} priority {p} ; }}" for name, t, h, p in BASE_CHAINS}
    specs[REJECT_CHAIN] = '{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }'
    for name in (*BASE_CHAIN_NAMES, SERVICES, CLUSTER_IPS_CHECK, MASQUERADING, MARK_MASQ,
                 SERVICE_ENDPOINTS_CHECK, NODEPORT_ENDPOINTS_CHECK, FIREWALL_CHECK, REJECT_CHAIN):
        frag.chains[name] = Chain(name, tuple(rules[name]), specs.get(name, ""))

    def add(kind: str, name: str, spec: str) -> None:
        frag.containers[name] = Container(kind, name, spec)
    add("set", CLUSTER_IPS, f'{{ type {at} ; comment "Active ClusterIPs" ; }}')
    if not match_all:
        add("set", NODEPORT_IPS, f'{{ type {at} ; comment "IPs that accept NodePort traffic" ; }}')
        for ip in cfg.nodeport_ips():
            frag.elements[(NODEPORT_IPS, ip)] = Element()
    add("map", NO_ENDPOINT_SERVICES, _verdict_map_spec(
        at, "vmap to drop or reject packets to services with no endpoints"))
    add("map", NO_ENDPOINT_NODEPORTS, _verdict_map_spec(
        None, "vmap to drop or reject packets to service nodeports with no endpoints"))
    add("map", FIREWALL_IPS, _verdict_map_spec(
        at, "destinations that are subject to LoadBalancerSourceRanges"))
    add("map", SERVICE_IPS, _verdict_map_spec(at, "ClusterIP, ExternalIP and LoadBalancer IP traffic"))
    add("map", SERVICE_NODEPORTS, _verdict_map_spec(None, "NodePort traffic"))
    return frag


# Containers whose elements the per-service fragments fill (and a full sync flushes).
SERVICE_CONTAINERS = (CLUSTER_IPS, SERVICE_IPS, FIREWALL_IPS, NO_ENDPOINT_SERVICES,
                      NO_ENDPOINT_NODEPORTS, SERVICE_NODEPORTS)


def _endpoint_names(spn: ServicePortName, proto: str, ep: EndpointInfo) -> tuple[str, str]:
    base = names.endpoint_base(spn.namespace, spn.name, proto, spn.port, ep.ip, ep.port)
    return names.ENDPOINT_PREFIX + base, names.AFFINITY_PREFIX + base


def _service_to_endpoint_rules(cfg: NftablesConfig, svc: ServicePortInfo,
                               endpoints: tuple[EndpointInfo, ...],
                               ep_names: Mapping[str, tuple[str, str]]) -> list[str]:
    rules = []
    if svc.session_affinity_client_ip:
        for ep in endpoints:
            chain, aff = ep_names[ep.endpoint]
            rules.append(f"{cfg.family} saddr @{aff} goto {chain}")
    targets = " , ".join(f"{i} : goto {ep_names[ep.endpoint][0]}"
                         for i, ep in enumerate(endpoints))
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {targets} }}")
    return rules


def render_service_port(cfg: NftablesConfig, spn: ServicePortName, svc: ServicePortInfo,
                        endpoints: tuple[EndpointInfo, ...], frag: Fragment,
                        topology_labels: Mapping[str, str] | None = None) -> None:
    """Add one service port's objects to ``frag`` (upstream's per-service-port loop body)."""
    ipx = cfg.family
    proto = svc.protocol.lower()
    chains = names.service_chains(spn.namespace, spn.name, proto, spn.port)
    cluster_eps, local_eps, reachable, has_endpoints = categorize_endpoints(
        endpoints, svc, cfg.node_name, topology_labels)
    name_string = str(spn)

    uses_cluster_chain = bool(cluster_eps) and svc.uses_cluster_endpoints
    uses_local_chain = bool(local_eps) and svc.uses_local_endpoints
    internal_chain, has_internal = chains.cluster, has_endpoints
    if svc.internal_policy_local:
        internal_chain = chains.local
        has_internal = has_internal and bool(local_eps)
    external_policy_chain, has_external = chains.cluster, has_endpoints
    if svc.external_policy_local:
        external_policy_chain = chains.local
        has_external = has_external and bool(local_eps)
    uses_external_chain = has_endpoints and svc.externally_accessible

    if not has_endpoints:
        internal_verdict = external_verdict = f"goto {REJECT_CHAIN}"
    else:
        internal_verdict = "" if has_internal else "drop"
        external_verdict = "" if has_external else "drop"

    port = svc.port
    elements = frag.elements
    elements[(CLUSTER_IPS, svc.cluster_ip)] = Element()
    if has_internal:
        elements[(SERVICE_IPS, f"{svc.cluster_ip} . {proto} . {port}")] = \
            Element(f"goto {internal_chain}")
    else:
        elements[(NO_ENDPOINT_SERVICES, f"{svc.cluster_ip} . {proto} . {port}")] = \
            Element(internal_verdict, name_string)
    for ip in svc.external_ips:
        if has_endpoints:
            elements[(SERVICE_IPS, f"{ip} . {proto} . {port}")] = Element(f"goto {chains.external}")
        if not has_external:
            elements[(NO_ENDPOINT_SERVICES, f"{ip} . {proto} . {port}")] = \
                Element(external_verdict, name_string)
    uses_fw = bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
    for ip in svc.load_balancer_vips:
        if has_endpoints:
            elements[(SERVICE_IPS, f"{ip} . {proto} . {port}")] = Element(f"goto {chains.external}")
        if uses_fw:
            elements[(FIREWALL_IPS, f"{ip} . {proto} . {port}")] = Element(f"goto {chains.firewall}")
    if not has_external:
        for ip in svc.load_balancer_vips:
            elements[(NO_ENDPOINT_SERVICES, f"{ip} . {proto} . {port}")] = \
                Element(external_verdict, name_string)
    if svc.node_port:
        if has_endpoints:
            elements[(SERVICE_NODEPORTS, f"{proto} . {svc.node_port}")] = \
                Element(f"goto {chains.external}")
        if not has_external:
            elements[(NO_ENDPOINT_NODEPORTS, f"{proto} . {svc.node_port}")] = \
                Element(external_verdict, name_string)

    rules: dict[str, list[str]] = {}
    if uses_cluster_chain:
        rules[chains.cluster] = []
    if uses_local_chain:
        rules[chains.local] = []
    if uses_external_chain:
        rules[chains.external] = []
    if uses_fw:
        rules[chains.firewall] = []

    if has_internal:
        if cfg.masquerade_all:
            rules[internal_chain].append(f"{ipx} daddr {svc.cluster_ip} jump {MARK_MASQ}")
        elif cfg.detect_local_mode:
            # Off-cluster traffic routed to a ClusterIP via this node may leave it again.
            rules[internal_chain].append(
                f"{ipx} daddr {svc.cluster_ip} {cfg.if_not_local()} jump {MARK_MASQ}")

    if uses_external_chain:
        ext = rules[chains.external]
        if not svc.external_policy_local:
            ext.append(f"jump {MARK_MASQ}")     # endpoints may be on other nodes
        else:
            if cfg.detect_local_mode:
                # Pods reaching an external IP behave as if they went out and came back in.
                ext.append(f'{cfg.if_local()} goto {chains.cluster} comment "short-circuit pod traffic"')
            # The node's own traffic gets the LB IP as source: it must be masqueraded.
            ext.append(f'fib saddr type local jump {MARK_MASQ} comment "masquerade local traffic"')
            ext.append(f'fib saddr type local goto {chains.cluster} comment "short-circuit local traffic"')
        if has_external:
            ext.append(f"goto {external_policy_chain}")

    if uses_fw:
        sources = [str(n) if (n := parse_cidr(c)) is not None else c
                   for c in svc.load_balancer_source_ranges]
        node_ip = ipaddress.ip_address(cfg.node_ip) if cfg.node_ip else None
        if node_ip is not None and any(
                (n := parse_cidr(c)) is not None and n.version == node_ip.version and node_ip in n
                for c in sources):
            # A VIP bound locally loops a node's own request back with the VIP as source.
            sources.extend(svc.load_balancer_vips)
        rules[chains.firewall].append(f"{ipx} saddr != {{ {' , '.join(sources)} }} drop")

    ep_names = {ep.endpoint: _endpoint_names(spn, proto, ep) for ep in reachable}
    if svc.session_affinity_client_ip:
        for ep in reachable:
            aff = ep_names[ep.endpoint][1]
            frag.containers[aff] = Container(
                "set", aff, f"{{ type {cfg.addr_type} ; flags dynamic,timeout ; "
                            f"timeout {svc.sticky_max_age_seconds}s ; }}")

    if uses_cluster_chain:
        rules[chains.cluster] += _service_to_endpoint_rules(cfg, svc, cluster_eps, ep_names)
    if uses_local_chain:
        rules[chains.local] += _service_to_endpoint_rules(cfg, svc, local_eps, ep_names)

    for ep in reachable:
        chain, aff = ep_names[ep.endpoint]
        ep_rules = [f"{ipx} saddr {ep.ip} jump {MARK_MASQ}"]     # hairpin: pod reaches itself
        if svc.session_affinity_client_ip:
            ep_rules.append(f"update @{aff} {{ {ipx} saddr }}")
        ep_rules.append(f"meta l4proto {proto} dnat to {ep.endpoint}")
        rules[chain] = ep_rules

    for name, rl in rules.items():
        frag.chains[name] = Chain(name, tuple(rl))


def render_service(cfg: NftablesConfig, ports: Mapping[ServicePortName, ServicePortInfo],
                   endpoints: Mapping[ServicePortName, tuple[EndpointInfo, ...]],
                   topology_labels: Mapping[str, str] | None = None) -> Fragment:
    """All objects of one Service (every port of it)."""
    frag = Fragment()
    for spn in sorted(ports):
        render_service_port(cfg, spn, ports[spn], endpoints.get(spn, ()), frag, topology_labels)
    return frag


def render_table(cfg: NftablesConfig, services: Mapping[NamespacedName, Mapping],
                 endpoints: Mapping[ServicePortName, tuple[EndpointInfo, ...]],
                 topology_labels: Mapping[str, str] | None = None) -> Table:
    """The complete desired table; ``services`` maps a Service to its port map."""
    return Table(cfg.family, TABLE_COMMENT, render_base(cfg),
                 {nn: render_service(cfg, ports, endpoints, topology_labels)
                  for nn, ports in services.items()})
