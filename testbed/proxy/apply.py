"""The pure parts of applying kube-proxy's iptables state (no I/O, unit-tested without root).

- ``restore_error_line`` / ``extract_lines``: find and show the input line ``iptables-restore``
  rejected (upstream ``utiliptables.ParseError`` + ``ExtractLines``);
- ``parse_save``: chains and rules per table from ``iptables-save`` text (the chain names of
  the nat table rebuild the renderer's partial-sync state after a restart, as upstream's
  per-sync ``iptables-save -t nat`` does);
- ``JUMP_RULES`` / ``missing_jump_rules`` / ``add_host_rules``: upstream's
  ``iptablesJumpChains`` + ``iptablesKubeletJumpChains`` (``EnsureChain`` + ``EnsureRule(Prepend)``
  on full syncs) and the ``KUBE-PROXY-CANARY`` chains, folded into the one restore of a full sync;
- ``conntrack_filters``: which UDP conntrack entries to delete after a sync (upstream <= 1.31
  ``deleteEndpointConnections`` + the newly-active / deleted-service cleanup), and
  ``ConntrackFilter.matches`` to select them from a dump;
- ``local_ready_endpoints`` / ``health_check_ports``: the health-check servers' inputs;
- ``trigger_time``: an object's ``endpoints.kubernetes.io/last-change-trigger-time``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple

from testbed.proxy.model import (
    NamespacedName,
    ProxyState,
    ServicePortInfo,
    ServicePortName,
    StateChange,
)

# --------------------------------------------------------------------------- restore errors

# "iptables-restore: line 7 failed: ..." (commit errors; upstream's regexp "line ([1-9]+) failed")
# "iptables-restore v1.8.9 (nf_tables): ...\nError occurred at line: 4" (parse errors)
_LINE_RES = (re.compile(r"line (\d+) failed"), re.compile(r"Error occurred at line: (\d+)"),
             re.compile(r"\bline (\d+)\b"))


def restore_error_line(stderr: str) -> int | None:
    """The 1-based input line ``iptables-restore`` complained about, or None."""
    for rx in _LINE_RES:
        m = rx.search(stderr or "")
        if m and int(m.group(1)) > 0:
            return int(m.group(1))
    return None


def extract_lines(text: str, line: int, context: int = 3) -> str:
    """Upstream ``ExtractLines``: the offending line (marked ``=>``) with ``context`` lines
    either side, each prefixed with its number."""
    lines = text.split("\n")
    lo, hi = max(1, line - context), min(len(lines), line + context)
    out = []
    for n in range(lo, hi + 1):
        mark = "=> " if n == line else "   "
        out.append(f"{mark}{n}: {lines[n - 1]}")
    return "\n".join(out)


def line_at(text: str, line: int) -> str | None:
    lines = text.split("\n")
    return lines[line - 1] if 1 <= line <= len(lines) else None


# --------------------------------------------------------------------------- iptables-save

@dataclass
class SavedTables:
    """``iptables-save`` text split up: table -> chains (with policy) and table -> rule lines."""

    chains: dict[str, dict[str, str]]
    rules: dict[str, list[str]]

    def chain_names(self, table: str) -> set[str]:
        return set(self.chains.get(table, {}))

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.chains.get(table, {})


def parse_save(text: str) -> SavedTables:
    chains: dict[str, dict[str, str]] = {}
    rules: dict[str, list[str]] = {}
    table = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            chains.setdefault(table, {})
            rules.setdefault(table, [])
        elif table is None:
            continue
        elif line == "COMMIT":
            table = None
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            chains[table][name] = rest.split(" ")[0] if rest else "-"
        elif line.startswith("-A "):
            rules[table].append(line)
    return SavedTables(chains, rules)


def nat_chains_from_save(text: str) -> set[str]:
    """Every chain of the nat table in ``iptables-save [-t nat]`` output."""
    return parse_save(text).chain_names("nat")


# --------------------------------------------------------------------------- jump rules

class JumpRule(NamedTuple):
    table: str
    src: str      # built-in chain
    dst: str      # kube-proxy chain
    comment: str
    extra: str    # match arguments before the comment

    def args(self) -> str:
        parts = [self.extra] if self.extra else []
        if self.comment:
            parts.append(f'-m comment --comment "{self.comment}"')
        parts.append(f"-j {self.dst}")
        return " ".join(parts)

    def saved_form(self) -> str:
        """The rule as ``iptables-save`` prints it (no address matches, so argument order is kept)."""
        return f"-A {self.src} {self.args()}"

    def insert_line(self) -> str:
        return f"-I {self.src} {self.args()}"


_NEW = "-m conntrack --ctstate NEW"
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "INPUT", "KUBE-NODEPORTS", "kubernetes health check service ports", ""),
    JumpRule("filter", "FORWARD", "KUBE-SERVICES", "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules", ""),
    JumpRule("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", ""),
    JumpRule("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals", ""),
    JumpRule("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules", ""),
    # iptablesKubeletJumpChains (kubelet's chain; created, never deleted by kube-proxy)
    JumpRule("filter", "INPUT", "KUBE-FIREWALL", "", ""),
    JumpRule("filter", "OUTPUT", "KUBE-FIREWALL", "", ""),
)
CANARY_CHAIN = "KUBE-PROXY-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")


def missing_jump_rules(saved: SavedTables) -> list[JumpRule]:
    """The jump rules ``EnsureRule`` would insert (those not in the saved rules, exact text)."""
    out = []
    for j in JUMP_RULES:
        if j.saved_form() not in saved.rules.get(j.table, ()):
            out.append(j)
    return out


def _declared(section: str, chain: str) -> bool:
    return f"\n:{chain} " in "\n" + section


def add_host_rules(text: str, missing: Iterable[JumpRule], saved: SavedTables) -> str:
    """Fold upstream's full-sync ``EnsureChain``/``EnsureRule(Prepend)`` calls into the restore
    input: ``-I`` lines (in ``JUMP_RULES`` order, so each lands at position 1 exactly as the
    upstream calls do) before each table's ``COMMIT``, a declaration for any jump target the
    text does not declare and that does not exist yet, and the empty ``KUBE-PROXY-CANARY``
    chains (a ``*mangle`` section first if the mangle canary is missing)."""
    missing = list(missing)
    filt_end = text.index("COMMIT\n") + len("COMMIT\n")
    sections = {"filter": text[:filt_end], "nat": text[filt_end:]}
    for table in ("filter", "nat"):
        sec = sections[table]
        body, commit = sec[: sec.rindex("COMMIT\n")], "COMMIT\n"
        extra = []
        for j in missing:
            if j.table == table and not _declared(body, j.dst) and not saved.has_chain(table, j.dst) \
                    and f":{j.dst} - [0:0]\n" not in extra:
                extra.append(f":{j.dst} - [0:0]\n")
        if not saved.has_chain(table, CANARY_CHAIN):
            extra.append(f":{CANARY_CHAIN} - [0:0]\n")
        extra += [j.insert_line() + "\n" for j in missing if j.table == table]
        sections[table] = body + "".join(extra) + commit
    mangle = ""
    if not saved.has_chain("mangle", CANARY_CHAIN):
        mangle = f"*mangle\n:{CANARY_CHAIN} - [0:0]\nCOMMIT\n"
    return mangle + sections["filter"] + sections["nat"]


# --------------------------------------------------------------------------- conntrack

IPPROTO_UDP = 17


@dataclass(frozen=True)
class ConntrackFilter:
    """Delete UDP entries whose original destination is ``orig_dst`` (any if None) port
    ``orig_dport`` (any if None) and whose reply source (the DNAT target, ``--dst-nat``) is
    ``reply_src`` (any if None). ``conntrack -D -p udp [--orig-dst IP] [--dport P] [--dst-nat IP]``."""

    orig_dst: str | None = None
    orig_dport: int | None = None
    reply_src: str | None = None
    proto: int = IPPROTO_UDP
    reason: str = ""

    def matches(self, proto: int, orig_dst: str, orig_dport: int | None, reply_src: str) -> bool:
        return (proto == self.proto
                and (self.orig_dst is None or orig_dst == self.orig_dst)
                and (self.orig_dport is None or orig_dport == self.orig_dport)
                and (self.reply_src is None or reply_src == self.reply_src))

    def describe(self) -> str:
        parts = ["-p udp" if self.proto == IPPROTO_UDP else f"-p {self.proto}"]
        if self.orig_dst:
            parts.append(f"--orig-dst {self.orig_dst}")
        if self.orig_dport is not None:
            parts.append(f"--dport {self.orig_dport}")
        if self.reply_src:
            parts.append(f"--dst-nat {self.reply_src}")
        return " ".join(parts)


def _endpoint_ip(endpoint: str) -> str:
    host = endpoint.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def _frontends(svc: ServicePortInfo) -> list[str]:
    return [svc.cluster_ip, *svc.external_ips, *svc.load_balancer_vips]


def conntrack_filters(changes: StateChange, svc_port_map: Mapping[ServicePortName, ServicePortInfo]
                      ) -> list[ConntrackFilter]:
    """The UDP conntrack deletions one sync needs (upstream <= 1.31, event based):

    - a deleted UDP service port: every entry to its cluster IP (``ClearEntriesForIP``);
    - a UDP service port that went from 0 to N serving endpoints: entries to each frontend
      ``IP:port`` (``ClearEntriesForIPPort``) and to its NodePort (``ClearEntriesForPort``),
      which are the "black hole" entries created while it had none;
    - a removed UDP endpoint: entries to each frontend ``IP:port`` NATed to the endpoint IP
      (``ClearEntriesForNAT``, narrowed to the port) and to the NodePort NATed to it
      (``ClearEntriesForPortNAT``). Skipped if the service port is gone (covered above).
    """
    out: list[ConntrackFilter] = []
    seen: set = set()

    def add(f: ConntrackFilter) -> None:
        key = (f.orig_dst, f.orig_dport, f.reply_src, f.proto)
        if key not in seen:
            seen.add(key)
            out.append(f)

    for ip in sorted(changes.deleted_udp_cluster_ips):
        if ip:
            add(ConntrackFilter(orig_dst=ip, reason="service deleted"))
    for spn in changes.newly_active_udp_services:
        svc = svc_port_map.get(spn)
        if svc is None or svc.protocol != "UDP":
            continue
        for ip in _frontends(svc):
            add(ConntrackFilter(orig_dst=ip, orig_dport=svc.port, reason=f"{spn} has endpoints now"))
        if svc.node_port:
            add(ConntrackFilter(orig_dport=svc.node_port, reason=f"{spn} has endpoints now (NodePort)"))
    for se in changes.deleted_udp_endpoints:
        svc = svc_port_map.get(se.service_port)
        if svc is None or svc.protocol != "UDP":
            continue
        ep_ip = _endpoint_ip(se.endpoint)
        for ip in _frontends(svc):
            add(ConntrackFilter(orig_dst=ip, orig_dport=svc.port, reply_src=ep_ip,
                                reason=f"{se.service_port} lost endpoint {se.endpoint}"))
        if svc.node_port:
            add(ConntrackFilter(orig_dport=svc.node_port, reply_src=ep_ip,
                                reason=f"{se.service_port} lost endpoint {se.endpoint} (NodePort)"))
    return out


def select_entries(filters: list[ConntrackFilter], entries: Iterable[tuple]) -> list[tuple]:
    """Entries (``(proto, orig_dst, orig_dport, reply_src, handle)`` tuples) any filter matches."""
    by_dst: dict[str | None, list[ConntrackFilter]] = {}
    for f in filters:
        by_dst.setdefault(f.orig_dst, []).append(f)
    anydst = by_dst.get(None, [])
    out = []
    for e in entries:
        proto, dst, dport, rsrc = e[0], e[1], e[2], e[3]
        for f in by_dst.get(dst, []) + anydst:
            if f.matches(proto, dst, dport, rsrc):
                out.append(e)
                break
    return out


# --------------------------------------------------------------------------- health checks

def health_check_ports(state: ProxyState) -> dict[NamespacedName, int]:
    """Services that need a health-check server (eTP=Local LoadBalancers): name -> port."""
    out: dict[NamespacedName, int] = {}
    for spn, svc in state.svc_port_map.items():
        if svc.health_check_node_port:
            out[spn.namespaced_name] = svc.health_check_node_port
    return out


def local_ready_endpoints(state: ProxyState, services: Iterable[NamespacedName] | None = None
                          ) -> dict[NamespacedName, int]:
    """Local ready endpoints per service (distinct IPs over all its ports), for health checks."""
    wanted = None if services is None else set(services)
    ips: dict[NamespacedName, set[str]] = {}
    for spn, eps in state.endpoints_map.items():
        nn = spn.namespaced_name
        if wanted is not None and nn not in wanted:
            continue
        s = ips.setdefault(nn, set())
        for ep in eps:
            if ep.is_local and ep.ready:
                s.add(ep.ip)
    out = {nn: len(s) for nn, s in ips.items()}
    if wanted is not None:
        for nn in wanted:
            out.setdefault(nn, 0)
    return out


# --------------------------------------------------------------------------- trigger times

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (``2024-01-02T03:04:05Z``, optional fraction/offset) -> epoch seconds."""
    if not text or not isinstance(text, str):
        return None
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def trigger_time(obj: Mapping, arrived: float) -> float:
    """The object's last-change-trigger-time annotation, else when its watch event arrived."""
    ann = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_ANNOTATION)
    t = parse_time(ann)
    return arrived if t is None else t

