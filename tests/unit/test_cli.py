"""CLI behaviour that needs no root: error reporting, exit codes, render."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import cli
from testbed.cli import cluster as cluster_verbs
from testbed.kubectl.table import format_rows
from testbed.proxy.harness import render_steps as iptables_render_steps
from testbed.proxy.modes import RENDERERS
from testbed.proxy.nftables.golden import render_steps
from testbed.proxy.nftables.table import sort_nft


def run(*args: str, euid: int | None = None, state_root: str | None = None) -> subprocess.CompletedProcess:
    code = "import os,sys; from testbed import cli; "
    if euid is not None:
        code += f"os.geteuid = lambda: {euid}; "
    code += "sys.argv = ['testbed'] + sys.argv[1:]; cli.main()"
    env = dict(os.environ, **({"TESTBED_STATE_ROOT": state_root} if state_root else {}))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


def test_non_root_gets_one_line_and_exit_77():
    res = run("up", "scenarios/quickstart.yaml", euid=1000)
    assert res.returncode == 77
    assert res.stderr.strip().splitlines() == [
        "error: testbed up needs root: it creates network namespaces and netfilter rules; run it with sudo"]
    assert "Traceback" not in res.stderr


def test_invalid_scenario_lists_problems_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: testbed/v1\nkind: Scenario\nspec: {backend: udp, nodes: 0}\n")
    res = run("up", str(bad), euid=0)
    assert res.returncode == 2
    assert f"{bad}: 2 problems:" in res.stderr
    assert "spec.backend: unsupported value 'udp'; allowed: vxlan, host-gw" in res.stderr
    assert "spec.nodes: node count must be from 1 to 250, got 0" in res.stderr


def test_render_matches_golden():
    res = run("render", "-f", "tests/golden/iptables-clusterip-basic.inputs.yaml", "--sorted")
    assert res.returncode == 0, res.stderr
    assert res.stdout == open("tests/golden/iptables-clusterip-basic.expected.txt").read()


def test_render_iptables_steps_keeps_its_format():
    steps = "tests/golden/iptables-sync-repeated.steps.txt"
    res = run("render", "-f", steps, "--steps")
    assert res.returncode == 0, res.stderr
    texts = iptables_render_steps(steps, sorted=True)
    assert res.stdout == "".join(f"### step {i}\n{t}" for i, t in enumerate(texts, 1))


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("dir", "is a directory, not a file"),
    ("", "no KubeProxyTestHarness document (the fake proxier's parameters, as in tests/golden/*.inputs.yaml)"),
    ("kind: [\n", "not valid YAML at line 2, column 1: expected the node content, but found '<stream end>' "
                  "(while parsing a flow node)"),
    ("- a list\n", "every document must be a mapping (a KubeProxyTestHarness or a Kubernetes object)"),
])
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_render_bad_input_is_one_line_and_exit_2(tmp_path, content, message, mode):
    f = tmp_path / "in.inputs.yaml"
    if content == "dir":
        f.mkdir()
    elif content is not None:
        f.write_text(content)
    res = run("render", "-f", str(f), "--proxy-mode", mode)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"error: {f}: {message}"]


def test_render_missing_steps_file_is_one_line(tmp_path):
    res = run("render", "-f", str(tmp_path / "x.steps.txt"))
    assert (res.returncode, res.stderr.splitlines()) == (2, [f"error: {tmp_path / 'x.steps.txt'}: file not found"])


NFT_INPUTS = sorted(str(p) for p in Path("tests/golden").glob("nftables-*.inputs.yaml"))


@pytest.mark.parametrize("inputs", NFT_INPUTS, ids=lambda p: Path(p).name)
def test_render_nftables_matches_golden(inputs):
    res = run("render", "-f", inputs, "--proxy-mode", "nftables", "--sorted")
    assert res.returncode == 0, res.stderr
    expected = Path(inputs.replace(".inputs.yaml", ".expected.nft")).read_text()
    # upstream compares the table through its sort; --sorted prints exactly that form
    assert res.stdout.splitlines() == sort_nft(expected)


def test_render_nftables_steps_prints_every_sync():
    steps = "tests/golden/nftables-sync-repeated.steps.txt"
    res = run("render", "-f", steps, "--proxy-mode", "nftables", "--steps")
    assert res.returncode == 0, res.stderr
    headers = [ln for ln in res.stdout.splitlines() if ln.startswith("### step ")]
    assert headers[0].startswith("### step 1 (full sync, ")
    assert len(headers) == len(render_steps(steps)) > 1
    assert all("partial sync" in h for h in headers[1:])


@pytest.mark.parametrize("mode, words", [("ipvs", "has no renderer"), ("bogus", "is not implemented")])
def test_render_mode_without_renderer_is_one_line(mode, words):
    res = run("render", "-f", "tests/golden/iptables-clusterip-basic.inputs.yaml", "--proxy-mode", mode)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"error: --proxy-mode: proxy mode {mode!r} {words}; render supports: {', '.join(RENDERERS)}"]
    assert "nftables" in RENDERERS and "iptables" in RENDERERS


def test_unknown_output_format_is_an_error(monkeypatch):
    with pytest.raises(Exception, match="unknown output format 'xml'"):
        monkeypatch.setattr(cluster_verbs.Cluster, "status", lambda self: {})
        monkeypatch.setattr(cluster_verbs.state, "clusters", lambda: ["x"])
        cluster_verbs.status("x", output="xml")


def test_columns_like_kubectl():
    assert format_rows(["NAME", "IP"], [["a", "10.0.0.1"], ["long-name", "-"]]) == (
        "NAME        IP\na           10.0.0.1\nlong-name   -\n")


NOSUCH = "nosuch-cluster-for-tests"


def one_line_not_found(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 4, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cluster {NOSUCH!r} is not up"), lines
    assert "Errno" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("argv", [
    ["get", "pods", "-c", NOSUCH],
    ["describe", "svc", "web", "--cluster", NOSUCH],
    ["status", NOSUCH],
    ["logs", "web", "-c", NOSUCH],
])
def test_unknown_cluster_exits_4_with_one_line(tmp_path, argv):
    one_line_not_found(run(*argv, euid=0, state_root=str(tmp_path)))


def test_restart_of_unknown_cluster_is_one_clear_line(tmp_path):
    one_line_not_found(run("restart", NOSUCH, euid=0, state_root=str(tmp_path)))


def _commands(group, prefix=""):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_c_is_the_cluster_on_every_verb_and_the_container_is_always_long():
    import typer

    seen = set()
    for name, cmd in _commands(typer.main.get_command(cli.app)):
        for p in cmd.params:
            if "-c" in p.opts:
                assert p.name == "cluster", f"{name}: -c is {p.name}"
            if p.name == "container":
                assert p.opts == ["--container"], f"{name}: {p.opts}"
                seen.add(name)
            if p.name == "cluster" and p.param_type_name == "option":
                assert sorted(p.opts) == ["--cluster", "-c"], f"{name}: {p.opts}"
    assert {"logs", "kill"} <= seen


def test_apply_of_an_empty_file_says_so(tmp_path):
    (tmp_path / "empty.yaml").write_text("---\n")
    res = run("apply", "-f", str(tmp_path / "empty.yaml"), "-c", NOSUCH, state_root=str(tmp_path))
    assert res.returncode == 1 and res.stderr == "error: no objects passed to apply\n"


def test_malformed_checks_are_bad_input_exit_2(tmp_path):
    bad = tmp_path / "bad-checks.yaml"
    bad.write_text("apiVersion: testbed/v1\nkind: Scenario\nmetadata: {name: t}\nspec: {nodes: 2}\n"
                   "checks:\n- name: c1\n  from: node/node1\n  to: {service: web, via: nodePort, node: [1]}\n"
                   "  expect: {reach: answered}\n")
    res = run("up", str(bad), euid=0)
    assert res.returncode == 2, res.stderr
    assert f"{bad}: " in res.stderr and "checks[0].to.node: " in res.stderr
    assert "Traceback" not in res.stderr


def test_every_area_registers_its_verbs():
    import typer

    names = {name for name, _ in _commands(typer.main.get_command(cli.app))}
    assert names == {
        "up", "down", "ls", "status", "restart", "run", "etcdctl",          # cluster
        "kubeconfig",
        "apply", "get", "describe", "delete", "events",                     # objects
        "rollout status", "rollout history", "rollout undo", "scale", "set image", "kill", "readiness",
        "logs", "exec", "capture",                                          # debug
        "rules", "metrics", "render",                                       # proxy
        "verify",
        "trace", "doctor",                                                  # troubleshoot
    }


def test_troubleshoot_verbs_refuse_a_bad_output_format():
    from typer.testing import CliRunner

    for argv in (["trace", "pod/a", "service/b", "-o", "yaml"], ["doctor", "-o", "yaml"]):
        res = CliRunner().invoke(cli.app, argv)
        assert res.exit_code != 0 and "allowed: table, json" in str(res.exception or res.output)


def test_etcdctl_on_a_cluster_without_etcd_is_one_line(tmp_path):
    (tmp_path / "state" / "c1").mkdir(parents=True)
    (tmp_path / "state" / "c1" / "state.json").write_text('{"store": {"kind": "embedded"}}')
    res = run("etcdctl", "-c", "c1", "get", "/registry/pods/default/x", state_root=str(tmp_path / "state"))
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "error: cluster c1 keeps its objects in the embedded store, not etcd "
        "(bring it up with spec.store: etcd or --store etcd)"], res.stderr


def test_etcdctl_runs_with_the_recorded_endpoint_and_passes_the_exit_code_through(tmp_path):
    # an endpoint nobody listens on: etcdctl itself fails, and its exit code is ours
    (tmp_path / "state" / "c1").mkdir(parents=True)
    (tmp_path / "state" / "c1" / "state.json").write_text(
        '{"store": {"kind": "etcd", "endpoints": "http://127.0.0.1:1"}}')
    res = run("etcdctl", "-c", "c1", "--command-timeout=1s", "get", "/x", state_root=str(tmp_path / "state"))
    assert res.returncode == 1 and "127.0.0.1:1" in res.stderr, res.stderr


def test_rollout_status_timeout_is_a_duration_like_kubectl():
    import threading

    from testbed.cli.workloads import rollout_timeout

    assert (rollout_timeout("90s"), rollout_timeout("1m30s"), rollout_timeout("2")) == (90.0, 90.0, 2.0)
    assert rollout_timeout("0") == threading.TIMEOUT_MAX
    res = run("rollout", "status", "deploy/web", "--timeout", "9x", "-c", "none")
    assert (res.returncode, res.stderr.splitlines()) == (
        2, ["error: --timeout: '9x' is not a duration (e.g. 90s, 5m, 1m30s)"])


@pytest.mark.parametrize("argv, allowed", [
    (["status", "-o", "wide"], "table, json, yaml"),
    (["metrics", "-o", "yaml"], "table, json"),
    (["doctor", "-o", "yaml"], "table, json"),
    (["trace", "pod/a", "service/b", "-o", "wide"], "table, json"),
])
def test_bad_output_format_is_invalid_input_before_any_cluster_lookup(argv, allowed):
    res = run(*argv, *(["-c", NOSUCH] if argv[0] != "status" else [NOSUCH]))
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [f"error: unknown output format {argv[-1]!r}; allowed: {allowed}"]


@pytest.mark.parametrize("option, line", [
    (["--proxy-mode", "bogus"], "error: --proxy-mode: unsupported value 'bogus'; allowed: iptables, ipvs, nftables, "
                                "userspace, none"),
    (["--store", "mysql"], "error: --store: unsupported value 'mysql'; allowed: embedded, etcd"),
])
def test_up_with_a_bad_option_value_is_one_line_and_exit_2(tmp_path, option, line):
    res = run("up", "scenarios/quickstart.yaml", "--name", "qa-none", *option, euid=0,
              state_root=str(tmp_path / "state"))
    assert (res.returncode, res.stdout, res.stderr.splitlines()) == (2, "", [line])
    assert not (tmp_path / "state" / "qa-none").exists()


def test_capture_of_a_pod_that_is_not_there_is_exec_s_one_line_error():
    from testbed.capture import capture_point
    from testbed.errors import TestbedError

    class NoPods:
        name = "c1"

        def netns_of(self, target):
            raise TestbedError(f"no pod {target.partition('/')[2]!r} in cluster c1")

        def pod(self, name, namespace=None):
            raise KeyError(name)

    with pytest.raises(TestbedError, match="^no pod 'nope' in cluster c1$"):
        capture_point(NoPods(), "pod/nope")


@pytest.mark.parametrize("argv, line", [
    (["readiness", "pod/web-1"], "error: give exactly one of --fail and --pass"),
    (["set", "image", "deploy/web"], "error: give at least one CONTAINER=IMAGE"),
])
def test_missing_required_choice_is_invalid_input(argv, line):
    res = run(*argv, "-c", NOSUCH)
    assert (res.returncode, res.stderr.splitlines()) == (2, [line])


def test_verify_check_that_the_scenario_does_not_have_is_invalid_input():
    from testbed.errors import BadOptionError
    from testbed.verify.runner import Verifier

    v = Verifier.__new__(Verifier)
    v.checks = [type("C", (), {"name": "a"})()]
    with pytest.raises(BadOptionError, match="^--check: no check b; checks: a$") as e:
        v.run(["b"])
    assert e.value.exit_code == 2
