"""The ``iptables-restore --noflush`` input kube-proxy (iptables mode) writes, sync by sync.

A pure re-implementation of upstream ``pkg/proxy/iptables/proxier.go`` ``syncProxyRules``
(commit 531be812, see ``/work/shared/reference/kube-proxy-iptables.md``):

- same rule text, same emission order per buffer (filter chains, filter rules, nat chains, nat
  rules), services in ``(namespace, name, port name, protocol)`` order where upstream iterates a
  Go map (so any order is one upstream could have produced);
- same sync state: the first sync and any sync after ``force_full_sync()``,
  ``set_topology_labels()``, ``restore_failed()`` or ``full_sync_period`` is a full sync; the
  others are partial syncs that only write the KUBE-SVC/SVL/EXT/FW/SEP chains of services whose
  Service or EndpointSlices changed;
- stale service chains (known to exist in the kernel, no longer active) are flushed and deleted
  with ``:CHAIN - [0:0]`` + ``-X CHAIN``. The renderer tracks which chains exist from what it
  wrote (like upstream's ``iptables-save -t nat``); a caller that can run ``iptables-save`` may
  pass the real set to ``sync(existing_nat_chains=...)``.

Per-service text is cached between syncs (each Service's top-level, filter and declaration
lines; its chain rules only until the sync that rendered them is done, a full sync renders them
again), so a partial sync costs little more than joining the cached pieces.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from testbed.proxy.iptables.names import (
    FILTER_CHAINS,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_SERVICES,
    NAT_CHAINS,
    NFACCT_CT_STATE_INVALID,
    is_service_chain_name,
)
from testbed.proxy.iptables.servicechains import Fragment, ServiceRules, chain_line
from testbed.proxy.iptables.sortorder import sort_restore_text
from testbed.proxy.model import IPV4, IPV6, NamespacedName, parse_cidr, parse_ip
from testbed.proxy.tracker import ProxyState, StateChange

LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000
_CHUNK = 128   # services per cached text block
NODEPORTS_LAST_RULE_COMMENT = \
    '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'


@dataclass(frozen=True)
class LocalDetector:
    """``--detect-local-mode``: which traffic counts as coming from a local pod.

    ``mode`` is ``ClusterCIDR``/``NodeCIDR`` (``value`` = CIDR), ``BridgeInterface``
    (``value`` = bridge name), ``InterfaceNamePrefix`` (``value`` = prefix) or ``None``.
    """

    mode: str = "ClusterCIDR"
    value: str = ""

    @property
    def implemented(self) -> bool:
        return self.mode not in ("", "None", None) and bool(self.value)

    @property
    def _match(self) -> str:
        if self.mode in ("ClusterCIDR", "NodeCIDR"):
            return f"-s {self.value}"
        if self.mode == "BridgeInterface":
            return f"-i {self.value}"
        if self.mode == "InterfaceNamePrefix":
            return f"-i {self.value}+"
        raise ValueError(f"unknown local detector mode {self.mode!r}")

    def if_local(self) -> str:
        return self._match

    def if_not_local(self) -> str:
        return "! " + self._match


@dataclass(frozen=True)
class IptablesConfig:
    """The proxier's parameters (``NewProxier`` arguments and probed host features)."""

    node_name: str
    node_ips: tuple[str, ...] = ()          # node_ips[0] is the proxier's nodeIP
    ip_family: str = IPV4
    local_detector: LocalDetector | None = None
    masquerade_all: bool = False
    masquerade_bit: int = 14
    mark_format: str = "padded"             # "padded": 0x00004000 (kube-proxy), "short": 0x4000
    localhost_nodeports: bool = True
    nodeport_addresses: tuple[str, ...] = ()  # CIDRs; empty = all local addresses
    conntrack_tcp_be_liberal: bool = False
    nfacct_ct_state_invalid: bool = False   # nfacct counter ct_state_invalid_dropped_pkts exists
    nfacct_localhost_nodeports: bool = False  # nfacct counter localhost_nps_accepted_pkts exists
    random_fully: bool = False              # iptables >= 1.6.2
    sync_period: float = 30.0
    full_sync_period: float = 3600.0        # proxyutil.FullSyncPeriod
    prefer_same_traffic_distribution: bool = True  # feature gate (node hints)

    @property
    def masquerade_mark(self) -> str:
        value = 1 << self.masquerade_bit
        if self.mark_format == "short":
            return hex(value)
        if self.mark_format == "padded":
            return "0x%08x" % value           # Go's %#08x
        raise ValueError(f"unknown mark_format {self.mark_format!r}")

    @property
    def node_ip(self) -> str | None:
        return self.node_ips[0] if self.node_ips else None


