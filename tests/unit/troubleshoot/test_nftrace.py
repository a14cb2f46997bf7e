"""The ``nft monitor`` parser and the path order, on output captured from real traces
(tests/golden/trace-*.txt: one ``### netns NAME`` section per monitored namespace)."""

from pathlib import Path

import pytest

from testbed.troubleshoot import explain, nftrace

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
NODE1, NODE2 = "tb.golden.node.node1", "tb.golden.node.node2"


def _sections(case: str) -> dict[str, str]:
    out, ns = {}, None
    for line in (GOLDEN / f"trace-{case}.txt").read_text().splitlines():
        if line.startswith("### netns "):
            ns = line.split()[-1]
            out[ns] = ""
        elif ns:
            out[ns] += line + "\n"
    return out


def _hops(case: str) -> list[nftrace.Hop]:
    hops = []
    for ns, text in _sections(case).items():
        own = tuple({line.split()[4] for line in text.splitlines() if nftrace.TABLE_PREFIX in line and "trace id" in line})
        hops += nftrace.parse_monitor(ns, text, own)
    return nftrace.path_order(hops)


def _steps(case: str) -> list[explain.TraceStep]:
    """The steps at kube-proxy's and flannel's rules (hooks of namespaces without rules left out)."""
    return [s for s in explain.rule_steps(_hops(case)) if s.table != "-"]


def test_namespaces_without_rules_still_show_the_packet_passing():
    steps = explain.rule_steps(_hops("clusterip"))
    assert (steps[0].netns, steps[0].hook, steps[0].rule) == ("tb.golden.pod.default.client", "output",
                                                               "(no rules at this hook)")
    pod = [s for s in steps if s.netns == "tb.golden.pod.default.web-2"]
    assert [s.hook for s in pod if not s.packet["reply"]] == ["prerouting", "input"]


def test_parse_packet_fields():
    pkt = nftrace.parse_packet('iif "cni0" ether saddr 0a:58:0a:f4:00:02 ip saddr 10.244.0.2 ip daddr 10.96.0.1 '
                               'ip dscp 0x2d ip ttl 64 tcp sport 49208 tcp dport 80 tcp flags == syn tcp window 64860')
    assert pkt["iif"] == "cni0" and pkt["ip saddr"] == "10.244.0.2" and pkt["tcp dport"] == "80"
    assert pkt["tcp flags"] == "syn" and pkt["ip dscp"] == "0x2d" and pkt["ip ttl"] == "64"


def test_clusterip_across_nodes_dnat_in_order():
    steps = _steps("clusterip")
    chains = [(s.netns, s.chain) for s in steps if not s.packet["reply"]]
    assert chains[:4] == [(NODE1, "PREROUTING"), (NODE1, "KUBE-SERVICES"), (NODE1, "KUBE-SVC-CDGGSHYLG3RE2FKL"),
                          (NODE1, "KUBE-SEP-UIQK3OSOSTRHRPBX")]
    dnat = steps[3]
    assert dnat.rule.endswith("dnat to 10.244.1.2:8080") and dnat.verdict == "accept"
    assert dnat.packet["before"]["ip daddr"] == "10.110.169.224"
    # the request reaches node2 after node1, still addressed to the pod, and replies come last
    first_node2 = next(i for i, s in enumerate(steps) if s.netns == NODE2)
    assert all(s.netns == NODE1 for s in steps[:first_node2])
    assert steps[first_node2].packet["before"]["ip daddr"] == "10.244.1.2"
    replies = [i for i, s in enumerate(steps) if s.packet["reply"]]
    assert replies and min(replies) > max(i for i, s in enumerate(steps) if not s.packet["reply"])
    assert not any("counter packets" in s.rule for s in steps)
    assert not any(s.table.endswith(nftrace.TABLE_PREFIX) or nftrace.TABLE_PREFIX in s.table for s in steps)


