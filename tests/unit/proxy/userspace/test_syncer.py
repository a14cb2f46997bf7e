"""Userspace mode driven by the proxy loop with a fake iptables: a sync opens one listener per
service port (on the syncer's own event loop), restores rules that REDIRECT to those ports,
reports what the mode does not support as Events on the Service, and shows its listeners in
the metrics."""

import json

from testbed.proxy.iptables.apply import parse_save
from testbed.proxy.loop import ProxyLoop
from testbed.proxy.syncer import ProxyConfig
from testbed.proxy.userspace import rules
from testbed.proxy.userspace.mode import port_map
from testbed.proxy.userspace.syncer import NOTICE_REASON, UserspaceSyncer

from ..conftest import ep, eps, svc


class FakeIptables:
    """Remembers every restore; ``save`` shows what the last one left (jumps included)."""

    def __init__(self, rc=0):
        self.restored: list[str] = []
        self.rc = rc

    def save(self):
        if not self.restored:
            return "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
        return self.restored[-1].replace("-I ", "-A ")

    def restore(self, text):
        self.restored.append(text)
        return self.rc, "" if self.rc == 0 else "iptables-restore: line 3 failed\n"


def make(tmp_path, rc=0):
    cfg = ProxyConfig(cluster="c", node_name="n1", node_ip="192.168.0.2",
                      metrics_file=str(tmp_path / "m.json"), rules_file=str(tmp_path / "n1.rules"))
    ipt = FakeIptables(rc)
    syncer = UserspaceSyncer(cfg, iptables=ipt)
    posted = []
    loop = ProxyLoop(cfg, syncer, post_event=posted.append)
    loop.mark_listed("Service")
    loop.mark_listed("EndpointSlice")
    return loop, syncer, ipt, posted


def feed(loop, *objs):
    for o in objs:
        loop.enqueue(o["kind"], {"type": "ADDED", "object": o})


def test_a_sync_opens_listeners_and_restores_rules_to_them(tmp_path):
    loop, syncer, ipt, _ = make(tmp_path)
    try:
        feed(loop, svc("web", ports=(("http", 80, "TCP", 0), ("dns", 53, "UDP", 0))),
             eps("web", "ns1", ep("10.0.1.5"), ports=(("http", 8080, "TCP"), ("dns", 5353, "UDP"))))
        rec = loop.sync()
        assert rec.ok and rec.full
        [text] = ipt.restored
        listeners = syncer.proxier.ports()
        assert {str(k): v for k, v in listeners.items()} == {
            str(k): v for k, v in syncer.port_map.ports.items()}
        got = port_map(parse_save(text.replace("-I ", "-A ")))
        assert got == {"ns1/web:http": ("TCP", listeners[next(k for k in listeners if k.port == "http")]),
                       "ns1/web:dns": ("UDP", listeners[next(k for k in listeners if k.port == "dns")])}
        assert (tmp_path / "n1.rules").read_text() == text
        m = json.loads((tmp_path / "m.json").read_text())
        assert m["mode"] == "userspace"
        assert set(m["userspace"]["listeners"]) == {"ns1/web:http", "ns1/web:dns"}
        assert m["userspace"]["active_connections"] == 0
        # a second sync keeps the ports, and adds no jump twice (the save shows them)
        loop.request_sync()
        assert loop.sync().ok
        assert syncer.proxier.ports() == listeners
        assert not any(line.startswith("-I ") for line in ipt.restored[-1].splitlines())
    finally:
        loop.stop()
    assert syncer.proxier is None


def test_unsupported_fields_become_one_warning_event_on_the_service(tmp_path):
    loop, syncer, ipt, posted = make(tmp_path)
    try:
        feed(loop, svc("local", internalTrafficPolicy="Local"), eps("local", "ns1", ep("10.0.1.5")))
        loop.sync()
        loop.request_sync()
        loop.sync()                   # the same notice is not posted again
    finally:
        loop.stop()
    mine = [e for e in posted if e["reason"] == NOTICE_REASON]
    assert len(mine) == 1
    [e] = mine
    assert e["type"] == "Warning" and e["involvedObject"]["kind"] == "Service"
    assert e["involvedObject"]["name"] == "local" and e["metadata"]["namespace"] == "ns1"
    assert e["involvedObject"]["fieldPath"] == "spec.internalTrafficPolicy"
    assert "Local is not supported by the userspace proxy" in e["message"]


def test_sctp_is_refused_and_reported(tmp_path):
    loop, syncer, ipt, posted = make(tmp_path)
    try:
        feed(loop, svc("s", ports=(("p", 80, "SCTP", 0),)))
        assert loop.sync().ok
        assert syncer.port_map.ports == {}
        assert "ns1/s" not in ipt.restored[-1]
    finally:
        loop.stop()
    assert any("SCTP is not supported" in e["message"] for e in posted)


def test_a_failed_restore_is_a_failed_sync_and_the_next_is_full(tmp_path):
    loop, syncer, ipt, posted = make(tmp_path, rc=1)
    try:
        feed(loop, svc("web"), eps("web", "ns1", ep("10.0.1.5")))
        rec = loop.sync()
        assert not rec.ok and "iptables-restore failed (exit 1)" in rec.error
        assert syncer.needs_full_sync
    finally:
        loop.stop()
    assert any(e["reason"] == "SyncFailed" for e in posted)


def test_rules_lost_names_the_missing_chain(tmp_path):
    loop, syncer, ipt, _ = make(tmp_path)
    try:
        assert "KUBE-PORTALS-CONTAINER" in syncer.rules_lost()
        feed(loop, svc("web"), eps("web", "ns1", ep("10.0.1.5")))
        loop.sync()
        assert syncer.rules_lost() is None
        ipt.restored.append(ipt.restored[-1].replace(f":{rules.HOST_NODEPORTS} - [0:0]\n", ""))
        assert rules.HOST_NODEPORTS in syncer.rules_lost()
    finally:
        loop.stop()


def test_port_map_reads_iptables_save_order():
    saved = parse_save(
        "*nat\n:KUBE-PORTALS-CONTAINER - [0:0]\n"
        '-A KUBE-PORTALS-CONTAINER -d 172.30.0.42/32 -p tcp -m comment --comment "ns1/np:p80" '
        "-m tcp --dport 80 -j REDIRECT --to-ports 40021\n"
        '-A KUBE-PORTALS-CONTAINER -d 172.30.0.43/32 -p udp -m comment --comment "ns1/dns:p53" '
        "-m udp --dport 53 -j DNAT --to-destination 10.0.0.2:40022\nCOMMIT\n")
    assert port_map(saved) == {"ns1/np:p80": ("TCP", 40021), "ns1/dns:p53": ("UDP", 40022)}
