"""The netlink path (``nfnl.NetlinkRunner``) against ``nft -f`` on the same text: for every golden
case and every step of the upstream sync sequence, both paths applied in two throwaway
namespaces must give the same ``nft list table`` output, line for line."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import netns
from testbed.proxy.nftables.apply import NftApplier
from testbed.proxy.nftables.golden import load, render_steps
from testbed.proxy.nftables.nfnl import NetlinkRunner
from testbed.proxy.nftables.runner import NftProcess, RunError
from testbed.proxy.nftables.sync import NftablesSyncer
from testbed.proxy.tracker import ProxyState

from .netutil import uniq

pytestmark = pytest.mark.root

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
INPUTS = sorted(GOLDEN.glob("nftables-*.inputs.yaml"))


@pytest.fixture
def pair():
    base = f"tb.{uniq('nfnl')}"
    names = [f"{base}.netlink", f"{base}.nft"]
    runner = None
    try:
        with netns.Runner(1) as r:
            for name in names:
                r.run_new(name, lambda: None)
        runner = netns.run_in(names[0], lambda: NetlinkRunner(NftProcess()))
        yield names, runner
    finally:
        if runner is not None:
            runner.close()
        for name in names:
            netns.delete(name)
        assert not netns.list_names(base + ".")


def _apply_both(names, runner: NetlinkRunner, text: str) -> tuple[str, str]:
    runner.run(text)
    NftApplier(names[1]).run(text)
    return NftApplier(names[0]).list_text(), NftApplier(names[1]).list_text()


def _full_sync_text(inputs: Path) -> str:
    harness, cfg = load(inputs)
    state = ProxyState(cfg.node_name, cfg.ip_family)
    state.apply(harness.objects)
    return NftablesSyncer(cfg).plan(state, now=0.0).text


@pytest.mark.parametrize("inputs", INPUTS, ids=lambda p: p.name.removesuffix(".inputs.yaml"))
def test_golden_full_sync_same_listing_as_nft(pair, inputs):
    names, runner = pair
    ours, nft = _apply_both(names, runner, _full_sync_text(inputs))
    assert runner.fallbacks == 0
    assert "numgen random mod" in nft or "vmap" in nft
    assert ours.splitlines() == nft.splitlines()
    # the same full sync again over the existing table (a resync) stays identical
    ours, nft = _apply_both(names, runner, _full_sync_text(inputs))
    assert ours.splitlines() == nft.splitlines()


def test_golden_steps_same_listing_after_every_sync(pair):
    names, runner = pair
    steps = render_steps(GOLDEN / "nftables-sync-repeated.steps.txt")
    for step in steps:
        for text in step.transactions:
            ours, nft = _apply_both(names, runner, text)
            assert ours.splitlines() == nft.splitlines(), step.title
    assert runner.fallbacks == 0


def test_rejected_batch_changes_nothing_and_names_the_line(pair):
    names, runner = pair
    text = _full_sync_text(INPUTS[0])
    runner.run(text)
    before = NftApplier(names[0]).list_text()
    bad = ("flush chain ip kube-proxy services\n"
           "add rule ip kube-proxy no-such-chain ip saddr 10.0.0.1 drop\n")
    with pytest.raises(RunError) as info:
        runner.run(bad)
    assert info.value.line == 2 and "No such file or directory" in info.value.message
    assert "\n" not in info.value.message
    assert NftApplier(names[0]).list_text() == before


def test_unknown_form_falls_back_to_nft(pair):
    names, runner = pair
    text = ('add table ip kube-proxy { comment "rules for kube-proxy" ; }\n'
            "add chain ip kube-proxy c\n"
            "add rule ip kube-proxy c tcp dport 22 counter accept\n")
    netns.run_in(names[0], runner.run, text)
    assert runner.fallbacks == 1
    assert "tcp dport 22 counter packets 0 bytes 0 accept" in NftApplier(names[0]).list_text()


def test_existing_from_a_netlink_dump_matches_nft_listing(pair):
    names, runner = pair
    assert netns.run_in(names[0], runner.existing).chains == frozenset()     # no table yet
    for inputs in INPUTS:
        runner.run(_full_sync_text(inputs))
    runner.run("add chain ip kube-proxy endpoint-ZZZZZZZZ-ns/gone/tcp/p__10.9.9.9/80\n")
    ours = netns.run_in(names[0], runner.existing)
    nft = netns.run_in(names[0], NftProcess().existing)
    assert ours == nft
    assert any(s.startswith("affinity-") for s in ours.sets)
    assert "endpoint-ZZZZZZZZ-ns/gone/tcp/p__10.9.9.9/80" in ours.chains
    assert len(ours.chains) > 20


def test_table_exists(pair):
    names, runner = pair
    assert not runner.table_exists()
    runner.run(_full_sync_text(INPUTS[0]))
    assert runner.table_exists()
    NftApplier(names[0]).delete_table()
    assert not runner.table_exists()
