"""Kernel packet tracing with nftables, as pure text in and out.

``trace_table`` renders the temporary table a trace installs in each namespace it watches; it
marks packets with ``meta nftrace set 1`` so that every chain they then cross (the trace's own,
kube-proxy's nftables tables and iptables-nft's ``ip nat``/``ip filter``) reports to
``nft monitor``. ``parse_monitor`` turns that monitor's output into ``Hop``s.

Why DSCP and not the 5-tuple: the request is rewritten on its way (DNAT to the pod, SNAT on a
NodePort), so a tuple known before sending matches in the first namespace only. The probe's
socket sets a DSCP value of the trace's own instead, which NAT and VXLAN leave alone. Replies
carry no DSCP, so the request's tuple as it leaves a namespace (postrouting, after NAT) or
reaches a local socket (input) is added, reversed, to a dynamic set, and packets matching it
in prerouting/output are traced too. Only a connection's first packets are traced (SYN and
SYN-ACK/RST for TCP, every datagram for UDP), so a trace stays one screen long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TABLE_PREFIX = "testbed-trace-"
# Before raw (-300) and conntrack (-200): the mark is set before any table that can change the
# packet sees it. The set is filled after every NAT (srcnat is 100) has been applied.
MARK_PRIORITY = -400
LEARN_PRIORITY = 400


def table_name(trace_id: str) -> str:
    return f"{TABLE_PREFIX}{trace_id}"


def trace_table(trace_id: str, dscp: int, protocol: str) -> str:
    """The ``nft -f`` text that creates the trace table (``protocol``: tcp or udp)."""
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"protocol: {protocol!r}; allowed: tcp, udp")
    if not 0 < dscp < 64:
        raise ValueError(f"dscp: {dscp}; allowed: 1..63")
    p = protocol
    first = f"ip dscp {dscp:#x} meta l4proto {p}" + (" tcp flags & (syn | ack) == syn" if p == "tcp" else "")
    reply = f"ip saddr . {p} sport . ip daddr . {p} dport @replies" + (
        " tcp flags & (syn | rst) != 0" if p == "tcp" else "")
    learn = f"{first} add @replies {{ ip daddr . {p} dport . ip saddr . {p} sport }}"
    name = table_name(trace_id)
    return "\n".join([
        f"table ip {name} {{",
        "  set replies { type ipv4_addr . inet_service . ipv4_addr . inet_service; flags dynamic, timeout; timeout 1m; }",
        f"  chain prerouting {{ type filter hook prerouting priority {MARK_PRIORITY}; {first} meta nftrace set 1; "
        f"{reply} meta nftrace set 1; }}",
        f"  chain output {{ type filter hook output priority {MARK_PRIORITY}; {first} meta nftrace set 1; "
        f"{reply} meta nftrace set 1; }}",
        f"  chain input {{ type filter hook input priority {LEARN_PRIORITY}; {learn}; }}",
        f"  chain postrouting {{ type filter hook postrouting priority {LEARN_PRIORITY}; {learn}; }}",
        "}",
        "",
    ])


def delete_table(trace_id: str) -> str:
    return f"delete table ip {table_name(trace_id)}\n"


@dataclass
class Hop:
    """One traced packet's walk through one hook of one namespace (one ``trace id`` run)."""

    netns: str
    trace_id: str
    family: str
    table: str
    chain: str
    iif: str | None = None
    oif: str | None = None
    packet: dict = field(default_factory=dict)   # fields of the packet line (ip saddr, tcp dport...)
    rules: list[dict] = field(default_factory=list)  # {table, chain, rule, verdict}
    verdict: str = ""
    packet_after: dict | None = None  # the packet as a later table at the same hook saw it
    hook: str = ""
    final: bool = False               # dropped or rejected here: later lines are not this packet's

    @property
    def interface(self) -> str:
        if self.iif and self.oif:
            return f"{self.iif}>{self.oif}"
        return self.iif or self.oif or "-"

    @property
    def is_reply(self) -> bool:
        """Only a bare SYN is traced as a TCP request, so any other traced TCP segment is a reply
        (a RST for a closed port even copies the SYN's DSCP); a UDP request carries the trace's
        DSCP and a reply (found through the set) none."""
        flags = self.packet.get("tcp flags")
        if flags is not None:
            return flags != "syn"
        return self.packet.get("ip dscp", "cs0") == "cs0"


def path_order(hops: list[Hop]) -> list[Hop]:
    """Requests first, then replies, each in the order of the namespaces they crossed.

    Monitors of different namespaces are read by different threads, so arrival order says
    nothing across namespaces; the IP TTL does: every routed hop decrements it, so a namespace
    reached later sees a smaller TTL where the packet enters it (prerouting, or output where it
    is sent: first on a tie, since a packet is sent before it is received). The TTL does not always drop (a hairpinned packet comes back to its
    pod with the TTL it left with), so on a tie a node comes before a pod or an external: a
    node's rules see a packet before the namespace it delivers to. A namespace crossed twice
    (hairpin: out of a pod and back in) is two visits, each kept in the monitor's own order.
    """
    visits: list[tuple[tuple, list[Hop]]] = []
    current: dict[tuple[bool, str], list[Hop]] = {}
    for h in hops:
        k = (h.is_reply, h.netns)
        if h.hook in ("prerouting", "output") or k not in current:
            current[k] = [h]
            ttl = int(h.packet.get("ip ttl", "0") or 0)
            visits.append(((h.is_reply, -ttl, h.hook != "output", _rank(h.netns)), current[k]))
        else:
            current[k].append(h)
    return [h for _, vs in sorted(visits, key=lambda v: v[0]) for h in vs]


