"""CLI behaviour that needs no root: error reporting, exit codes, render."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testbed import cli


def run(*args: str, euid: int | None = None) -> subprocess.CompletedProcess:
    code = "import os,sys; from testbed import cli; "
    if euid is not None:
        code += f"os.geteuid = lambda: {euid}; "
    code += "sys.argv = ['testbed'] + sys.argv[1:]; cli.main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


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


def test_unknown_output_format_is_an_error(monkeypatch):
    with pytest.raises(Exception, match="unknown output format 'xml'"):
        monkeypatch.setattr(cli.Cluster, "status", lambda self: {})
        cli.status("x", output="xml")


def test_columns_like_kubectl():
    assert cli.columns(["NAME", "IP"], [["a", "10.0.0.1"], ["long-name", "-"]]) == (
        "NAME        IP\na           10.0.0.1\nlong-name   -")
