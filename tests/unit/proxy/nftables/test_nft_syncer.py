"""The nftables ``Syncer`` driven by the proxy loop, with a recording runner instead of the
kernel: one transaction per sync, failures reported and followed by a full sync, the journal
``testbed rules --check`` replays."""

from __future__ import annotations

from testbed.proxy.loop import ProxyLoop
from testbed.proxy.nftables import mode as nft_mode
from testbed.proxy.nftables.runner import Existing
from testbed.proxy.nftables.runner import NftRunner, RunError, parse_error
from testbed.proxy.nftables.syncer import NftablesSyncer
from testbed.proxy.syncer import ProxyConfig
from tests.unit.proxy.conftest import ep, eps, svc


class Runner:
    kind = "fake"

    def __init__(self, existing: Existing | None = None):
        self.texts: list[str] = []
        self.fail_next: RunError | None = None
        self.existing_calls = 0
        self._existing = existing or Existing(frozenset(), frozenset())
        self.present = True

    def run(self, text):
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        self.texts.append(text)

    def existing(self, family="ip"):
        self.existing_calls += 1
        return self._existing

    def table_exists(self, family="ip"):
        return self.present

    def close(self):
        pass


def make(tmp_path, runner=None):
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8",
                      min_sync_period=0.0, rules_file=str(tmp_path / "proxy-n1.rules"),
                      service_cidrs=("172.30.0.0/16",))
    runner = runner or Runner()
    loop = ProxyLoop(cfg, NftablesSyncer(cfg, runner=runner))
    return loop, runner, cfg


def add(loop, name, cip, *ips, rv=1):
    loop.state.update_service(svc(name, cip=cip) | {"metadata": {"namespace": "ns1", "name": name,
                                                                  "resourceVersion": str(rv)}})
    loop.state.update_endpoint_slice(eps(name, "ns1", *(ep(ip) for ip in ips)))


def test_first_sync_is_one_full_transaction_of_upstreams_table(tmp_path):
    loop, runner, cfg = make(tmp_path)
    add(loop, "a", "172.30.0.41", "10.180.0.1", "10.180.0.2")
    rec = loop.sync()
    assert rec.ok and rec.full and len(runner.texts) == 1 and runner.existing_calls == 1
    text = runner.texts[0]
    assert text.startswith('add table ip kube-proxy { comment "rules for kube-proxy" ; }\n')
    assert "numgen random mod 2 vmap" in text and "ip daddr { 172.30.0.0/16 } drop" in text
    assert "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-" in text
    m = loop.metrics()
    assert m["mode"] == "nftables" and m["nftables"]["services"] == 1 and m["nftables"]["runner"] == "fake"


def test_partial_sync_writes_only_the_changed_service_and_journals_it(tmp_path):
    loop, runner, cfg = make(tmp_path)
    add(loop, "a", "172.30.0.41", "10.180.0.1")
    add(loop, "b", "172.30.0.42", "10.180.0.5")
    loop.sync()
    loop.state.update_endpoint_slice(eps("b", "ns1", ep("10.180.0.5"), ep("10.180.0.6")))
    rec = loop.sync()
    assert rec.ok and not rec.full and len(runner.texts) == 2
    tx = runner.texts[1]
    assert "ns1/b/tcp/p80" in tx and "ns1/a/" not in tx and "add table" not in tx
    with open(cfg.rules_file) as f:
        segs = nft_mode.segments(f.read())
    assert len(segs) == 2 and segs[1] == tx
    assert segs[0].startswith("add table ip kube-proxy") and "ns1/a/tcp/p80" in segs[0]


def test_rejected_transaction_is_reported_and_the_next_sync_is_full(tmp_path):
    loop, runner, cfg = make(tmp_path)
    add(loop, "a", "172.30.0.41", "10.180.0.1")
    loop.sync()
    loop.state.update_endpoint_slice(eps("a", "ns1", ep("10.180.0.2")))
    runner.fail_next = RunError("Could not process rule: No such file or directory", 3)
    rec = loop.sync()
    assert not rec.ok and rec.error == "Could not process rule: No such file or directory" and rec.error_line == 3
    m = loop.metrics()
    assert m["sync_failures_total"] == 1 and m["partial_restore_failures_total"] == 1
    assert loop.syncer.needs_full_sync
    rec = loop.sync()
    assert rec.ok and rec.full and "10.180.0.2" in runner.texts[-1]
    with open(cfg.rules_file) as f:
        segs = nft_mode.segments(f.read())
    assert len(segs) == 1 and "10.180.0.1" not in segs[0]     # a full sync rewrites the journal


def test_takeover_flushes_chains_the_previous_proxy_left(tmp_path):
    old = "service-ABCDEFGH-ns1/gone/tcp/p80"
    runner = Runner(Existing(frozenset({old}), frozenset()))
    loop, runner, _ = make(tmp_path, runner)
    add(loop, "a", "172.30.0.41", "10.180.0.1")
    loop.sync()
    assert f"flush chain ip kube-proxy {old}\n" in runner.texts[0]
    assert f"delete chain ip kube-proxy {old}" not in runner.texts[0]   # later, once unreferenced


def test_rules_lost_when_the_table_is_gone(tmp_path):
    loop, runner, _ = make(tmp_path)
    assert loop.syncer.rules_lost() is None
    runner.present = False
    assert loop.syncer.rules_lost() == "table ip kube-proxy is gone (nft flush ruleset?)"


def test_nft_error_lines():
    assert parse_error("/dev/stdin:3:1-20: Error: Could not process rule: File exists\nadd rule x\n^^^") == \
        ("Could not process rule: File exists", 3)
    text = "add table ip kube-proxy\nadd rule ip kube-proxy reject-chain reject\n"
    assert parse_error("Error: Could not process rule: No such file or directory\n"
                       "add rule ip kube-proxy reject-chain reject\n      ^^^^\n", text) == \
        ("Could not process rule: No such file or directory", 2)
    assert parse_error("") == ("no error output", None)


class Listing(NftRunner):
    def __init__(self, outputs):
        self.outputs = outputs

    def list(self, command):
        return self.outputs[command]


def test_existing_objects_come_from_terse_listings_of_our_table_only():
    chains = ("table ip nat {\n\tchain service-AAAAAAAA-x/y/tcp/p {\n\t}\n}\n"
              "table ip kube-proxy {\n\tchain services {\n\t}\n"
              "\tchain service-ULMVA6XW-ns1/svc1/tcp/p80 {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n"
              "\tchain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {\n\t}\n}\n")
    sets = ("table ip kube-proxy {\n\tset cluster-ips {\n\t\ttype ipv4_addr\n\t}\n"
            "\tset affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {\n\t\ttype ipv4_addr\n\t}\n}\n")
    r = Listing({"list chains ip": chains, "list sets ip": sets})
    ex = r.existing()
    assert ex.chains == {"service-ULMVA6XW-ns1/svc1/tcp/p80", "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"}
    assert ex.sets == {"affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"}
    assert r.table_exists() and not Listing({"list sets ip": ""}).table_exists()