def _rank(netns: str) -> int:
    return 0 if ".node." in netns else 1


_LINE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) (?P<rest>.*)$")
_VERDICT = re.compile(r"\(verdict (?P<v>[^)]*)\)\s*$")
_FIELD_KEYS = ("ip saddr", "ip daddr", "ip dscp", "ip ttl", "ip id", "ip length", "ip protocol",
               "tcp sport", "tcp dport", "tcp flags", "udp sport", "udp dport", "udp length",
               "icmp type", "icmp code", "ether saddr", "ether daddr", "meta mark", "iif", "oif",
               "vlan id", "ct state", "ct mark")


def parse_packet(text: str) -> dict:
    """``iif "eth0" ip saddr 1.2.3.4 ... tcp flags == syn`` -> {'iif': 'eth0', 'ip saddr': ...}."""
    out: dict = {}
    toks = text.split()
    i = 0
    while i < len(toks):
        key2 = " ".join(toks[i:i + 2])
        if key2 in _FIELD_KEYS and i + 2 < len(toks):
            val = toks[i + 2]
            if val == "==" and i + 3 < len(toks):  # "tcp flags == syn"
                val = toks[i + 3]
                i += 1
            out[key2] = val.strip('"')
            i += 3
        elif toks[i] in _FIELD_KEYS and i + 1 < len(toks):
            out[toks[i]] = toks[i + 1].strip('"')
            i += 2
        else:
            i += 1
    return out


def parse_monitor(netns: str, text: str, skip_tables: tuple[str, ...] = ()) -> list[Hop]:
    """Parse ``nft monitor`` output from one namespace into hops, in order.

    A hop starts at a ``packet:`` line and collects the rule lines of the same trace id, table
    and chain family until the id's next ``packet:`` line. Lines of ``skip_tables`` (the trace's
    own table) only contribute the packet they show, not a rule step. Non-trace lines (ruleset
    events) are ignored.
    """
    hops: list[Hop] = []
    current: dict[str, Hop] = {}
    for raw in text.splitlines():
        m = _LINE.match(raw.strip())
        if not m:
            continue
        tid, family, table, chain, rest = m["id"], m["family"], m["table"], m["chain"], m["rest"].strip()
        own = table in skip_tables
        if rest.startswith("packet:"):
            pkt = parse_packet(rest[len("packet:"):])
            prev = current.get(tid)
            # one run of a hook shows the packet once per table it enters: the same hop
            if prev is not None and _same_hook(prev, chain, pkt) and not prev.final:
                if prev.packet_after is None and pkt != prev.packet:
                    prev.packet_after = pkt
                continue
            hop = Hop(netns, tid, family, table, chain, pkt.get("iif"), pkt.get("oif"), pkt,
                      hook=_hook_of(chain))
            current[tid] = hop
            hops.append(hop)
            continue
        hop = current.get(tid)
        if hop is None:
            continue
        vm = _VERDICT.search(rest)
        verdict = vm["v"] if vm else ""
        if rest.startswith("policy "):
            verdict = rest.split()[1]
            if not own:
                hop.rules.append({"table": table, "chain": chain, "rule": f"policy {verdict}", "verdict": verdict})
            hop.verdict = verdict
            continue
        if rest.startswith("rule ") and not own:
            rule = _VERDICT.sub("", rest[len("rule "):]).strip()
            rule = re.sub(r"\s+", " ", re.sub(r"counter packets \d+ bytes \d+ ?", "", rule)).strip()
            word = verdict.split()[0] if verdict else ""
            if word == "drop" and re.search(r"\breject\b", rule, re.I):
                verdict = word = "reject"  # iptables-nft's REJECT is an xt target the monitor shows as "drop"
            hop.rules.append({"table": table, "chain": chain, "rule": rule, "verdict": verdict})
            if word in ("drop", "accept", "queue"):
                hop.verdict = word
            if word in ("drop", "reject"):
                hop.verdict = word
                hop.final = True
        elif rest.startswith("unknown rule"):
            continue  # the trace's own rule (it has no text: the monitor did not see it added)
    return hops


_HOOKS = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward", "OUTPUT": "output",
          "POSTROUTING": "postrouting"}


def _hook_of(chain: str) -> str:
    """The netfilter hook of a base chain (iptables-nft upper-case, nftables lower-case)."""
    if chain in _HOOKS:
        return _HOOKS[chain]
    low = chain.lower()
    for h in ("prerouting", "input", "forward", "output", "postrouting"):
        if h in low:
            return h
    return low


def _same_hook(prev: Hop, chain: str, pkt: dict) -> bool:
    """Another base chain at the same hook as ``prev``: its packet line repeats (maybe rewritten)."""
    if _hook_of(chain) != prev.hook:
        return False
    return pkt.get("iif") == prev.iif and pkt.get("oif") == prev.oif
