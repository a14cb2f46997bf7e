"""Desired IPVS-mode state as plain data, computed from ``ProxyState`` (pure, no I/O).

Follows upstream's ``pkg/proxy/ipvs/proxier.go`` (see ``/work/shared/reference/kube-proxy-ipvs.md``):

- ``service_contribution``: what one Service adds to the kernel: IPVS virtual servers (ClusterIP,
  each externalIP, each LoadBalancer ingress IP on the service port, each node address on the
  NodePort), their real servers (ready endpoints, masquerade forwarding, weight 1), the
  addresses bound to ``kube-ipvs0`` and the ipset entries (upstream's entry strings);
  ``cluster_ip_destinations``: the ClusterIP part of it for one Service object;
- ``DesiredState``: the sum of all contributions, updated per changed Service (partial syncs),
  with reference counts where two Services can contribute the same entry;
- ``render_iptables``: the iptables-restore input of ``writeIptablesRules()`` (nat then filter,
  upstream's rule text and order), which depends only on which sets are non-empty and on the
  LoadBalancer output-filter rules;
- ``SYSCTLS``: what ``NewProxier`` sets.
"""

from __future__ import annotations

import collections
import ipaddress
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

from testbed.proxy.model import NamespacedName, ServicePortInfo, categorize_endpoints
from testbed.proxy.tracker import ProxyState

DEFAULT_SCHEDULER = "rr"
DUMMY_DEVICE = "kube-ipvs0"

FLAG_PERSISTENT = 0x1
FLAG_HASHED = 0x2
FLAG_SOURCE_HASH = 0x10

# sysctls NewProxier sets (kernel >= 5.9: conn_reuse_mode is left alone); all per netns
SYSCTLS = (
    ("net.ipv4.vs.conntrack", 1),
    ("net.ipv4.vs.expire_nodest_conn", 1),
    ("net.ipv4.vs.expire_quiescent_template", 1),
    ("net.ipv4.ip_forward", 1),
)
STRICT_ARP_SYSCTLS = (("net.ipv4.conf.all.arp_ignore", 1), ("net.ipv4.conf.all.arp_announce", 2))
CONN_REUSE_MODE = ("net.ipv4.vs.conn_reuse_mode", 0)   # only 4.1 <= kernel < 5.9


def sysctls(kernel: tuple[int, int] = (6, 1), strict_arp: bool = False) -> list[tuple[str, int]]:
    """The sysctls upstream's ``NewProxier`` sets for this kernel version."""
    out = list(SYSCTLS[:1])
    if (4, 1) <= kernel < (5, 9):
        out.append(CONN_REUSE_MODE)
    out += list(SYSCTLS[1:])
    if strict_arp:
        out += list(STRICT_ARP_SYSCTLS)
    return out


# ----------------------------------------------------------------------------- ipsets

class SetInfo(NamedTuple):
    name: str
    type: str
    comment: str


LOOP_BACK = "KUBE-LOOP-BACK"
CLUSTER_IP = "KUBE-CLUSTER-IP"
EXTERNAL_IP = "KUBE-EXTERNAL-IP"
EXTERNAL_IP_LOCAL = "KUBE-EXTERNAL-IP-LOCAL"
LOAD_BALANCER = "KUBE-LOAD-BALANCER"
LOAD_BALANCER_FW = "KUBE-LOAD-BALANCER-FW"
LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
LOAD_BALANCER_SOURCE_IP = "KUBE-LOAD-BALANCER-SOURCE-IP"
LOAD_BALANCER_SOURCE_CIDR = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"
NODE_PORT_SCTP = "KUBE-NODE-PORT-SCTP-HASH"
NODE_PORT_LOCAL_SCTP = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
HEALTH_CHECK_NODE_PORT = "KUBE-HEALTH-CHECK-NODE-PORT"
IPVS_IPS = "KUBE-IPVS-IPS"