@dataclass(frozen=True)
class _NodePortAddresses:
    """Upstream ``proxyutil.NodePortAddresses`` for one family."""

    match_all: bool
    cidrs: tuple
    contains_ipv4_loopback: bool

    @classmethod
    def build(cls, family: str, cidr_strings: tuple[str, ...]) -> "_NodePortAddresses":
        nets = []
        for text in cidr_strings:
            net = parse_cidr(text)
            if net is not None and (net.version == 4) == (family == IPV4):
                nets.append(net)
        if not nets:
            nets = [parse_cidr("0.0.0.0/0" if family == IPV4 else "::/0")]
        cidrs, loopback, match_all = [], False, False
        for net in nets:
            if net.version == 4 and (net.network_address.is_loopback
                                     or parse_ip("127.0.0.1") in net):
                loopback = True
            if net.prefixlen == 0:
                cidrs, match_all = [net], True
                break
            cidrs.append(net)
        return cls(match_all, tuple(cidrs), loopback)


@dataclass
class SyncResult:
    """One sync: the restore input plus what it did."""

    text: str                              # emission order, as kube-proxy pipes it
    full: bool
    written_chains: list[str]              # per-service nat chains (re)written, emission order
    deleted_chains: list[str]              # stale chains flushed and deleted (-X)
    updated_services: set[NamespacedName]
    changes: StateChange
    large_cluster_mode: bool
    # partial syncs: the chains of each updated Service, which refer only to each other and to
    # fixed chains (``apply.split_restore`` may restore them ahead of the rest)
    written_groups: list[tuple[str, ...]] = field(default_factory=list)

    def sorted_text(self) -> str:
        """The text in upstream's test order (see ``sortorder``)."""
        return sort_restore_text(self.text)


