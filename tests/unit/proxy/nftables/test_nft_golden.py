"""Every nftables golden case and every step of the upstream steps file, compared as upstream."""

from pathlib import Path

import pytest

from testbed.proxy.tracker import ProxyState
from testbed.proxy.nftables.golden import (
    config_from_harness,
    expected_operations,
    load,
    render_file,
    render_steps,
    steps_text,
)
from testbed.proxy.nftables.render import render_table
from testbed.proxy.nftables.table import dump, sort_nft

GOLDEN = Path(__file__).resolve().parents[3] / "golden"
INPUTS = sorted(GOLDEN.glob("nftables-*.inputs.yaml"))
STEPS = GOLDEN / "nftables-sync-repeated.steps.txt"


def _case(p: Path) -> str:
    return p.name.removesuffix(".inputs.yaml")


def test_cases_present():
    names = {_case(p) for p in INPUTS}
    assert {"nftables-clusterip-basic", "nftables-overall", "nftables-etp-local",
            "nftables-features", "nftables-masquerade-all"} <= names


@pytest.mark.parametrize("inputs", INPUTS, ids=_case)
def test_inputs_golden(inputs):
    expected = (GOLDEN / f"{_case(inputs)}.expected.nft").read_text()
    assert sort_nft(render_file(inputs)) == sort_nft(expected)


@pytest.mark.parametrize("inputs", INPUTS, ids=_case)
def test_sorted_render_is_the_comparator_form(inputs):
    assert render_file(inputs, sorted=True).splitlines() == sort_nft(render_file(inputs))


RESULTS = render_steps(STEPS)


@pytest.mark.parametrize("index", range(len(RESULTS)), ids=lambda i: f"step{i + 1}")
def test_steps_table_after_each_sync(index):
    step = RESULTS[index]
    assert sort_nft(step.dump) == sort_nft(step.expected)


def test_steps_operation_counts_match_upstream():
    asserted = {s.number: expected_operations(s) for s in RESULTS if expected_operations(s) is not None}
    assert asserted == {2: 10, 3: 4, 4: 0, 5: 2, 6: 10, 7: 9, 8: 12, 9: 5, 10: 14, 12: 0}
    assert {n: s.operations for s in RESULTS for n in [s.number] if n in asserted} == asserted


def test_steps_stale_chain_flushed_then_deleted():
    step3, step4 = RESULTS[2], RESULTS[3]
    assert "flush chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080" in step3.transactions[-1]
    assert "delete chain" not in step3.transactions[-1]
    deletes = [ln for ln in step4.transactions[-1].splitlines() if ln.startswith("delete")]
    assert sorted(deletes) == [
        "delete chain ip kube-proxy endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080",
        "delete chain ip kube-proxy service-MHHHYRWA-ns2/svc2/tcp/p8080"]
    assert step4.operations == 0


def test_step_11_runs_two_syncs():
    assert len(RESULTS[10].transactions) == 2


def test_steps_text_reports_operations():
    text = steps_text(STEPS)
    assert "### step 2 (partial sync, 10 operations)" in text
    assert "### step 1 (full sync" in text


def test_harness_errors_name_field_and_values():
    with pytest.raises(ValueError, match=r"x.yaml: localDetector.mode 'Bogus': allowed values are "
                                         r"ClusterCIDR, NodeCIDR"):
        config_from_harness({"mode": "nftables", "localDetector": {"mode": "Bogus"}}, "x.yaml")
    with pytest.raises(ValueError, match="ipFamily 'IPv5': allowed values are IPv4, IPv6"):
        config_from_harness({"mode": "nftables", "ipFamily": "IPv5"})


def test_iptables_inputs_are_refused(tmp_path):
    p = tmp_path / "x.inputs.yaml"
    p.write_text("kind: KubeProxyTestHarness\nmode: iptables\nnodeName: n\n")
    with pytest.raises(ValueError, match="expected nftables"):
        render_file(p)


def test_render_table_is_the_full_sync_dump():
    inputs, cfg = load(GOLDEN / "nftables-overall.inputs.yaml")
    state = ProxyState(cfg.node_name, cfg.ip_family)
    state.apply(inputs.objects)
    table = render_table(cfg, {nn: state.ports_of(nn) for nn in state.services()},
                         state.endpoints_map)
    assert sort_nft(dump(table)) == sort_nft((GOLDEN / "nftables-overall.expected.nft").read_text())
