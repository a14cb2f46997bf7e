"""The netlink compiler: every line the renderer emits compiles (no fallback to nft for our
own table), and rule messages are byte for byte what nft 1.0.6 sends for the same line."""

import json
import struct
from pathlib import Path

import pytest

from testbed.proxy.nftables import compile as nc
from testbed.proxy.nftables.golden import load, render_steps
from testbed.proxy.nftables.nfnl import encode_batch
from testbed.proxy.nftables.render import NftablesConfig, render_table
from testbed.proxy.nftables.sync import NftablesSyncer
from testbed.proxy.nftables.table import dump
from testbed.proxy.tracker import ProxyState

GOLDEN = Path(__file__).resolve().parents[3] / "golden"
INPUTS = sorted(GOLDEN.glob("nftables-*.inputs.yaml"))
NFT_RULES = json.loads((Path(__file__).parent / "data" / "nft-1.0.6-rules.json").read_text())["rules"]


def _names():
    n = iter(range(1, 10 ** 6))
    return lambda kind: f"__{kind}k{next(n)}"


def _compile(text):
    return nc.compile_transaction(text, _names())


def _counts(text):
    lines = [ln for ln in text.split("\n") if ln and not ln.startswith("#")]
    return lines, sum(1 for ln in lines if " vmap { " in ln or (" { " in ln and ln.startswith("add rule")
                                                                    and " , " in ln))


def _check_transaction(text):
    out = _compile(text)
    lines, anon = _counts(text)
    types = [m[0] for m in out.messages]
    assert types.count(nc.NEWRULE) == sum(ln.startswith("add rule ") for ln in lines)
    assert types.count(nc.NEWCHAIN) == sum(ln.startswith("add chain ") for ln in lines)
    assert types.count(nc.NEWSET) == sum(ln.startswith(("add set ", "add map ")) for ln in lines) + anon
    # every line but grouped element lines is a message of its own
    singles = {i + 1 for i, ln in enumerate(text.split("\n"))
               if ln and not ln.startswith("#") and " element " not in ln}
    assert singles <= set(out.lines)
    return out


@pytest.mark.parametrize("inputs", INPUTS, ids=lambda p: p.name.removesuffix(".inputs.yaml"))
def test_every_golden_full_sync_compiles(inputs):
    harness, cfg = load(inputs)
    state = ProxyState(cfg.node_name, cfg.ip_family)
    state.apply(harness.objects)
    plan = NftablesSyncer(cfg).plan(state, now=0.0)
    _check_transaction(plan.text)
    _check_transaction(dump(plan.next_state.table))


def test_every_golden_step_compiles():
    steps = render_steps(GOLDEN / "nftables-sync-repeated.steps.txt")
    texts = [t for s in steps for t in s.transactions]
    assert len(texts) >= len(steps)
    for text in texts:
        _check_transaction(text)


@pytest.mark.parametrize("line", sorted(NFT_RULES))
def test_rule_bytes_as_nft_sends_them(line):
    out = _compile(line)
    ((mtype, flags, body),) = out.messages
    assert mtype == nc.NEWRULE and flags == nc.F_CREATE | nc.F_APPEND
    assert body.hex() == NFT_RULES[line]


def test_anonymous_vmap_is_named_set_elements_and_lookup():
    line = ("add rule ip kube-proxy services numgen random mod 2 vmap "
            "{ 0 : goto endpoint-X/a , 1 : goto endpoint-Y/b }")
    out = _compile(line)
    assert [m[0] for m in out.messages] == [nc.NEWSET, nc.NEWSETELEM, nc.NEWRULE]
    assert out.lines == [1, 1, 1]
    newset, elems, rule = (m[2] for m in out.messages)
    assert b"__mapk1\0" in newset and b"%" not in newset
    assert b"__mapk1\0" in rule and b"endpoint-Y/b\0" in elems
    flags = nc.u32(3, nc._ANON | nc._CONST | nc._MAP)
    assert flags in newset


def test_interval_set_elements_merge_and_end_markers():
    ranges = nc._ranges(["203.0.113.0/24", "198.51.100.0/25", "5.6.7.8", "9.9.9.9", "5.6.7.9"])
    assert ranges == [(0x05060708, 0x05060709), (0x09090909, 0x09090909),
                      (0xC6336400, 0xC633647F), (0xCB007100, 0xCB0071FF)]
    assert len(nc._interval_elements(ranges)) == 1 + 2 * 4
    assert len(nc._interval_elements(nc._ranges(["0.0.0.0/1"]))) == 2     # no leading end marker
    assert len(nc._interval_elements(nc._ranges(["128.0.0.0/1"]))) == 2    # no trailing one


@pytest.mark.parametrize("line", [
    "add rule ip kube-proxy c tcp dport 22 accept",
    "add rule ip6 kube-proxy c ip6 saddr ::1 drop",
    "add rule ip kube-proxy c counter",
    "add rule ip kube-proxy c ip daddr 1.2.3.4 dnat to 5.6.7.8",
    "add set ip kube-proxy s { type ether_addr ; }",
    "insert rule ip kube-proxy c drop",
    "add rule ip other c drop",
])
def test_unknown_forms_are_refused(line):
    with pytest.raises(nc.Unsupported):
        _compile(line)


def test_elements_of_one_run_are_grouped_per_set_and_split_below_64k():
    ips = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(9000)]
    text = "".join(f"add element ip kube-proxy cluster-ips {{ {ip} }}\n"
                   f"add element ip kube-proxy service-ips {{ {ip} . tcp . 80 : goto c }}\n" for ip in ips)
    out = _compile(text)
    assert {m[0] for m in out.messages} == {nc.NEWSETELEM}
    assert all(len(m[2]) < 65536 for m in out.messages)
    assert 2 < len(out.messages) < 20
    assert out.lines[0] == 1 and out.lines[-1] == 2


def test_batch_frames_messages_and_acks_only_the_last():
    out = _compile("add chain ip kube-proxy a\nflush chain ip kube-proxy a\n")
    batch = encode_batch(out.messages, 7)
    hdr = struct.Struct("=IHHII")
    off, seen = 0, []
    while off < len(batch):
        length, mtype, flags, seq, _ = hdr.unpack_from(batch, off)
        seen.append((mtype, flags, seq))
        off += length
    assert seen == [(0x10, 1, 7), (0xA03, 0x401, 8), (0xA08, 0x5, 9), (0x11, 1, 10)]


def test_render_of_ipv6_is_refused_for_fallback():
    cfg = NftablesConfig(node_name="n1", ip_family="IPv6")
    text = dump(render_table(cfg, {}, {}))
    with pytest.raises(nc.Unsupported):
        _compile(text)


def test_overlong_comment_is_left_to_nft():
    with pytest.raises(nc.Unsupported):
        _compile(f'add chain ip kube-proxy c {{ comment "{"x" * 300}" ; }}')
