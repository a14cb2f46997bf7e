"""From parsed hops to the trace's steps and its verdict, with the seeds' cases named (pure).

The seeds' troubleshooting cases each leave a recognisable rule in the trace: kube-proxy's
``KUBE-MARK-MASQ`` sets mark 0x4000 and ``KUBE-POSTROUTING`` masquerades what carries it; a
node without a local endpoint for an ``externalTrafficPolicy: Local`` Service drops in
``KUBE-EXTERNAL-SERVICES`` ("has no local endpoints"); a Service without endpoints rejects
("has no endpoints"); a pod reaching itself through its Service leaves its node through the
bridge port it came in on (hairpin).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .nftrace import Hop

MASQ_MARK = "0x4000"


@dataclass
class TraceStep:
    netns: str
    interface: str
    hook: str
    table: str
    chain: str
    rule: str
    verdict: str
    packet: dict = field(default_factory=dict)   # {"before": {...}, "after": {...}}
    kind: str = "rule"                           # rule | conntrack | route | vxlan | bridge | ipvs | proxy | answer


@dataclass
class TraceResult:
    source: str
    target: str
    protocol: str
    steps: list[TraceStep]
    result: dict                 # {"outcome": answered|rejected|dropped|error, "pod"|"netns"/"rule", "detail"}
    notes: list[str] = field(default_factory=list)
    monitor_output: dict[str, str] = field(default_factory=dict)  # netns -> raw ``nft monitor`` text

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "protocol": self.protocol,
                "steps": [asdict(s) for s in self.steps], "result": self.result, "notes": self.notes}


def _brief(pkt: dict | None) -> dict:
    if not pkt:
        return {}
    keep = ("iif", "oif", "ip saddr", "ip daddr", "tcp sport", "tcp dport", "udp sport", "udp dport",
            "tcp flags", "meta mark")
    return {k: v for k, v in pkt.items() if k in keep}


def rule_steps(hops: list[Hop]) -> list[TraceStep]:
    """Every rule a traced packet matched, in order, with the packet before and after its hook."""
    steps = []
    for hop in hops:
        after = _brief(hop.packet_after) if hop.packet_after else {}
        if not hop.rules:
            # a namespace without rules of its own (a pod, an external client): the packet
            # passed this hook all the same, and where it was last seen matters
            steps.append(TraceStep(hop.netns, hop.interface, hop.hook, "-", "-", "(no rules at this hook)",
                                   hop.verdict or "accept", {"before": _brief(hop.packet), "after": after,
                                                             "reply": hop.is_reply}))
        for r in hop.rules:
            steps.append(TraceStep(hop.netns, hop.interface, hop.hook, f"{hop.family} {r['table']}", r["chain"],
                                   r["rule"], r["verdict"], {"before": _brief(hop.packet), "after": after,
                                                             "reply": hop.is_reply}))
    return steps


def insert_after_requests(steps: list[TraceStep], extra: list[TraceStep]) -> list[TraceStep]:
    """Put each namespace's kernel evidence after the last request rule step of that namespace."""
    out = list(steps)
    for e in extra:
        idx = [i for i, s in enumerate(out) if s.netns == e.netns and not s.packet.get("reply")]
        at = idx[-1] + 1 if idx else len(out)
        out.insert(at, e)
    return out


# kube-proxy's chains for the same purposes: iptables mode, then nftables mode
MASQ_CHAIN_OF_MARK = {"KUBE-MARK-MASQ": "KUBE-POSTROUTING", "mark-for-masquerade": "masquerading"}
NO_LOCAL_ENDPOINT_CHAINS = ("KUBE-EXTERNAL-SERVICES", "nodeport-endpoints-check")
NO_ENDPOINT_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "reject-chain", "service-endpoints-check")
_MASQ_BIT = re.compile(r"0x0*4000\b")


def notes_for(steps: list[TraceStep]) -> list[str]:
    notes = []
    for s in steps:
        if s.kind != "rule":
            continue
        if s.chain in MASQ_CHAIN_OF_MARK and _MASQ_BIT.search(s.rule):
            notes.append(f"{s.netns}: marked {MASQ_MARK} for masquerade by {s.chain} (from {_caller(steps, s)}); "
                         f"{MASQ_CHAIN_OF_MARK[s.chain]} will SNAT it to the node's address, so the backend "
                         f"answers the node")
        if "masquerade" in s.rule and "match set" in s.rule and s.chain == "KUBE-POSTROUTING":
            # IPVS mode's one set-matching masquerade (nft's trace does not name the set)
            notes.append(f"{s.netns}: masqueraded in {s.chain} because the packet is in ipset KUBE-LOOP-BACK "
                         f"(a pod sent to itself through a Service)")
        elif "masquerade" in s.rule and s.chain in MASQ_CHAIN_OF_MARK.values():
            notes.append(f"{s.netns}: masqueraded in {s.chain} because the packet carries mark {MASQ_MARK}")
        # nft's trace does not print iptables comments, so the chain and verdict name the case
        if s.verdict == "drop" and (s.chain in NO_LOCAL_ENDPOINT_CHAINS or "no-endpoint-nodeports" in s.rule):
            notes.append(f"{s.netns}: externalTrafficPolicy Local and no endpoint on this node: dropped by "
                         f"{s.chain} (forwarding it to another node would lose the client IP)")
        elif s.verdict == "reject" and (s.chain in NO_ENDPOINT_CHAINS or "no-endpoint" in s.rule):
            notes.append(f"{s.netns}: the Service has no ready endpoints: kube-proxy rejects at once "
                         f"({s.chain}) instead of letting the client time out")
    return notes


