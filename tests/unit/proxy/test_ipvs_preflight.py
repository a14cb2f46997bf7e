"""``testbed up --proxy-mode ipvs`` on a kernel without ip_vs fails at once, in one line."""

from __future__ import annotations

import os

import pytest

from testbed.errors import TestbedError
from testbed.proxy.ipvs.preflight import ipvs_problem


def _root(tmp_path, *, ip_vs=False, dummy=False, modules=(), builtin=(), loadable=True, disabled="0"):
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/modules_disabled").write_text(disabled + "\n")
    if loadable:
        (tmp_path / "proc/modules").write_text("")
    if ip_vs:
        (tmp_path / "proc/net/ip_vs").write_text("")
    if dummy:
        (tmp_path / "sys/module/dummy").mkdir(parents=True)
    mods = tmp_path / "lib/modules/6.1.0-test"
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text("".join(f"kernel/net/{m}.ko.xz: \n" for m in modules))
    (mods / "modules.builtin").write_text("".join(f"kernel/drivers/net/{m}.ko\n" for m in builtin))
    return str(tmp_path)


def no_genl(name):
    return None


def test_everything_present(tmp_path):
    assert ipvs_problem(_root(tmp_path, ip_vs=True, dummy=True), "6.1.0-test", no_genl) is None


def test_loadable_modules_are_enough(tmp_path):
    root = _root(tmp_path, modules=("netfilter/ipvs/ip_vs",), builtin=("dummy",))
    assert ipvs_problem(root, "6.1.0-test", no_genl) is None


def test_genl_family_counts_as_present(tmp_path):
    root = _root(tmp_path, dummy=True)
    assert ipvs_problem(root, "6.1.0-test", lambda name: 0x20 if name == "IPVS" else None) is None


def test_missing_both_one_line_with_what_to_do(tmp_path):
    msg = ipvs_problem(_root(tmp_path, loadable=False), "6.1.0-test", no_genl)
    assert msg is not None and "\n" not in msg
    assert "ip_vs" in msg and "dummy" in msg and "scripts/kernel-lane" in msg


def test_modules_disabled(tmp_path):
    msg = ipvs_problem(_root(tmp_path, dummy=True, modules=("netfilter/ipvs/ip_vs",), disabled="1"),
                       "6.1.0-test", no_genl)
    assert msg is not None and "ip_vs" in msg and "dummy interfaces" not in msg


def test_cluster_up_fails_before_building_anything(monkeypatch):
    """The preflight hook runs after validation and before any state is claimed."""
    from testbed import cluster, scenario, state

    monkeypatch.setattr(cluster, "require_root", lambda what="": None)
    monkeypatch.setattr("testbed.proxy.ipvs.preflight.ipvs_problem", lambda: "proxy mode ipvs needs ip_vs (test)")
    claimed = []
    monkeypatch.setattr(state, "claim", lambda name: claimed.append(name))
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "ipvs7pre"},
           "spec": {"nodes": 1, "proxyMode": "ipvs"}}
    with pytest.raises(TestbedError, match="needs ip_vs"):
        cluster.Cluster.up(scenario.parse(doc))
    assert claimed == []
    # other modes, and topology-only clusters, are not checked
    monkeypatch.setattr(cluster.topology, "apply_plan", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("built")))
    monkeypatch.setattr(cluster.teardown, "down", lambda name: {})
    monkeypatch.setattr(state, "write_json", lambda *a, **k: None)
    monkeypatch.setattr(state, "in_memory", lambda name: None)
    with pytest.raises(RuntimeError, match="built"):
        cluster.Cluster.up(scenario.parse(doc), control_plane=False)
    assert claimed == ["ipvs7pre"]