# upstream's ipsetInfo, in its order (names, types and comments verbatim)
IPSETS: tuple[SetInfo, ...] = (
    SetInfo(LOOP_BACK, "hash:ip,port,ip", "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    SetInfo(CLUSTER_IP, "hash:ip,port", "Kubernetes service cluster ip + port for masquerade purpose"),
    SetInfo(EXTERNAL_IP, "hash:ip,port", "Kubernetes service external ip + port for masquerade and filter purpose"),
    SetInfo(EXTERNAL_IP_LOCAL, "hash:ip,port", "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER, "hash:ip,port", "Kubernetes service lb portal"),
    SetInfo(LOAD_BALANCER_FW, "hash:ip,port", "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    SetInfo(LOAD_BALANCER_LOCAL, "hash:ip,port", "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER_SOURCE_IP, "hash:ip,port,ip", "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    SetInfo(LOAD_BALANCER_SOURCE_CIDR, "hash:ip,port,net", "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    SetInfo(NODE_PORT_TCP, "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_TCP, "bitmap:port", "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_UDP, "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_UDP, "bitmap:port", "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_SCTP, "hash:ip,port", "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    SetInfo(NODE_PORT_LOCAL_SCTP, "hash:ip,port", "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
    SetInfo(HEALTH_CHECK_NODE_PORT, "bitmap:port", "Kubernetes health check node port"),
    SetInfo(IPVS_IPS, "hash:ip", "Addresses on the ipvs interface"),
)
SET_BY_NAME = {s.name: s for s in IPSETS}


def entry_ip_port(ip: str, protocol: str, port: int) -> str:
    """``hash:ip,port``: ``192.168.1.1,udp:53``."""
    return f"{ip},{protocol.lower()}:{port}"


def entry_ip_port_ip(ip: str, protocol: str, port: int, ip2: str) -> str:
    """``hash:ip,port,ip``: ``192.168.1.1,udp:53,10.0.0.1``."""
    return f"{ip},{protocol.lower()}:{port},{ip2}"


def entry_ip_port_net(ip: str, protocol: str, port: int, net: str) -> str:
    """``hash:ip,port,net``: ``192.168.1.2,udp:80,10.0.1.0/24``."""
    return f"{ip},{protocol.lower()}:{port},{net}"


def parse_entry(set_type: str, entry: str) -> tuple:
    """An entry string back to its parts: ``(ip, proto, port[, ip2|net])``, ``(port,)``, ``(ip,)``."""
    if set_type == "bitmap:port":
        return (int(entry),)
    if set_type == "hash:ip":
        return (entry,)
    parts = entry.split(",")
    proto, _, port = parts[1].partition(":")
    return (parts[0], proto, int(port), *parts[2:])


# ----------------------------------------------------------------------------- IPVS objects

class VSKey(NamedTuple):
    """What identifies an IPVS virtual server: address, protocol (``TCP``/``UDP``/``SCTP``), port."""

    address: str
    protocol: str
    port: int

    def __str__(self) -> str:   # upstream VirtualServer.String(): "10.96.0.1:80/TCP"
        return f"{self.address}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class VirtualServer:
    address: str
    protocol: str
    port: int
    scheduler: str = DEFAULT_SCHEDULER
    flags: int = 0
    timeout: int = 0

    @property
    def key(self) -> VSKey:
        return VSKey(self.address, self.protocol, self.port)


class RealServer(NamedTuple):
    """A destination: masquerading (NAT) forwarding, weight 1, as upstream creates them."""

    address: str
    port: int
    weight: int = 1

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class IpvsConfig:
    node_name: str
    node_ip: str
    # every local address of the node except kube-ipvs0's and loopback (NodePort VIPs,
    # and "already a node address" for externalIPs/LB IPs); default: just node_ip
    node_addresses: tuple[str, ...] = ()
    cluster_cidr: str | None = None
    masquerade_all: bool = False
    scheduler: str = DEFAULT_SCHEDULER
    masquerade_bit: int = 14
    random_fully: bool = False
    topology_labels: Mapping[str, str] | None = field(default=None, compare=False)

    @property
    def nodeport_addresses(self) -> tuple[str, ...]:
        return self.node_addresses or (self.node_ip,)

    @property
    def mark(self) -> str:
        return "0x%08x" % (1 << self.masquerade_bit)   # Go's %#08x


@dataclass
class ServiceContribution:
    """What one Service (all its ports) puts into the kernel."""

    virtual_servers: dict[VSKey, VirtualServer] = field(default_factory=dict)
    destinations: dict[VSKey, frozenset[RealServer]] = field(default_factory=dict)
    bind: set[str] = field(default_factory=set)
    entries: set[tuple[str, str]] = field(default_factory=set)   # (set name, entry)
    out_filter: set[tuple[str, str, int]] = field(default_factory=set)  # (LB IP, proto, port)

    def empty(self) -> bool:
        return not (self.virtual_servers or self.bind or self.entries or self.out_filter)


def _virtual_server(cfg: IpvsConfig, svc: ServicePortInfo, address: str, port: int) -> VirtualServer:
    flags, timeout = 0, 0
    if svc.session_affinity_client_ip:
        flags |= FLAG_PERSISTENT
        timeout = svc.sticky_max_age_seconds
    if cfg.scheduler == "mh":
        flags |= FLAG_SOURCE_HASH
    return VirtualServer(address, svc.protocol, port, cfg.scheduler, flags, timeout)


def _in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def service_contribution(cfg: IpvsConfig, state: ProxyState, nn: NamespacedName) -> ServiceContribution:
    """Upstream ``syncProxyRules``' per-service-port loop, for every port of one Service."""
    out = ServiceContribution()
    node_addrs = set(cfg.nodeport_addresses) | {cfg.node_ip}
    for spn, svc in sorted(state.ports_of(nn).items()):
        proto = svc.protocol
        eps = state.endpoints_map.get(spn, ())
        # hairpin: every local endpoint (ready or not)
        for ep in eps:
            if ep.is_local:
                out.entries.add((LOOP_BACK, entry_ip_port_ip(ep.ip, proto, ep.port, ep.ip)))
        cat = categorize_endpoints(eps, svc, cfg.node_name, cfg.topology_labels)

        def reals(only_local: bool) -> frozenset[RealServer]:
            chosen = cat.local if only_local else cat.cluster
            if only_local and not chosen:
                # upstream PR #97081: a Local-policy VIP without local endpoints falls back to the
                # cluster endpoints ("allow access from local pods"); iptables mode DROPs instead
                chosen = cat.cluster
            return frozenset(RealServer(ep.ip, ep.port) for ep in chosen)

        def add_vs(address: str, port: int, only_local: bool) -> None:
            vs = _virtual_server(cfg, svc, address, port)
            out.virtual_servers[vs.key] = vs
            out.destinations[vs.key] = reals(only_local)

        # ClusterIP (always bound)
        out.entries.add((CLUSTER_IP, entry_ip_port(svc.cluster_ip, proto, svc.port)))
        add_vs(svc.cluster_ip, svc.port, svc.internal_policy_local)
        out.bind.add(svc.cluster_ip)
        # externalIPs
        for ip in svc.external_ips:
            e = entry_ip_port(ip, proto, svc.port)
            out.entries.add((EXTERNAL_IP_LOCAL if svc.external_policy_local else EXTERNAL_IP, e))
            add_vs(ip, svc.port, svc.external_policy_local)
            if ip not in node_addrs:
                out.bind.add(ip)
        # LoadBalancer ingress IPs
        for ip in svc.load_balancer_vips:
            e = entry_ip_port(ip, proto, svc.port)
            out.entries.add((LOAD_BALANCER, e))
            if svc.external_policy_local:
                out.entries.add((LOAD_BALANCER_LOCAL, e))
            if svc.load_balancer_source_ranges:
                out.entries.add((LOAD_BALANCER_FW, e))
                allow_from_node = False
                for cidr in svc.load_balancer_source_ranges:
                    out.entries.add((LOAD_BALANCER_SOURCE_CIDR, entry_ip_port_net(ip, proto, svc.port, cidr)))
                    if _in_cidr(cfg.node_ip, cidr):
                        allow_from_node = True
                if allow_from_node:
                    out.entries.add((LOAD_BALANCER_SOURCE_IP, entry_ip_port_ip(ip, proto, svc.port, ip)))
                else:
                    out.out_filter.add((ip, proto, svc.port))
            add_vs(ip, svc.port, svc.external_policy_local)
            if ip not in node_addrs:
                out.bind.add(ip)
        # NodePort: one virtual server per node address, never bound
        if svc.node_port:
            if proto == "SCTP":
                for ip in cfg.nodeport_addresses:
                    e = entry_ip_port(ip, "sctp", svc.node_port)
                    out.entries.add((NODE_PORT_SCTP, e))
                    if svc.external_policy_local:
                        out.entries.add((NODE_PORT_LOCAL_SCTP, e))
            elif proto in ("TCP", "UDP"):
                out.entries.add((NODE_PORT_TCP if proto == "TCP" else NODE_PORT_UDP, str(svc.node_port)))
                if svc.external_policy_local:
                    out.entries.add((NODE_PORT_LOCAL_TCP if proto == "TCP" else NODE_PORT_LOCAL_UDP,
                                     str(svc.node_port)))
            for ip in cfg.nodeport_addresses:
                add_vs(ip, svc.node_port, svc.external_policy_local)
        if svc.health_check_node_port:
            out.entries.add((HEALTH_CHECK_NODE_PORT, str(svc.health_check_node_port)))
    for ip in out.bind:
        out.entries.add((IPVS_IPS, ip))
    return out


def cluster_ip_destinations(cfg: IpvsConfig, service: Mapping, slices: Iterable[Mapping]
                            ) -> dict[VSKey, frozenset[RealServer]]:
    """The ClusterIP virtual servers ``cfg.node_name``'s proxy makes for one Service (a dict
    from the API) and their real servers, from its EndpointSlices: what ``testbed doctor``
    expects to find in the node's IPVS table."""
    state = ProxyState(cfg.node_name)
    state.update_service(service)
    for es in slices:
        state.update_endpoint_slice(es)
    meta = service.get("metadata") or {}
    nn = (meta.get("namespace") or "default", meta.get("name") or "")
    contribution = service_contribution(cfg, state, nn)
    cluster_ips = {info.cluster_ip for info in state.ports_of(nn).values()}
    return {key: contribution.destinations[key] for key in contribution.virtual_servers
            if key.address in cluster_ips}


# ----------------------------------------------------------------------------- the sum

@dataclass
class Delta:
    """Kernel changes one update implies (computed from contributions, not from the kernel)."""

    add_vs: dict[VSKey, VirtualServer] = field(default_factory=dict)     # new or changed settings
    update_vs: set[VSKey] = field(default_factory=set)                   # of add_vs: existing ones
    del_vs: set[VSKey] = field(default_factory=set)
    add_dest: dict[VSKey, set[RealServer]] = field(default_factory=dict)
    del_dest: dict[VSKey, set[RealServer]] = field(default_factory=dict)
    # destinations the kernel holds with another weight (e.g. 0 while draining): set, not re-added
    reweight_dest: dict[VSKey, set[RealServer]] = field(default_factory=dict)
    bind: set[str] = field(default_factory=set)
    unbind: set[str] = field(default_factory=set)
    add_entries: set[tuple[str, str]] = field(default_factory=set)
    del_entries: set[tuple[str, str]] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.add_vs or self.del_vs or self.add_dest or self.del_dest or self.reweight_dest
                    or self.bind or self.unbind or self.add_entries or self.del_entries)

    def count(self) -> int:
        return (len(self.add_vs) + len(self.del_vs) + sum(map(len, self.add_dest.values()))
                + sum(map(len, self.del_dest.values())) + sum(map(len, self.reweight_dest.values()))
                + len(self.bind) + len(self.unbind)
                + len(self.add_entries) + len(self.del_entries))


class DesiredState:
    """All Services' contributions, kept per Service so a partial sync recomputes only the
    Services that changed; shared entries are reference counted."""

    def __init__(self, cfg: IpvsConfig):
        self.cfg = cfg
        self.by_service: dict[NamespacedName, ServiceContribution] = {}
        self.virtual_servers: dict[VSKey, VirtualServer] = {}
        self.destinations: dict[VSKey, frozenset[RealServer]] = {}
        self._vs_owner: dict[VSKey, NamespacedName] = {}
        self._bind: collections.Counter[str] = collections.Counter()
        self._entries: collections.Counter[tuple[str, str]] = collections.Counter()
        self._out_filter: collections.Counter[tuple[str, str, int]] = collections.Counter()

    # -- views
    @property
    def bound_addresses(self) -> set[str]:
        return set(self._bind)

    def set_entries(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {s.name: set() for s in IPSETS}
        for (name, entry) in self._entries:
            out[name].add(entry)
        return out

    def nonempty_sets(self) -> set[str]:
        return {name for (name, _) in self._entries}

    def out_filter(self) -> list[tuple[str, str, int]]:
        return sorted(self._out_filter)

    # -- updates
    def rebuild(self, state: ProxyState) -> None:
        """Recompute everything (full sync)."""
        self.__init__(self.cfg)
        for nn in state.services():
            self.update(state, nn)

    def update(self, state: ProxyState, nn: NamespacedName, delta: Delta | None = None) -> Delta:
        """Recompute one Service; returns (and accumulates into ``delta``) the kernel changes."""
        delta = Delta() if delta is None else delta
        old = self.by_service.pop(nn, ServiceContribution())
        new = service_contribution(self.cfg, state, nn)
        if not new.empty():
            self.by_service[nn] = new
        # virtual servers and their destinations
        for key in old.virtual_servers.keys() - new.virtual_servers.keys():
            if self._vs_owner.get(key) != nn:
                continue
            del self._vs_owner[key]
            del self.virtual_servers[key]
            self.destinations.pop(key, None)
            was_new = key in delta.add_vs and key not in delta.update_vs
            delta.add_vs.pop(key, None)
            delta.update_vs.discard(key)
            delta.add_dest.pop(key, None)
            delta.del_dest.pop(key, None)
            delta.reweight_dest.pop(key, None)
            if not was_new:
                delta.del_vs.add(key)
        for key, vs in new.virtual_servers.items():
            prev_vs = self.virtual_servers.get(key)
            prev_dests = self.destinations.get(key, frozenset())
            self.virtual_servers[key] = vs
            self._vs_owner[key] = nn
            dests = new.destinations[key]
            self.destinations[key] = dests
            if prev_vs != vs:
                delta.add_vs[key] = vs
                if prev_vs is not None or key in delta.del_vs:
                    delta.update_vs.add(key)
                delta.del_vs.discard(key)
            plus, minus = dests - prev_dests, prev_dests - dests
            if plus:
                delta.add_dest.setdefault(key, set()).update(plus)
                delta.del_dest.get(key, set()).difference_update(plus)
            if minus:
                delta.del_dest.setdefault(key, set()).update(minus)
                delta.add_dest.get(key, set()).difference_update(minus)
        # reference-counted parts
        _recount(self._bind, old.bind, new.bind, delta.bind, delta.unbind)
        _recount(self._entries, old.entries, new.entries, delta.add_entries, delta.del_entries)
        _recount(self._out_filter, old.out_filter, new.out_filter, set(), set())
        return delta


def _recount(counter: collections.Counter, old: set, new: set, added: set, removed: set) -> None:
    for item in old - new:
        counter[item] -= 1
        if counter[item] <= 0:
            del counter[item]
            if item in added:
                added.discard(item)
            else:
                removed.add(item)
    for item in new - old:
        counter[item] += 1
        if counter[item] == 1:
            if item in removed:
                removed.discard(item)
            else:
                added.add(item)


# ----------------------------------------------------------------------------- graceful termination

# upstream rsCheckDeleteInterval: how often real servers at weight 0 are checked for connections
GRACEFUL_CHECK_INTERVAL = 60.0

RSKey = tuple[VSKey, str, int]   # (virtual server, real server address, port)


def graceful_termination_needed(protocol: str) -> bool:
    """Upstream ``IsRsGracefulTerminationNeeded``: a UDP or SCTP real server is deleted at once
    (``expire_nodest_conn=1`` expires its connections on their next packet); a TCP one drains."""
    return protocol not in ("UDP", "SCTP")


@dataclass
class Retirement:
    """What becomes of real servers that leave their virtual server."""

    delete: dict[VSKey, set[RealServer]] = field(default_factory=dict)
    quiesce: dict[VSKey, set[RealServer]] = field(default_factory=dict)   # weight 0 until drained


def plan_retirement(leaving: Mapping[VSKey, Iterable[RealServer]], conns: Mapping[RSKey, int]) -> Retirement:
    """Upstream ``GracefulDeleteRS`` for each leaving real server: deleted at once if its
    protocol needs no draining or no connection uses it (``conns``: active + inactive, as the
    kernel counts them), else set to weight 0 (no new connection is scheduled to it, the
    established ones go on) and deleted once drained. One the kernel does not hold (no entry
    in ``conns``) is left alone."""
    out = Retirement()
    for key, dests in leaving.items():
        for rs in dests:
            if not graceful_termination_needed(key.protocol):
                out.delete.setdefault(key, set()).add(rs)
                continue
            n = conns.get((key, rs.address, rs.port))
            if n is None:
                continue
            if n == 0:
                out.delete.setdefault(key, set()).add(rs)
            else:
                out.quiesce.setdefault(key, set()).add(RealServer(rs.address, rs.port, 0))
    return out


class GracefulList:
    """Real servers at weight 0 waiting for their connections to end (upstream's
    ``graceTerminateRSList``), by virtual server."""

    def __init__(self) -> None:
        self._by_vs: dict[VSKey, set[tuple[str, int]]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._by_vs.values()))

    def __contains__(self, item: RSKey) -> bool:
        key, address, port = item
        return (address, port) in self._by_vs.get(key, ())

    def virtual_servers(self) -> list[VSKey]:
        return sorted(self._by_vs)

    def add(self, key: VSKey, rs: RealServer) -> None:
        self._by_vs.setdefault(key, set()).add((rs.address, rs.port))

    def discard(self, key: VSKey, address: str, port: int) -> None:
        pending = self._by_vs.get(key)
        if pending is not None:
            pending.discard((address, port))
            if not pending:
                del self._by_vs[key]

    def forget(self, key: VSKey) -> None:
        self._by_vs.pop(key, None)

    def drained(self, key: VSKey, kernel: Mapping[RealServer, int] | None) -> set[RealServer]:
        """Upstream ``tryDeleteRs`` for one virtual server, given its real servers in the kernel
        with their connection counts (None: the virtual server is gone): the pending real
        servers to delete now. Those deleted or no longer in the kernel leave the list."""
        pending = self._by_vs.get(key, set())
        if kernel is None:
            self.forget(key)
            return set()
        present = {(rs.address, rs.port): (rs, n) for rs, n in kernel.items()}
        out = set()
        for address, port in sorted(pending):
            rs, n = present.get((address, port), (None, 0))
            if rs is None:
                self.discard(key, address, port)
            elif n == 0 or not graceful_termination_needed(key.protocol):
                out.add(rs)
                self.discard(key, address, port)
        return out


# ----------------------------------------------------------------------------- iptables

NAT_CHAINS = ("KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ")
FILTER_CHAINS = ("KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
                 "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER")

# (table, builtin chain, kube chain, comment): EnsureRule(Prepend) each full sync
JUMP_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules"),
    ("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-NODE-PORT", "kubernetes health check rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "INPUT", "KUBE-IPVS-FILTER", "kubernetes ipvs access filter"),
    ("filter", "OUTPUT", "KUBE-IPVS-OUT-FILTER", "kubernetes ipvs access filter"),
)


def jump_rule_text(src: str, dst: str, comment: str) -> str:
    """The rule as ``iptables-save`` prints it (without ``-A``/``-I CHAIN``)."""
    return f'-m comment --comment "{comment}" -j {dst}'


# upstream's ipsetWithIptablesChain: (set, table, from chain, to chain, match type, protocol match)
IPSET_CHAINS: tuple[tuple[str, str, str, str, str, str], ...] = (
    (LOOP_BACK, "nat", "KUBE-POSTROUTING", "MASQUERADE", "dst,dst,src", ""),
    (LOAD_BALANCER, "nat", "KUBE-SERVICES", "KUBE-LOAD-BALANCER", "dst,dst", ""),
    (LOAD_BALANCER_LOCAL, "nat", "KUBE-LOAD-BALANCER", "RETURN", "dst,dst", ""),
    (NODE_PORT_LOCAL_TCP, "nat", "KUBE-NODE-PORT", "RETURN", "dst", "tcp"),
    (NODE_PORT_TCP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "tcp"),
    (NODE_PORT_LOCAL_UDP, "nat", "KUBE-NODE-PORT", "RETURN", "dst", "udp"),
    (NODE_PORT_UDP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "udp"),
    (NODE_PORT_LOCAL_SCTP, "nat", "KUBE-NODE-PORT", "RETURN", "dst,dst", "sctp"),
    (NODE_PORT_SCTP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst,dst", "sctp"),
    (LOAD_BALANCER_FW, "filter", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL", "dst,dst", ""),
    (LOAD_BALANCER_SOURCE_CIDR, "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
    (LOAD_BALANCER_SOURCE_IP, "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
)


def _c(name: str) -> str:
    return f'-m comment --comment "{SET_BY_NAME[name].comment}"'


def render_iptables(cfg: IpvsConfig, nonempty: set[str], out_filter: Iterable[tuple[str, str, int]] = (),
                    jump_rules: Iterable[tuple[str, str, str, str]] = ()) -> str:
    """Upstream ``writeIptablesRules()`` as one ``iptables-restore --noflush`` input (nat, then
    filter). ``jump_rules`` (missing ``JUMP_RULES``) are inserted with ``-I`` at the end of
    their table, in order, as ``EnsureRule(Prepend)`` would."""
    nat: list[str] = []
    filt: list[str] = []
    mark = cfg.mark
    nat.append("-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN")
    for name, table, src, dst, match, proto in IPSET_CHAINS:
        if name not in nonempty:
            continue
        p = f"-p {proto} " if proto else ""
        line = f"-A {src} {p}{_c(name)} -m set --match-set {name} {match} -j {dst}"
        (nat if table == "nat" else filt).append(line)
    if CLUSTER_IP in nonempty:
        base = f"-A KUBE-SERVICES {_c(CLUSTER_IP)} -m set --match-set {CLUSTER_IP}"
        if cfg.masquerade_all:
            nat.append(f"{base} dst,dst -j KUBE-MARK-MASQ")
        elif cfg.cluster_cidr:
            nat.append(f"{base} dst,dst ! -s {cfg.cluster_cidr} -j KUBE-MARK-MASQ")
        else:
            nat.append(f"{base} src,dst -j KUBE-MARK-MASQ")
    if EXTERNAL_IP in nonempty:
        base = f"-A KUBE-SERVICES {_c(EXTERNAL_IP)} -m set --match-set {EXTERNAL_IP} dst,dst"
        nat.append(f"{base} -j KUBE-MARK-MASQ")
        nat.append(f"{base} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")
        nat.append(f"{base} -m addrtype --dst-type LOCAL -j ACCEPT")
    if EXTERNAL_IP_LOCAL in nonempty:
        base = f"-A KUBE-SERVICES {_c(EXTERNAL_IP_LOCAL)} -m set --match-set {EXTERNAL_IP_LOCAL} dst,dst"
        nat.append(f"{base} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")
        nat.append(f"{base} -m addrtype --dst-type LOCAL -j ACCEPT")
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    nat.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
    filt.append("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP")
    for ip, proto, port in sorted(out_filter):
        filt.append(f"-A KUBE-IPVS-OUT-FILTER -s {ip} -m ipvs --vaddr {ip} --vproto {proto.lower()} "
                    f"--vport {port} -j DROP")
    for name in (CLUSTER_IP, LOAD_BALANCER):
        if name in nonempty:
            nat.append(f"-A KUBE-SERVICES -m set --match-set {name} dst,dst -j ACCEPT")
    filt.append(f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT')
    filt.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
                "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    filt.append(f"-A KUBE-NODE-PORT {_c(HEALTH_CHECK_NODE_PORT)} -m set --match-set {HEALTH_CHECK_NODE_PORT} dst -j ACCEPT")
    for name in (LOAD_BALANCER, CLUSTER_IP, EXTERNAL_IP, EXTERNAL_IP_LOCAL):
        filt.append(f"-A KUBE-IPVS-FILTER -m set --match-set {name} dst,dst -j RETURN")
    filt.append(f"-A KUBE-IPVS-FILTER -m set --match-set {HEALTH_CHECK_NODE_PORT} dst -j RETURN")
    filt.append(f"-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set {IPVS_IPS} dst -j REJECT")
    nat.append(f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN")
    nat.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}")
    nat.append('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
               + (" --random-fully" if cfg.random_fully else ""))
    nat.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}")

    jumps = list(jump_rules)
    out = ["*nat"]
    out += [f":{c} - [0:0]" for c in NAT_CHAINS]
    out += nat
    out += [f"-I {src} {jump_rule_text(src, dst, comment)}" for t, src, dst, comment in jumps if t == "nat"]
    out.append("COMMIT")
    out.append("*filter")
    out += [f":{c} - [0:0]" for c in FILTER_CHAINS]
    out += filt
    out += [f"-I {src} {jump_rule_text(src, dst, comment)}" for t, src, dst, comment in jumps if t == "filter"]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def missing_jump_rules(saved_rules: Mapping[str, Iterable[str]]) -> list[tuple[str, str, str, str]]:
    """``JUMP_RULES`` whose exact ``-A`` line is not in ``iptables-save`` output (table -> lines)."""
    out = []
    for t, src, dst, comment in JUMP_RULES:
        if f"-A {src} {jump_rule_text(src, dst, comment)}" not in set(saved_rules.get(t, ())):
            out.append((t, src, dst, comment))
    return out