def ipvs_local_fallback(steps: list[TraceStep], local_policy: bool, node_of_netns: dict[str, str],
                        node_of_ip: dict[str, str]) -> list[str]:
    """IPVS mode, an ``externalTrafficPolicy: Local`` Service: a node whose IPVS connection went
    to an endpoint on another node had none of its own; upstream's IPVS proxier then gives the
    virtual server the cluster's endpoints, where iptables and nftables mode drop."""
    if not local_policy:
        return []
    notes = []
    for s in steps:
        parts = s.rule.split(" -> ")
        if s.kind != "ipvs" or s.verdict != "ipvs" or len(parts) != 3:
            continue
        real = parts[2].split()[0].rpartition(":")[0]   # "TCP CLIENT -> VIP -> REAL STATE EXPIRES"
        here, there = node_of_netns.get(s.netns), node_of_ip.get(real)
        if here and there and there != here:
            notes.append(f"{s.netns}: externalTrafficPolicy Local and no endpoint on this node: IPVS mode "
                         f"sends it to {real} on {there} (upstream's IPVS proxier falls back to the cluster's "
                         f"endpoints, PR #97081; iptables and nftables mode drop it) without marking it for "
                         f"masquerade, so the backend sees the client only if nothing else SNATs it")
    return notes


def _caller(steps: list[TraceStep], step: TraceStep) -> str:
    i = steps.index(step)
    for prev in reversed(steps[:i]):
        if prev.netns == step.netns and step.chain in prev.rule:
            return f"{prev.chain}: {prev.rule}"
    return "?"


def verdict(outcome: str, answered_by: str | None, steps: list[TraceStep], detail: str = "") -> dict:
    """The trace's result: answered by which pod, or rejected/dropped where and by which rule."""
    if outcome == "answered":
        return {"outcome": "answered", "pod": answered_by, "detail": detail}
    # a rule, or IPVS refusing for a virtual server without real servers
    final = next((s for s in steps if s.kind in ("rule", "ipvs") and s.verdict in ("reject", "drop")), None)
    if final is not None:
        return {"outcome": "rejected" if final.verdict == "reject" else "dropped", "netns": final.netns,
                "chain": final.chain, "rule": final.rule, "detail": detail}
    rst = next((s for s in steps if s.kind == "rule" and s.packet.get("reply")
                and _is_rst((s.packet.get("before") or {}).get("tcp flags", ""))), None)
    if outcome == "refused" and rst is not None:
        peer = (rst.packet.get("before") or {}).get("ip saddr")
        return {"outcome": "rejected", "netns": None, "rule": None,
                "detail": f"TCP RST from {peer}: nothing listens on the port there. {detail}".strip()}
    last = next((s for s in reversed(steps) if s.kind == "rule"), None)
    where = f"after {last.netns} {last.hook} ({last.interface})" if last else "before any traced hook"
    out = "rejected" if outcome == "refused" else ("dropped" if outcome == "dropped" else outcome)
    return {"outcome": out, "netns": None, "rule": None,
            "detail": f"no rule {out} it; last seen {where}. {detail}".strip()}


def _is_rst(flags: str) -> bool:
    """``rst``, ``rst | ack`` or the hex form nft prints for combinations (RST is 0x04)."""
    if "rst" in flags:
        return True
    try:
        return bool(int(flags, 16) & 0x04)
    except ValueError:
        return False


def table(res: TraceResult) -> str:
    """Hop by hop, one line per step."""
    rows = [("#", "NETNS", "IF", "HOOK", "TABLE/CHAIN", "RULE", "VERDICT", "PACKET")]
    for i, s in enumerate(res.steps, 1):
        p = s.packet.get("before") or {}
        proto = "tcp" if "tcp dport" in p else "udp"
        pkt = (f"{p.get('ip saddr')}:{p.get(proto + ' sport')} > {p.get('ip daddr')}:{p.get(proto + ' dport')}"
               if p.get("ip saddr") else "")
        after = s.packet.get("after") or {}
        if after.get("ip daddr") and (after.get("ip daddr"), after.get("ip saddr")) != (p.get("ip daddr"), p.get("ip saddr")):
            pkt += f" => {after.get('ip saddr')}:{after.get(proto + ' sport')} > {after.get('ip daddr')}:{after.get(proto + ' dport')}"
        chain = f"{s.table} {s.chain}".strip() if s.kind == "rule" else s.kind
        rows.append((str(i), _short(s.netns), s.interface, s.hook, chain, s.rule[:90], s.verdict, pkt))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    r = res.result
    if r["outcome"] == "answered":
        lines.append(f"result: answered by pod {r.get('pod')}" + (f" ({r['detail']})" if r.get("detail") else ""))
    else:
        where = f" in {r.get('netns')}" if r.get("netns") else ""
        by = f" by {r.get('chain')}: {r.get('rule')}" if r.get("rule") else ""
        lines.append(f"result: {r['outcome']}{where}{by}" + (f" ({r['detail']})" if r.get("detail") else ""))
    lines += [f"note: {n}" for n in res.notes]
    return "\n".join(lines)


def _short(netns: str) -> str:
    """``tb.<cluster>.node.node1`` -> ``node/node1`` (the way a user names it)."""
    parts = netns.split(".")
    if len(parts) >= 4 and parts[0] == "tb":
        kind = {"node": "node", "pod": "pod", "ext": "external"}.get(parts[2], parts[2])
        return f"{kind}/{parts[-1]}"
    return netns
