"""The chains and rules of one Service in iptables mode, as upstream ``syncProxyRules`` writes
them inside its per-Service loop: KUBE-SVC/SVL/EXT/FW/SEP chains, their rules, and the
Service's KUBE-SERVICES/KUBE-NODEPORTS/KUBE-EXTERNAL-SERVICES/KUBE-PROXY-FIREWALL rules.

``ServiceRules.render_service`` returns one Service's ``Fragment``; the table assembly around
it (fixed rules, caching, full/partial syncs) is ``render.IptablesRenderer``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from testbed.proxy.iptables.names import (
    KUBE_EXTERNAL_SERVICES,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    NFACCT_LOCALHOST_NODEPORTS,
    ServiceChainNames,
    endpoint_chain_name,
    service_chain_names,
)
from testbed.proxy.model import (
    IPV6,
    EndpointInfo,
    NamespacedName,
    ServicePortInfo,
    ServicePortName,
    categorize_endpoints,
    parse_cidr,
    parse_ip,
)
from testbed.proxy.tracker import ProxyState

if TYPE_CHECKING:   # render imports this module for the renderer it assembles
    from testbed.proxy.iptables.render import IptablesConfig


def chain_line(chain: str) -> str:
    """``utiliptables.MakeChainLine``."""
    return f":{chain} - [0:0]\n"


def compute_probability(n: int) -> str:
    """Upstream ``computeProbability``: ``%0.10f`` of ``1/n``."""
    return "%0.10f" % (1.0 / n)



@dataclass
class Fragment:
    """Rendered text of one Service (all its ports), for one sync configuration."""

    filter_rules: str
    nat_top: str          # KUBE-SERVICES / KUBE-NODEPORTS rules: written on every sync
    nat_all: str | None   # top rules interleaved with per-service chain rules (written syncs);
                          # the renderer drops it after the sync that rendered it
    chain_lines: str
    chains: tuple[str, ...]


class ServiceRules:
    """Renders Services one at a time for one proxy configuration; keeps the chain names and
    probabilities it computed, which stay the same from sync to sync."""

    def __init__(self, config: IptablesConfig, localhost_nodeports: bool) -> None:
        self.config = config
        self.localhost_nodeports = localhost_nodeports
        self._ipv6 = config.ip_family == IPV6
        det = config.local_detector
        self._detector = det if det is not None and det.implemented else None
        self._node_ip = parse_ip(config.node_ip) if config.node_ip else None
        self.topology_labels: dict[str, str] = {}
        self._names: dict[ServicePortName, ServiceChainNames] = {}
        # per service port, endpoint -> KUBE-SEP- name (nested: a (port, endpoint) key tuple
        # per endpoint would be 56 bytes more each)
        self._sep: dict[ServicePortName, dict[str, str]] = {}
        self._sep_count = 0
        self._prob = ["<bad value>"]

    def prune(self, total_endpoints: int, active: set[str]) -> None:
        """Forget the endpoint chain names of endpoints that are gone: without this the cache
        keeps every endpoint ever seen (25 MB per 100k)."""
        if self._sep_count > 2 * max(total_endpoints, 1024):
            kept = {spn: {e: n for e, n in names.items() if n in active} for spn, names in self._sep.items()}
            self._sep = {spn: names for spn, names in kept.items() if names}
            self._sep_count = sum(len(names) for names in self._sep.values())

    def probability(self, n: int) -> str:
        prob = self._prob
        while len(prob) <= n:
            prob.append(compute_probability(len(prob)))
        return prob[n]

    def sep_chain(self, spn: ServicePortName, proto: str, ep: EndpointInfo) -> str:
        names = self._sep.get(spn)
        if names is None:
            names = self._sep[spn] = {}
        name = names.get(ep.endpoint)
        if name is None:
            name = names[ep.endpoint] = endpoint_chain_name(str(spn), proto, ep.endpoint)
            self._sep_count += 1
        return name

    def render_service(self, state: ProxyState, nn: NamespacedName, large: bool) -> Fragment:
        ports = state.ports_of(nn)
        filt, top, full, lines, chains = [], [], [], [], []
        for spn in sorted(ports, key=lambda s: (s.port, s.protocol)):
            self.render_port(ports[spn], state.endpoints_map.get(spn, ()), large,
                              filt, top, full, lines, chains)
        return Fragment("".join(filt), "".join(top), "".join(full), "".join(lines),
                         tuple(chains))

    def render_port(self, svc: ServicePortInfo, all_eps, large: bool, filt: list, top: list,
                     full: list, lines: list, chains: list) -> None:
        cfg = self.config
        spn = svc.name
        spn_s = str(spn)
        proto = svc.protocol.lower()
        names = self._names.get(spn)
        if names is None:
            names = self._names[spn] = service_chain_names(spn_s, proto)
        cluster_eps, local_eps, reachable, has_eps = categorize_endpoints(
            all_eps, svc, cfg.node_name, self.topology_labels,
            prefer_same_node=cfg.prefer_same_traffic_distribution)

        svc_chain, svl_chain, ext_chain, fw_chain = names
        uses_cluster_chain = bool(cluster_eps) and svc.uses_cluster_endpoints
        uses_local_chain = bool(local_eps) and svc.uses_local_endpoints

        internal_chain, has_internal = svc_chain, has_eps
        if svc.internal_policy_local:
            internal_chain = svl_chain
            if not local_eps:
                has_internal = False
        external_policy_chain, has_external = svc_chain, has_eps
        if svc.external_policy_local:
            external_policy_chain = svl_chain
            if not local_eps:
                has_external = False
        uses_ext_chain = has_eps and svc.externally_accessible
        lb_chain = ext_chain
        uses_fw = has_eps and bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
        if uses_fw:
            lb_chain = fw_chain

        int_target = int_comment = ext_target = ext_comment = ""
        if not has_eps:
            int_target = ext_target = "REJECT"
            int_comment = ext_comment = f'"{spn_s} has no endpoints"'
        else:
            if not has_internal:
                int_target, int_comment = "DROP", f'"{spn_s} has no local endpoints"'
            if not has_external:
                ext_target, ext_comment = "DROP", f'"{spn_s} has no local endpoints"'

        pm = f"-m {proto} -p {proto}"
        port = svc.port
        cip = svc.cluster_ip
        port_top: list[str] = []

        # cluster IP
        if has_internal:
            port_top.append(f'-A {KUBE_SERVICES} -m comment --comment "{spn_s} cluster IP"'
                            f" {pm} -d {cip} --dport {port} -j {internal_chain}\n")
        else:
            filt.append(f"-A {KUBE_SERVICES} -m comment --comment {int_comment}"
                        f" {pm} -d {cip} --dport {port} -j {int_target}\n")
        # external IPs
        for eip in svc.external_ips:
            if has_eps:
                port_top.append(f'-A {KUBE_SERVICES} -m comment --comment "{spn_s} external IP"'
                                f" {pm} -d {eip} --dport {port} -j {ext_chain}\n")
            if not has_external:
                filt.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment}"
                            f" {pm} -d {eip} --dport {port} -j {ext_target}\n")
        # load-balancer ingress
        for lbip in svc.load_balancer_vips:
            if has_eps:
                port_top.append(f'-A {KUBE_SERVICES} -m comment --comment "{spn_s} loadbalancer IP"'
                                f" {pm} -d {lbip} --dport {port} -j {lb_chain}\n")
            if uses_fw:
                filt.append(f"-A {KUBE_PROXY_FIREWALL} -m comment --comment"
                            f' "{spn_s} traffic not accepted by {fw_chain}"'
                            f" {pm} -d {lbip} --dport {port} -j DROP\n")
        if not has_external:
            for lbip in svc.load_balancer_vips:
                filt.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment}"
                            f" {pm} -d {lbip} --dport {port} -j {ext_target}\n")
        # node port
        if svc.node_port:
            np = svc.node_port
            if has_eps:
                if self.localhost_nodeports and not self._ipv6 and cfg.nfacct_localhost_nodeports:
                    port_top.append(f"-A {KUBE_NODEPORTS} -m comment --comment {spn_s} {pm}"
                                    f" -d 127.0.0.0/8 --dport {np}"
                                    f" -m nfacct --nfacct-name {NFACCT_LOCALHOST_NODEPORTS}"
                                    f" -j {ext_chain}\n")
                port_top.append(f"-A {KUBE_NODEPORTS} -m comment --comment {spn_s} {pm}"
                                f" --dport {np} -j {ext_chain}\n")
            if not has_external:
                filt.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment}"
                            f" -m addrtype --dst-type LOCAL {pm} --dport {np} -j {ext_target}\n")
        # health check node port
        if svc.health_check_node_port:
            filt.append(f'-A {KUBE_NODEPORTS} -m comment --comment "{spn_s} health check node port"'
                        f" -m tcp -p tcp --dport {svc.health_check_node_port} -j ACCEPT\n")

        top.extend(port_top)
        full.extend(port_top)
        rules: list[str] = []

        # internal traffic: masquerade off-cluster sources
        if has_internal:
            match = f'-m comment --comment "{spn_s} cluster IP" {pm} -d {cip} --dport {port}'
            if cfg.masquerade_all:
                rules.append(f"-A {internal_chain} {match} -j {KUBE_MARK_MASQ}\n")
            elif self._detector is not None:
                rules.append(f"-A {internal_chain} {match} {self._detector.if_not_local()}"
                             f" -j {KUBE_MARK_MASQ}\n")

        # external traffic chain
        if uses_ext_chain:
            lines.append(chain_line(ext_chain))
            chains.append(ext_chain)
            if not svc.external_policy_local:
                rules.append(f'-A {ext_chain} -m comment --comment "masquerade traffic for {spn_s}'
                             f' external destinations" -j {KUBE_MARK_MASQ}\n')
            else:
                if self._detector is not None:
                    rules.append(f'-A {ext_chain} -m comment --comment "pod traffic for {spn_s}'
                                 f' external destinations" {self._detector.if_local()}'
                                 f" -j {svc_chain}\n")
                rules.append(f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for'
                             f' {spn_s} external destinations" -m addrtype --src-type LOCAL'
                             f" -j {KUBE_MARK_MASQ}\n")
                rules.append(f'-A {ext_chain} -m comment --comment "route LOCAL traffic for'
                             f' {spn_s} external destinations" -m addrtype --src-type LOCAL'
                             f" -j {svc_chain}\n")
            if has_external:
                rules.append(f"-A {ext_chain} -j {external_policy_chain}\n")

        # load-balancer source ranges
        if uses_fw:
            lines.append(chain_line(fw_chain))
            chains.append(fw_chain)
            head = f'-A {fw_chain} -m comment --comment "{spn_s} loadbalancer IP"'
            allow_from_node = False
            for cidr in svc.load_balancer_source_ranges:
                rules.append(f"{head} -s {cidr} -j {ext_chain}\n")
                net = parse_cidr(cidr)
                if self._node_ip is not None and net is not None and \
                        net.version == self._node_ip.version and self._node_ip in net:
                    allow_from_node = True
            if allow_from_node:
                for lbip in svc.load_balancer_vips:
                    rules.append(f"{head} -s {lbip} -j {ext_chain}\n")
            rules.append(f'-A {fw_chain} -m comment --comment "other traffic to {spn_s} will be'
                         f' dropped by KUBE-PROXY-FIREWALL"\n')

        ep_chain = {}
        for ep in reachable:
            ep_chain[ep.endpoint] = self.sep_chain(spn, proto, ep)
        if uses_cluster_chain:
            lines.append(chain_line(svc_chain))
            chains.append(svc_chain)
            self.service_to_endpoints(rules, spn_s, svc, svc_chain, cluster_eps, large, proto)
        if uses_local_chain:
            lines.append(chain_line(svl_chain))
            chains.append(svl_chain)
            self.service_to_endpoints(rules, spn_s, svc, svl_chain, local_eps, large, proto)

        # per-endpoint chains
        comment = "" if large else f" -m comment --comment {spn_s}"
        affinity = svc.session_affinity_client_ip
        for ep in reachable:
            sep = ep_chain[ep.endpoint]
            lines.append(chain_line(sep))
            chains.append(sep)
            rules.append(f"-A {sep}{comment} -s {ep.ip} -j {KUBE_MARK_MASQ}\n")
            recent = f" -m recent --name {sep} --set" if affinity else ""
            rules.append(f"-A {sep}{comment}{recent} {pm} -j DNAT --to-destination"
                         f" {ep.endpoint}\n")
        full.extend(rules)

    def service_to_endpoints(self, rules: list, spn_s: str, svc: ServicePortInfo, chain: str,
                              endpoints, large: bool, proto: str) -> None:
        """``writeServiceToEndpointRules``."""
        spn = svc.name
        if svc.session_affinity_client_ip:
            for ep in endpoints:
                sep = self.sep_chain(spn, proto, ep)
                comment = "" if large else f' -m comment --comment "{spn_s} -> {ep.endpoint}"'
                rules.append(f"-A {chain}{comment} -m recent --name {sep} --rcheck --seconds"
                             f" {svc.sticky_max_age_seconds} --reap -j {sep}\n")
        n = len(endpoints)
        for i, ep in enumerate(endpoints):
            sep = self.sep_chain(spn, proto, ep)
            comment = "" if large else f' -m comment --comment "{spn_s} -> {ep.endpoint}"'
            if i < n - 1:
                rules.append(f"-A {chain}{comment} -m statistic --mode random --probability"
                             f" {self.probability(n - i)} -j {sep}\n")
            else:
                rules.append(f"-A {chain}{comment} -j {sep}\n")