def test_nodeport_from_outside_is_marked_and_masqueraded():
    steps = _steps("nodeport")
    mark = next(s for s in steps if s.chain == "KUBE-MARK-MASQ")
    assert "0x4000" in mark.rule
    masq = next(s for s in steps if s.chain == "KUBE-POSTROUTING" and "masquerade" in s.rule)
    assert masq.packet["before"]["ip saddr"] == "172.20.10.100"
    assert masq.packet["after"]["ip saddr"] == "10.244.0.0"   # SNAT to node1's flannel.1 address
    notes = explain.notes_for(steps)
    assert any("marked 0x4000" in n for n in notes) and any("masqueraded in KUBE-POSTROUTING" in n for n in notes)


def test_etp_local_drop_on_a_node_without_endpoints():
    steps = _steps("etp-local-drop")
    res = explain.verdict("dropped", None, steps)
    assert res["outcome"] == "dropped" and res["netns"] == NODE1 and res["chain"] == "KUBE-EXTERNAL-SERVICES"
    assert "dport 30081 drop" in res["rule"]
    assert any("externalTrafficPolicy Local" in n for n in explain.notes_for(steps))


def test_no_endpoint_reject():
    steps = _steps("reject")
    res = explain.verdict("refused", None, steps)
    assert res["outcome"] == "rejected" and res["chain"] == "KUBE-SERVICES" and res["rule"].endswith("reject")
    assert any("no ready endpoints" in n for n in explain.notes_for(steps))


def test_ipvs_virtual_server_without_real_servers_is_what_rejected():
    """IPVS mode: no rule rejects; the step the tracer adds for the empty virtual server does."""
    refusal = explain.TraceStep(NODE1, "cni0", "ipvs", "-", "-",
                                "IPVS virtual server TCP 10.96.0.20:80 has no real server: "
                                "the kernel answers ICMP port unreachable", "reject", kind="ipvs")
    res = explain.verdict("refused", None, _steps("nodeport") + [refusal])
    assert res["outcome"] == "rejected" and res["netns"] == NODE1 and res["rule"] == refusal.rule


def test_hairpin_leaves_through_the_bridge_it_came_from_and_is_masqueraded():
    steps = _steps("hairpin")
    fwd = next(s for s in steps if s.hook == "forward")
    assert fwd.interface == "cni0>cni0"
    masq = next(s for s in steps if s.chain == "KUBE-POSTROUTING" and "masquerade" in s.rule)
    assert masq.packet["after"]["ip saddr"] == "10.244.1.1"


def test_answered_verdict_and_table():
    steps = _steps("clusterip")
    res = explain.TraceResult("pod/client", "service/web", "tcp", steps, explain.verdict("answered", "web-2", steps))
    text = explain.table(res)
    assert text.splitlines()[-1].startswith("result: answered by pod web-2")
    assert "node/node1" in text and "KUBE-SEP-UIQK3OSOSTRHRPBX" in text
    d = res.to_dict()
    assert {"netns", "interface", "table", "chain", "rule", "verdict", "packet"} <= set(d["steps"][0])


def test_trace_table_renders_for_both_protocols():
    tcp = nftrace.trace_table("abc", 45, "tcp")
    assert "table ip testbed-trace-abc {" in tcp and "ip dscp 0x2d" in tcp
    assert "priority -400" in tcp and "priority 400" in tcp and "tcp flags & (syn | ack) == syn" in tcp
    assert "udp sport" in nftrace.trace_table("abc", 1, "udp")
    assert nftrace.delete_table("abc") == "delete table ip testbed-trace-abc\n"
    with pytest.raises(ValueError, match="allowed: tcp, udp"):
        nftrace.trace_table("abc", 1, "sctp")
    with pytest.raises(ValueError, match="1..63"):
        nftrace.trace_table("abc", 0, "tcp")


def test_non_trace_lines_are_ignored():
    assert nftrace.parse_monitor("x", "add table ip foo\n# new generation 3 by process 1 (nft)\n") == []


