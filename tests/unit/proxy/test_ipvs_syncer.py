"""The IPVS syncer records the last iptables-restore input it applied (``cfg.rules_file``), what
``testbed rules --check`` and doctor compare with the kernel; a kernel double, no root."""

from __future__ import annotations

from testbed.proxy.iptables import apply
from testbed.proxy.ipvs import kernel as K
from testbed.proxy.ipvs.syncer import IpvsSyncer
from testbed.proxy.syncer import ProxyConfig
from testbed.proxy.tracker import ProxyState

from .conftest import NODE, ep, eps, svc


class FakeKernel:
    family = 1
    dummy_index = 7

    def ensure_dummy(self, name):
        return self.dummy_index

    def node_addresses(self, exclude):
        return ("192.168.0.2",)

    def ensure_sets(self):
        pass

    def read(self, dummy, wanted):
        return K.KernelState()

    def send(self, which, batch):
        return []

    def close(self):
        pass


class FakeIptables:
    def __init__(self):
        self.restored, self.rc = [], 0

    def save(self):
        return ""

    def restore(self, text):
        self.restored.append(text)
        return self.rc, "iptables-restore: line 3 failed" if self.rc else ""


def _rig(tmp_path):
    cfg = ProxyConfig(cluster="c", node_name=NODE, node_ip="192.168.0.2", cluster_cidr="10.244.0.0/16",
                      rules_file=str(tmp_path / "proxy-n1.rules"))
    ipt = FakeIptables()
    return IpvsSyncer(cfg, iptables=ipt, kernel=FakeKernel(), random_fully=False), ipt, ProxyState(NODE)


def _sync(syncer, state, full, *objects):
    state.apply(objects)
    return syncer.sync(state, state.checkout(), full, 0.0)


def test_each_applied_restore_input_replaces_the_rules_file(tmp_path):
    syncer, ipt, state = _rig(tmp_path)
    path = tmp_path / "proxy-n1.rules"
    assert _sync(syncer, state, True, svc("web")).ok
    first = path.read_text()
    assert first == ipt.restored[-1] and "-I PREROUTING" in first   # the full sync added the jumps
    # an endpoint fills KUBE-LOOP-BACK: the rules change, and the file follows
    assert _sync(syncer, state, False, eps("web", "ns1", ep("10.244.0.5", NODE, ready=True))).ok
    assert len(ipt.restored) == 2 and path.read_text() == ipt.restored[-1] != first
    assert "KUBE-LOOP-BACK" in path.read_text()
    # every input declares all the mode's chains: the last one alone is what the kernel holds
    model = apply.replay_restore([path.read_text()])
    assert set(apply.kube_chains(model, "filter")) >= {"KUBE-FORWARD", "KUBE-IPVS-FILTER"}


def test_a_rejected_restore_keeps_the_last_applied_input(tmp_path):
    syncer, ipt, state = _rig(tmp_path)
    path = tmp_path / "proxy-n1.rules"
    assert _sync(syncer, state, True, svc("web")).ok
    applied = path.read_text()
    ipt.rc = 1
    assert not _sync(syncer, state, True, eps("web", "ns1", ep("10.244.0.5", NODE, ready=True))).ok
    assert path.read_text() == applied and ipt.restored[-1] != applied
    assert not list(tmp_path.glob("*.tmp.*"))
