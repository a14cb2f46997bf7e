"""The registry of proxy modes: one list read by the scenario validator, the CLI and the proxy
process; every mode package offers the same entry points."""

import inspect

import pytest

from testbed import scenario
from testbed.errors import TestbedError, ValidationError
from testbed.proxy import modes
from testbed.proxy.syncer import ProxyConfig, Syncer

ENTRY_POINTS = ("make_syncer", "problem", "dump_rules", "check_rules", "cleanup")


class FakeIptables:
    def save(self):
        return ""

    def restore(self, text):
        return 0, ""

    def has_canary(self):
        return True


class FakeRunner:
    kind = "fake"

    def close(self):
        pass


def test_registry_names_the_modes_in_order():
    assert modes.NAMES == ("iptables", "ipvs", "nftables", "userspace")
    assert scenario.PROXY_MODES == ("iptables", "ipvs", "nftables", "userspace", "none")


@pytest.mark.parametrize("name", modes.NAMES)
def test_every_mode_module_has_the_entry_points(name):
    module = modes.get(name)._module()
    for fn in ENTRY_POINTS:
        assert callable(getattr(module, fn, None)), f"{name}: no {fn}"
    assert list(inspect.signature(module.check_rules).parameters) == ["cluster", "node", "ns"]


@pytest.mark.parametrize("name,host", [
    ("iptables", {"random_fully": True, "be_liberal": False, "iptables": FakeIptables()}),
    ("ipvs", {"random_fully": True, "kernel": object(), "iptables": FakeIptables()}),
    ("nftables", {"runner": FakeRunner()}),
    ("userspace", {}),
])
def test_every_mode_makes_a_syncer_the_loop_can_drive(name, host):
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8")
    syncer = modes.get(name).make_syncer(cfg, **host)
    assert syncer.mode == name and syncer.needs_full_sync
    for member in [m for m in dir(Syncer) if not m.startswith("_")]:
        assert hasattr(syncer, member), f"{name} syncer lacks {member}"
    syncer.sync_failed()
    assert syncer.needs_full_sync


def test_unknown_mode_is_a_one_line_error_listing_the_modes():
    with pytest.raises(TestbedError) as e:
        modes.get("nosuchmode")
    assert str(e.value) == "proxy mode 'nosuchmode' is not implemented; modes: iptables, ipvs, nftables, userspace"


def test_scenario_rejects_an_unregistered_mode():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "m"},
           "spec": {"nodes": 1, "proxyMode": "kernelspace"}}
    with pytest.raises(ValidationError) as e:
        scenario.parse(doc)
    assert "spec.proxyMode" in str(e.value) and "iptables, ipvs, nftables, userspace, none" in str(e.value)


def test_proxy_process_refuses_an_unregistered_mode(caplog):
    from testbed.proxy.__main__ import main
    assert main(["--cluster", "c", "--node", "n", "--api", "x", "--node-ip", "1.2.3.4", "--mode", "nope"]) == 2
    assert "--mode nope is not implemented by this process (iptables, ipvs, nftables, userspace)" in caplog.text


def test_cleanup_conflicting_cleans_only_modes_that_cannot_stay(monkeypatch):
    cleaned = []

    class Fake(modes.ProxyMode):
        def cleanup(self):
            cleaned.append(self.name)

    fake = {m.name: m for m in (Fake("a", "x", "", frozenset({"b"})), Fake("b", "x", "", frozenset({"a"})),
                                Fake("c", "x", ""))}
    monkeypatch.setattr(modes, "MODES", fake)
    assert modes.cleanup_conflicting("a") == ["c"] and cleaned == ["c"]
    cleaned.clear()
    assert modes.cleanup_conflicting("c") == ["a", "b"] and cleaned == ["a", "b"]
    # iptables and ipvs share their chains: neither removes the other's; nftables mode removes
    # both and both remove its table; userspace's chains and jumps go when another mode starts,
    # and theirs when it starts (upstream)
    monkeypatch.undo()
    assert modes.MODES["iptables"].coexists_with == {"ipvs"} and modes.MODES["ipvs"].coexists_with == {"iptables"}
    assert modes.MODES["nftables"].coexists_with == frozenset()
    assert modes.MODES["userspace"].coexists_with == frozenset()


def test_write_last_restore_replaces_the_file_whole_or_logs(tmp_path, caplog):
    from testbed.proxy.syncer import write_last_restore
    path = tmp_path / "proxy-n1.rules"
    assert write_last_restore(str(path), "*nat\nCOMMIT\n") and path.read_text() == "*nat\nCOMMIT\n"
    assert write_last_restore(str(path), "*filter\nCOMMIT\n") and path.read_text() == "*filter\nCOMMIT\n"
    assert not write_last_restore(None, "x")
    assert not write_last_restore(str(tmp_path / "gone" / "proxy-n1.rules"), "x")
    assert "cannot record the applied rules in" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["proxy-n1.rules"]


def test_other_modes_are_cleaned_only_where_a_proxy_ran_before(tmp_path):
    """A node just built (no metrics file of an earlier kube-proxy) has no other mode's rules to
    remove; a restarted proxy, or one without a metrics file to tell, cleans as upstream does."""
    from testbed.proxy.__main__ import ran_before

    metrics = tmp_path / "proxy-node1.json"
    assert not ran_before(str(metrics))
    metrics.write_text("{}")
    assert ran_before(str(metrics))
    assert ran_before(None) and ran_before("")