class IptablesRenderer:
    """Keeps upstream's sync state across calls; ``sync()`` returns each restore input."""

    def __init__(self, config: IptablesConfig) -> None:
        self.config = config
        self._mark = config.masquerade_mark
        self._ipv6 = config.ip_family == IPV6
        self._npa = _NodePortAddresses.build(config.ip_family, tuple(config.nodeport_addresses))
        # NewProxier: localhost NodePorts only if nodePortAddresses include 127.0.0.1; the
        # dual-stack IPv6 proxier is always created with localhostNodePorts=false.
        self.localhost_nodeports = (config.localhost_nodeports and not self._ipv6
                                    and self._npa.contains_ipv4_loopback)
        self._rules = ServiceRules(config, self.localhost_nodeports)

        self._need_full = True
        self._last_full: float | None = None
        self._last_cleanup: float | None = None
        self._existing: set[str] = set()
        self._rollback: tuple[list[str], list[str]] | None = None
        self._large: bool | None = None
        self._frags: dict[NamespacedName, Fragment] = {}
        self._active: set[str] = set()
        self._order_set: set[NamespacedName] = set()
        self._chunk_names: list[list[NamespacedName]] = []   # sorted, ~_CHUNK names each
        self._chunk_first: list[NamespacedName] = []
        self._chunk_text: list[Fragment | None] = []
        self._fixed = self._render_fixed()

    # ------------------------------------------------------------------ state control
    @property
    def needs_full_sync(self) -> bool:
        return self._need_full

    @property
    def existing_chains(self) -> frozenset[str]:
        """Per-service nat chains the renderer believes exist in the kernel."""
        return frozenset(self._existing)

    @property
    def active_chains(self) -> frozenset[str]:
        """Every per-service nat chain the last sync's rules use."""
        return frozenset(self._active)

    def stale_chains_due(self, now: float) -> int:
        """Chains a sync at ``now`` would delete besides those of the Services it rewrites:
        stale chains earlier syncs left in place (a large cluster sweeps them once per
        ``sync_period``, as upstream), which a sweep deletes all at once."""
        large, last = self._large, self._last_cleanup
        if large and last is not None and now - last <= self.config.sync_period:
            return 0
        return sum(1 for c in self._existing if c not in self._active)

    def force_full_sync(self) -> None:
        """``forceSyncProxyRules`` (e.g. the canary chain disappeared)."""
        self._need_full = True

    def set_topology_labels(self, labels: Mapping[str, str]) -> None:
        """``OnTopologyChange``: new node labels (zone) and a full sync."""
        self._rules.topology_labels = dict(labels)
        self._need_full = True
        self._invalidate_all()

    def restore_failed(self) -> None:
        """Report that the last ``sync()``'s restore failed: the kernel kept its previous
        chains, and the next sync must be a full one (upstream's ``needFullSync = true``)."""
        if self._rollback is not None:
            added, deleted = self._rollback
            self._existing.difference_update(added)
            self._existing.update(deleted)
            self._rollback = None
        self._need_full = True

    def _invalidate_all(self) -> None:
        self._frags.clear()
        self._active.clear()
        self._chunk_text = [None] * len(self._chunk_names)

    # ------------------------------------------------------------------ sync
    def sync(self, state: ProxyState, *, changes: StateChange | None = None,
             full: bool | None = None, now: float | None = None,
             existing_nat_chains: set[str] | frozenset[str] | None = None,
             on_chunk: Callable[[str], object] | None = None) -> SyncResult:
        """Render one sync (assumed to succeed; call ``restore_failed()`` if it did not).

        ``changes`` defaults to ``state.checkout()``; pass it if you checked out yourself.
        ``full`` forces (True) or forbids (False) a full sync; default: upstream's rule.
        ``now`` is a monotonic time in seconds (tests); ``existing_nat_chains`` overrides the
        tracked kernel chains (e.g. parsed from ``iptables-save -t nat``).
        ``on_chunk`` (full syncs only) is called with each chunk's nat chain declarations and
        rules as soon as the chunk is rendered, in emission order, so a caller can stream them
        into ``iptables-restore`` while the rest renders (see ``nat_prelude``/``nat_tail``);
        the result's ``text`` is then the filter table only (the nat table is ~30 MB at 100k
        endpoints: it is not kept twice).
        """
        cfg = self.config
        if changes is None:
            changes = state.checkout()
        if now is None:
            now = time.monotonic()
        do_full = self._need_full or self._last_full is None or \
            (now - self._last_full) > cfg.full_sync_period
        if full is not None:
            do_full = full
        updated = changes.updated_services

        # large cluster mode depends on all endpoints of all service ports
        large = state.total_endpoints() > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
        if large != self._large:
            self._large = large
            self._invalidate_all()

        # refresh order, fragments and chunks of changed services
        self._refresh(state, updated)

        filter_parts: list[str] = [self._fixed["filter_head"]]
        nat_chain_parts: list[str] = [self._fixed["nat_chains"]]
        nat_rule_parts: list[str] = [self._fixed["nat_head"]]
        written: list[str] = []
        groups: list[tuple[str, ...]] = []
        frags = self._frags
        dirty_chunks = set()
        if not do_full:
            for nn in updated:
                if nn in self._order_set:
                    dirty_chunks.add(self._chunk_index(nn))
        for k, names in enumerate(self._chunk_names):
            chunk = self._chunk_text[k]
            if chunk is None:
                chunk = self._chunk_text[k] = self._build_chunk(state, names, large)
            filter_parts.append(chunk.filter_rules)
            if do_full:
                nat_all = "".join(self._nat_all(state, nn, large) for nn in names)
                written.extend(chunk.chains)
                if on_chunk is not None:
                    on_chunk(chunk.chain_lines + nat_all)
                else:
                    nat_rule_parts.append(nat_all)
                    nat_chain_parts.append(chunk.chain_lines)
            elif k not in dirty_chunks:
                nat_rule_parts.append(chunk.nat_top)
            else:
                for nn in names:
                    frag = frags[nn]
                    if nn in updated:
                        nat_rule_parts.append(frag.nat_all)
                        nat_chain_parts.append(frag.chain_lines)
                        written.extend(frag.chains)
                        groups.append(frag.chains)
                    else:
                        nat_rule_parts.append(frag.nat_top)

        # stale chains
        deleted: list[str] = []
        if not large or self._last_cleanup is None or \
                (now - self._last_cleanup) > cfg.sync_period:
            existing = self._existing if existing_nat_chains is None else set(existing_nat_chains)
            deleted = sorted(c for c in existing - self._active if is_service_chain_name(c))
            for chain in deleted:
                nat_chain_parts.append(chain_line(chain))
                nat_rule_parts.append(f"-X {chain}\n")
            self._last_cleanup = now

        nat_rule_parts.append(self._fixed["nat_tail"])
        filter_parts.append(self._fixed["filter_tail"])
        # a Service's chain rules are only needed again by a full sync, which renders them anew:
        # kept, they would be most of the proxy's memory (~300 B per endpoint)
        for frag in frags.values():
            frag.nat_all = None
        if on_chunk is not None and do_full:   # the nat table went out chunk by chunk
            text = "".join(filter_parts)
        else:
            text = "".join(filter_parts) + "".join(nat_chain_parts) + "".join(nat_rule_parts) + \
                "COMMIT\n"

        # assume success (restore_failed() rolls back)
        if existing_nat_chains is not None:
            self._existing = {c for c in existing_nat_chains if is_service_chain_name(c)}
        existing = self._existing
        added = [c for c in written if c not in existing]
        existing.update(added)
        existing.difference_update(deleted)
        self._rollback = (added, deleted)
        self._need_full = False
        self._rules.prune(state.total_endpoints(), self._active)
        if do_full:
            self._last_full = now
        return SyncResult(text=text, full=do_full, written_chains=written,
                          deleted_chains=deleted, updated_services=updated, changes=changes,
                          large_cluster_mode=large, written_groups=groups)

    def nat_prelude(self) -> tuple[str, str]:
        """(declarations of the fixed nat chains, the fixed rules written before any service's)."""
        return self._fixed["nat_chains"].removeprefix("*nat\n"), self._fixed["nat_head"]

    @property
    def nat_tail(self) -> str:
        """The fixed nat rules written after every service's (the KUBE-NODEPORTS jump)."""
        return self._fixed["nat_tail"]

    def _nat_all(self, state: ProxyState, nn: NamespacedName, large: bool) -> str:
        text = self._frags[nn].nat_all
        return text if text is not None else self._rules.render_service(state, nn, large).nat_all

    def _drop(self, nn: NamespacedName) -> None:
        frag = self._frags.pop(nn, None)
        if frag is not None:
            self._active.difference_update(frag.chains)

    def _refresh(self, state: ProxyState, updated: set[NamespacedName]) -> None:
        """Drop the cached text of updated services; keep the sorted chunks of names aligned.

        Services are kept in sorted chunks of about ``_CHUNK`` names, each with its joined text
        cached, so a change re-joins one chunk, not the whole ruleset.
        """
        for nn in updated:
            self._drop(nn)
        if len(updated) > 64 or not self._chunk_names:
            self._rebuild_chunks(state)
            return
        for nn in updated:
            present = bool(state.ports_of(nn))
            if present and nn not in self._order_set:
                if not self._chunk_names:
                    self._chunk_names.append([])
                    self._chunk_first.append(nn)
                    self._chunk_text.append(None)
                k = self._chunk_index(nn)
                names = self._chunk_names[k]
                bisect.insort(names, nn)
                self._chunk_first[k] = names[0]
                self._order_set.add(nn)
                self._chunk_text[k] = None
                if len(names) > 2 * _CHUNK:
                    half = len(names) // 2
                    self._chunk_names[k:k + 1] = [names[:half], names[half:]]
                    self._chunk_first[k:k + 1] = [names[0], names[half]]
                    self._chunk_text[k:k + 1] = [None, None]
            elif not present and nn in self._order_set:
                k = self._chunk_index(nn)
                names = self._chunk_names[k]
                names.remove(nn)
                self._order_set.discard(nn)
                if names:
                    self._chunk_first[k] = names[0]
                    self._chunk_text[k] = None
                else:
                    del self._chunk_names[k], self._chunk_first[k], self._chunk_text[k]
            elif present:
                self._chunk_text[self._chunk_index(nn)] = None
        if len(self._order_set) != state.service_count():   # caller skipped a checkout
            self._invalidate_all()
            self._rebuild_chunks(state)

    def _rebuild_chunks(self, state: ProxyState) -> None:
        order = state.services()
        self._order_set = set(order)
        self._chunk_names = [order[i:i + _CHUNK] for i in range(0, len(order), _CHUNK)]
        self._chunk_first = [names[0] for names in self._chunk_names]
        self._chunk_text = [None] * len(self._chunk_names)
        for nn in [nn for nn in self._frags if nn not in self._order_set]:
            self._drop(nn)

    def _chunk_index(self, nn: NamespacedName) -> int:
        return max(bisect.bisect_right(self._chunk_first, nn) - 1, 0)

    def _build_chunk(self, state: ProxyState, names: list[NamespacedName], large: bool
                     ) -> Fragment:
        frags = self._frags
        parts = []
        for nn in names:
            frag = frags.get(nn)
            if frag is None:
                frag = frags[nn] = self._rules.render_service(state, nn, large)
                self._active.update(frag.chains)
            parts.append(frag)
        # no joined nat_all: it is most of the text and would be held twice; full syncs join
        # it from the fragments when they need it
        return Fragment("".join(f.filter_rules for f in parts),
                         "".join(f.nat_top for f in parts),
                         "",
                         "".join(f.chain_lines for f in parts),
                         tuple(c for f in parts for c in f.chains))

    # ------------------------------------------------------------------ fixed rules
    def _render_fixed(self) -> dict[str, str]:
        cfg, mark = self.config, self._mark
        filter_chains = "".join(chain_line(c) for c in FILTER_CHAINS)
        filter_first = ""
        if not self._ipv6 and self.localhost_nodeports:
            filter_chains += chain_line(KUBE_FIREWALL)
            filter_first = (
                f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections"'
                " -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack"
                " ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n")
        filter_tail = ""
        if not cfg.conntrack_tcp_be_liberal:
            nfacct = (f" -m nfacct --nfacct-name {NFACCT_CT_STATE_INVALID}"
                      if cfg.nfacct_ct_state_invalid else "")
            filter_tail += f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j DROP\n"
        filter_tail += (
            f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules"'
            f" -m mark --mark {mark}/{mark} -j ACCEPT\n"
            f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule"'
            " -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
            "COMMIT\n")
        nat_head = (
            f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN\n"
            f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}\n"
            f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT"'
            f" -j MASQUERADE{' --random-fully' if cfg.random_fully else ''}\n"
            f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}\n")
        if self._npa.match_all:
            dest = "-m addrtype --dst-type LOCAL"
            if self._ipv6:
                dest += " ! -d ::1/128"
            elif not self.localhost_nodeports:
                dest += " ! -d 127.0.0.0/8"
            nat_tail = f"-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_LAST_RULE_COMMENT}" \
                       f" {dest} -j {KUBE_NODEPORTS}\n"
        else:
            nat_tail = ""
            for ip in self._nodeport_ips():
                if ip.is_loopback and (self._ipv6 or not self.localhost_nodeports):
                    continue
                nat_tail += f"-A {KUBE_SERVICES} -m comment --comment" \
                            f" {NODEPORTS_LAST_RULE_COMMENT} -d {ip} -j {KUBE_NODEPORTS}\n"
        return {
            "filter_head": "*filter\n" + filter_chains + filter_first,
            "filter_tail": filter_tail,
            "nat_chains": "*nat\n" + "".join(chain_line(c) for c in NAT_CHAINS),
            "nat_head": nat_head,
            "nat_tail": nat_tail,
        }

    def _nodeport_ips(self) -> list:
        """``GetNodeIPs``: local addresses inside nodePortAddresses (loopback, then node IPs)."""
        candidates = ["::1" if self._ipv6 else "127.0.0.1", *self.config.node_ips]
        out, seen = [], set()
        for text in candidates:
            ip = parse_ip(text)
            if ip is None or str(ip) in seen or (ip.version == 6) != self._ipv6:
                continue
            if any(ip in net for net in self._npa.cidrs):
                out.append(ip)
                seen.add(str(ip))
        return out