def test_a_rst_for_a_closed_port_is_a_reply_and_names_the_peer():
    text = (
        'trace id 1 ip filter FORWARD packet: iif "cni0" oif "flannel.1" ip saddr 10.244.0.2 ip daddr 10.244.1.2 '
        'ip dscp 0x2d ip ttl 63 tcp sport 4000 tcp dport 8081 tcp flags == syn\n'
        'trace id 1 ip filter FORWARD policy accept\n'
        'trace id 2 ip filter FORWARD packet: iif "flannel.1" oif "cni0" ip saddr 10.244.1.2 ip daddr 10.244.0.2 '
        'ip dscp 0x2d ip ttl 63 tcp sport 8081 tcp dport 4000 tcp flags == 0x14\n'
        'trace id 2 ip filter FORWARD policy accept\n')
    hops = nftrace.parse_monitor("n1", text)
    assert [h.is_reply for h in hops] == [False, True]
    res = explain.verdict("refused", None, explain.rule_steps(hops))
    assert res["outcome"] == "rejected" and res["detail"].startswith("TCP RST from 10.244.1.2")


def test_nftables_mode_chains_name_the_same_cases():
    def step(chain, rule, verdict):
        return explain.TraceStep("n1", "eth0", "prerouting", "ip kube-proxy", chain, rule, verdict,
                                 {"before": {}, "after": {}, "reply": False})
    notes = explain.notes_for([
        step("external-X-default/web/tcp/", "jump mark-for-masquerade", "jump mark-for-masquerade"),
        step("mark-for-masquerade", "meta mark set meta mark | 0x00004000", "continue"),
        step("nodeport-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-nodeports", "drop"),
        step("reject-chain", "reject", "reject"),
    ])
    assert "marked 0x4000 for masquerade by mark-for-masquerade (from external-X-default/web/tcp/" in notes[0]
    assert "externalTrafficPolicy Local" in notes[1] and "no ready endpoints" in notes[2]


def test_hairpin_visits_the_pod_twice_around_its_node():
    hops = _hops("hairpin")
    requests = [(h.netns.split(".")[-1], h.hook) for h in hops if not h.is_reply]
    assert requests == [("web-2", "output"), ("web-2", "postrouting"), ("node2", "prerouting"),
                        ("node2", "forward"), ("node2", "postrouting"), ("web-2", "prerouting"), ("web-2", "input")]


def _ipvs_step(netns, real):
    return explain.TraceStep(netns, "eth0", "ipvs", "-", "-",
                             f"TCP 172.20.10.100:47562 -> 172.20.10.2:30130 -> {real}:8080 TIME_WAIT 112s",
                             "ipvs", kind="ipvs")


def test_ipvs_etp_local_fallback_is_named_where_it_happens():
    """IPVS mode gives a Local-policy virtual server without local endpoints the cluster's
    endpoints (upstream PR #97081): the note names the node and where the connection went."""
    nodes, pods = {NODE1: "node1", NODE2: "node2"}, {"10.244.1.2": "node2", "10.244.0.7": "node1"}
    [note] = explain.ipvs_local_fallback([_ipvs_step(NODE1, "10.244.1.2")], True, nodes, pods)
    assert note.startswith(f"{NODE1}: externalTrafficPolicy Local and no endpoint on this node") and \
        "10.244.1.2 on node2" in note and "PR #97081" in note
    # a local endpoint, or the Cluster policy: nothing to explain
    assert explain.ipvs_local_fallback([_ipvs_step(NODE1, "10.244.0.7")], True, nodes, pods) == []
    assert explain.ipvs_local_fallback([_ipvs_step(NODE1, "10.244.1.2")], False, nodes, pods) == []


def test_ipvs_loop_back_masquerade_is_not_the_mark():
    step = explain.TraceStep(NODE2, "cni0>cni0", "postrouting", "ip nat", "KUBE-POSTROUTING",
                             "xt match set masquerade", "accept")
    [note] = explain.notes_for([step])
    assert "ipset KUBE-LOOP-BACK" in note and "0x4000" not in note
