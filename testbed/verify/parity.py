"""The parity matrix's one declaration: where a proxy mode answers a scenario check differently
from iptables mode *by design* (upstream's behaviour), and exactly how.

The scenario catalogue runs in every proxy mode (``tests/integration/test_scenarios.py``). A
``Difference`` names one expectation of the checks (``source``, ``reach``, ``vxlan``...), the
expected values it concerns (a pattern of the row's expected text) and what a mode observes
instead (a pattern of the row's observed text), optionally narrowed to one scenario or check.
Judging a check's result in a mode:

- a row some difference covers must fail, with an observed value the difference declares: a
  row that passes, or fails otherwise, fails the test (the table cannot outlive the behaviour
  it explains, nor hide another failure);
- every other row must pass; an error stops the check and fails the test.

Nothing is skipped: an expected difference is asserted as precisely as a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from testbed.verify.report import Result, Row

PASS, EXPECTED, FAIL = "pass", "expected-difference", "fail"

# What the node's own addresses look like in the scenarios' evidence: the node's cni0 address
# (.1) or its flannel.1 address (.0) in its pod subnet.
_NODE_SRC = r"10\.244\.\d+\.[01]"


@dataclass(frozen=True)
class Difference:
    key: str              # short name, the README footnote
    mode: str
    expectation: str      # the row's expectation name
    expected: str         # regex over the row's expected text: which rows this covers
    observed: str         # regex over the row's observed text: how they must fail
    reason: str           # upstream behaviour
    scenario: str | None = None
    check: str | None = None

    def covers(self, mode: str, scenario: str, check: str, row: Row) -> bool:
        return (self.mode == mode and self.expectation == row.expectation
                and self.scenario in (None, scenario) and self.check in (None, check)
                and re.fullmatch(self.expected, row.expected, re.S) is not None)


# IPVS translates in LOCAL_IN, after the bridge: the Service address is local (kube-ipvs0)
_IPVS_HAIRPIN = ("IPVS mode binds the Service address to kube-ipvs0, so the node receives the request and "
                 "IPVS sends the translated packet out through the node's routing (from cni0's own MAC, TTL 63, "
                 "masqueraded by KUBE-LOOP-BACK): the bridge does not hairpin it")
_IPVS_HAIRPIN_REPLY = (
    "IPVS mode routes the request back to the pod (masqueraded by KUBE-LOOP-BACK), so it does come "
    "back on the pod's port; the pod's answer, addressed to the node, is un-SNATed by br_netfilter "
    "in the bridge's PREROUTING and, its destination now the pod on the same bridge, bridged back "
    "out of the port it came in on, which a port without the hairpin flag refuses: the connection "
    "fails on the answer instead of the request (upstream's IPVS mode needs hairpin too)")
_IPVS_HAIRPIN_PROMISCUOUS = (
    "a promiscuous bridge also passes every frame up to the node (br_handle_frame_finish's local_rcv): "
    "the pod's answer, which its own port refuses to take back, is forwarded by the node instead, "
    "translated back to the Service address by IPVS (ip_vs_reply4 in FORWARD) and sent to the pod from "
    "the bridge, so the connection is answered; iptables mode drops that forwarded packet as "
    "conntrack-INVALID in KUBE-FORWARD, a rule upstream's IPVS mode does not write")

# reasons shared by a difference's declarations for several check kinds
_USERSPACE_NO_HAIRPIN = ("a pod reaching itself through its Service needs no hairpin: the proxy's "
                         "connection comes from the node")
_USERSPACE_NO_ETP_LOCAL = ("externalTrafficPolicy: Local was never implemented by the userspace proxy: "
                           "every node forwards to every endpoint (reported as an Event on the Service)")
_IPVS_ETP_FALLBACK = ("IPVS mode with externalTrafficPolicy: Local on a node without a local endpoint "
                      "falls back to the cluster's endpoints (upstream PR #97081) instead of dropping")


_USERSPACE_NO_ENDPOINTS = ("with no endpoint the userspace proxy has already accepted the connection and closes "
                           "it (the client sees a reset or an empty answer), where iptables mode REJECTs the SYN")
# A row that expects no IPv4 answer (reach: dropped; drop: no answer seen) answered instead, and
# a hairpin row that expects nothing back on the pod's port seeing frames come back.
_ANSWERED = (("reach", r"dropped .*", r"answered by .*"),
             ("drop", r".*no answer is seen", r".*answers seen: [1-9]\d*"))
_COMES_BACK = ("hairpin", r"request arrives on .*, nothing comes back on it", r"in: [1-9]\d* frames; back: [1-9]\d* frames")


def _each(key: str, mode: str, rows, reason: str, **where) -> tuple[Difference, ...]:
    """One difference per (expectation, expected, observed) of *rows*, all for one reason."""
    return tuple(Difference(key, mode, e, exp, obs, reason, **where) for e, exp, obs in rows)


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "userspace-source", "userspace", "source", r"client = .*",
        rf"backend saw {_NODE_SRC}:\d+; veth shows src {_NODE_SRC}",
        "the userspace proxy accepts the client's connection and opens its own from the node, "
        "so the backend sees a node address (upstream pkg/proxy/userspace)"),
    Difference(
        "userspace-hop", "userspace", "vxlan", r".* ttl 63",
        r".*; inner [0-9.:]+ > [0-9.:]+ ttl 64 \[wrong: (inner, )?ttl\]",
        "the proxy's own connection leaves the node: the inner packet is not forwarded (TTL 64, "
        "not 63) and comes from the node, not the client"),
    *(Difference("userspace-no-endpoints", "userspace", "reach", r"refused .*",
                 r"error in .*(Connection reset by peer|not HTTP: b'').*", _USERSPACE_NO_ENDPOINTS, **where)
      for where in ({"scenario": "no-endpoints"}, {"scenario": "troubleshooting", "check": "typo-is-refused"})),
    Difference(
        "userspace-udp-no-endpoints", "userspace", "reach", r"refused .*", r"dropped in .*\(timed out\)",
        "the userspace proxy drops a datagram it has no endpoint for (no ICMP unreachable)",
        scenario="no-endpoints", check="udp-refused"),
    Difference(
        "userspace-external-ip-from-pod", "userspace", "reach", r"answered .*",
        r"refused in .*Network is unreachable.*",
        "upstream's container portal rule for an external IP carries `-m physdev ! --physdev-is-in`: "
        "a pod's traffic to an external IP that is not local to the node is not proxied",
        scenario="externalips", check="from-pod"),
    *_each("userspace-hairpin", "userspace", _ANSWERED + (_COMES_BACK,), _USERSPACE_NO_HAIRPIN,
           check="hairpin-fails"),
    Difference(
        "userspace-hairpin", "userspace", "hairpin", r"request leaves .* and comes back on it: .*",
        rf"in: .*; back: .* {_NODE_SRC}:\d+ > 10\.244\.\d+\.\d+:\d+ ttl 64",
        _USERSPACE_NO_HAIRPIN, scenario="hairpin-veth", check="hairpin"),
    *_each("userspace-etp-local", "userspace", _ANSWERED, _USERSPACE_NO_ETP_LOCAL,
           scenario="nodeport-local", check="node-without-endpoint"),
    *_each(
        "nftables-hairpin-invalid", "nftables", (_COMES_BACK,),
        "with a promiscuous bridge and no hairpin, the node forwards the DNATed SYN back to the pod "
        "un-SNATed as a conntrack-INVALID packet: iptables mode drops it in KUBE-FORWARD (--ctstate "
        "INVALID -j DROP), upstream's nftables mode has no such rule; the connection fails either way",
        scenario="hairpin-promiscuous", check="hairpin-fails"),
    *_each("ipvs-etp-local", "ipvs", _ANSWERED, _IPVS_ETP_FALLBACK,
           scenario="nodeport-local", check="node-without-endpoint"),
    Difference(
        "ipvs-hairpin-routed", "ipvs", "hairpin", r"request leaves .* and comes back on it: .*",
        rf"in: .*; back: \S+ > \S+ {_NODE_SRC}:\d+ > 10\.244\.\d+\.\d+:\d+ ttl 63", _IPVS_HAIRPIN,
        scenario="hairpin-veth", check="hairpin"),
    *_each("ipvs-hairpin-reply", "ipvs", (_COMES_BACK,), _IPVS_HAIRPIN_REPLY,
           scenario="hairpin-none", check="hairpin-fails"),
    *_each("ipvs-hairpin-promiscuous", "ipvs", _ANSWERED + (_COMES_BACK,), _IPVS_HAIRPIN_PROMISCUOUS,
           scenario="hairpin-promiscuous", check="hairpin-fails"),
    Difference(
        "ipvs-external-ip-node-address", "ipvs", "reach", r"answered .*", r"dropped in .*\(timed out\)",
        "IPVS mode binds an externalIP to kube-ipvs0 on every node that does not have it: node1 then holds "
        "node2's address 172.20.10.3 as its own, so it answers ARP for it and drops node2's packets as "
        "martians (their source is local); node2 takes the client's connection and forwards it over VXLAN "
        "to web-1 on node1, where nothing from node2 arrives (upstream issues #127410, #104679, #93175: in "
        "IPVS mode an externalIP must not be a node's address)",
        scenario="externalips", check="from-outside"),
    Difference(
        "userspace-no-svc-chains", "userspace", "rules", r"kube-proxy active: KUBE-SVC chains on every node|"
        r"KUBE-SVC rules for .* on every node", r"(node\d+: 0( KUBE-SVC chains)?(, )?)+",
        "the userspace proxy has no per-Service chains: one portal rule per Service address in "
        "KUBE-PORTALS-*, which the `rules` check (written for KUBE-SVC-*) does not read",
        scenario="headless-externalname"),
)


def covering(mode: str, scenario: str, check: str, row: Row) -> Difference | None:
    """The most specific difference covering ``row`` (one naming the check before one naming
    only the scenario, before one for every scenario)."""
    found = [d for d in DIFFERENCES if d.covers(mode, scenario, check, row)]
    return max(found, key=lambda d: (d.check is not None, d.scenario is not None), default=None)


def judge(mode: str, scenario: str, result: Result) -> tuple[str, str]:
    """(``pass`` | ``expected-difference`` | ``fail``, why) for one check's result in ``mode``;
    for an expected difference, ``why`` is the differences' keys and reasons."""
    if result.error is not None:
        return FAIL, f"error: {result.error}"
    if not result.rows:
        return FAIL, "no expectation was evaluated"
    problems: list[str] = []
    used: dict[str, str] = {}
    for row in result.rows:
        d = covering(mode, scenario, result.check, row)
        if d is None:
            if not row.ok:
                problems.append(f"{row.expectation}: expected {row.expected}; observed {row.observed}")
        elif row.ok:
            problems.append(f"{row.expectation}: declared difference {d.key} did not occur "
                            f"(observed {row.observed}); remove it from testbed.verify.parity")
        elif re.fullmatch(d.observed, row.observed, re.S) is None:
            problems.append(f"{row.expectation}: observed {row.observed!r}, declared by {d.key}: /{d.observed}/")
        else:
            used[d.key] = d.reason
    if problems:
        return FAIL, "\n".join(problems)
    if used:
        return EXPECTED, "; ".join(f"[{k}] {r}" for k, r in sorted(used.items()))
    return PASS, ""
