"""Every upstream golden case and every step of every steps file, byte for byte."""

from pathlib import Path

import pytest

from testbed.proxy.harness import load_inputs, parse_steps, render_file, render_steps
from testbed.proxy.iptables.sortorder import sort_restore_text

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
INPUTS = sorted(GOLDEN.glob("iptables-*.inputs.yaml"))
STEPS = sorted(GOLDEN.glob("iptables-*.steps.txt"))


def _case(p: Path) -> str:
    return p.name.removesuffix(".inputs.yaml")


def test_goldens_exist():
    assert INPUTS and STEPS


@pytest.mark.parametrize("inputs", INPUTS, ids=_case)
def test_inputs_golden(inputs):
    expected = (GOLDEN / f"{_case(inputs)}.expected.txt").read_text()
    assert render_file(inputs, sorted=True) == expected


@pytest.mark.parametrize("inputs", INPUTS, ids=_case)
def test_emission_order_sorts_to_golden(inputs):
    raw = render_file(inputs)
    expected = (GOLDEN / f"{_case(inputs)}.expected.txt").read_text()
    assert sort_restore_text(raw) == expected
    # emission order: filter then nat, KUBE-SERVICES tail rule last in nat
    nat = raw.split("*nat\n")[1].splitlines()
    assert nat[-2].startswith("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports")
    assert nat[:4] == [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
                       ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]


STEP_CASES = [(path, i) for path in STEPS for i in range(len(parse_steps(path).steps))]


@pytest.mark.parametrize("path,index", STEP_CASES,
                         ids=[f"{p.name.removesuffix('.steps.txt')}-step{i + 1}"
                              for p, i in STEP_CASES])
def test_steps_golden(path, index):
    sf = parse_steps(path)
    texts = render_steps(path)
    assert len(texts) == len(sf.steps)
    assert sf.steps[index].expected is not None
    assert texts[index] == sf.steps[index].expected


def test_steps_structure():
    sf = parse_steps(GOLDEN / "iptables-sync-repeated.steps.txt")
    assert [s.number for s in sf.steps] == list(range(1, 10))
    assert sf.base_inputs.name == "iptables-clusterip-basic.inputs.yaml"
    last = sf.steps[-1]
    assert last.restore_failure and last.force_full
    assert not any(s.restore_failure for s in sf.steps[:-1])
    assert sf.steps[7].operations == []       # "sync again with no changes"


def test_render_steps_unsorted_sorts_to_same():
    path = GOLDEN / "iptables-sync-repeated.steps.txt"
    assert [sort_restore_text(t) for t in render_steps(path, sorted=False)] == render_steps(path)


def test_harness_config():
    cfg = load_inputs(GOLDEN / "iptables-clusterip-basic.inputs.yaml").config
    assert cfg.node_name == "test-node" and cfg.node_ips == ("192.168.0.2",)
    assert cfg.masquerade_mark == "0x4000"
    assert cfg.local_detector.if_not_local() == "! -s 10.0.0.0/8"
    assert cfg.nfacct_ct_state_invalid and cfg.nfacct_localhost_nodeports
    assert not cfg.random_fully and not cfg.conntrack_tcp_be_liberal


def test_harness_rejects_other_modes(tmp_path):
    p = tmp_path / "x.inputs.yaml"
    p.write_text("kind: KubeProxyTestHarness\nmode: ipvs\nnodeName: n\n")
    with pytest.raises(ValueError, match="ipvs"):
        render_file(p)
