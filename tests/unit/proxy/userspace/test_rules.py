"""Rule rendering beyond the goldens: jump bookkeeping and cleanup."""

from testbed.proxy.iptables.apply import parse_save
from testbed.proxy.model import service_port_map
from testbed.proxy.userspace import rules

SVC = {"metadata": {"namespace": "ns", "name": "s"},
       "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "p", "port": 80, "nodePort": 30001}],
                "type": "NodePort"}}
CTX = rules.RuleContext(host_ip="10.0.0.2")


def saved(text):
    return parse_save(text)


def test_only_missing_jumps_are_added():
    have = saved("*nat\n-A PREROUTING " + rules.JUMPS[0].args + "\nCOMMIT\n")
    missing = rules.missing_jumps(have)
    assert rules.JUMPS[0] not in missing and len(missing) == 4
    text = rules.render({}, {}, CTX, have)
    assert "-I PREROUTING" not in text and "-I OUTPUT" in text and "-I INPUT" in text


def test_no_services_still_declares_every_chain():
    text = rules.render({}, {}, CTX, saved(""))
    for c in rules.NAT_CHAINS + rules.FILTER_CHAINS:
        assert f":{c} - [0:0]\n" in text
    assert text.count("COMMIT") == 2


def test_service_without_proxy_port_gets_no_rules():
    services = service_port_map(SVC)
    assert "ns/s:p" not in rules.render(services, {}, CTX)
    [spn] = services
    assert "--dport 30001 -j REDIRECT --to-ports 40000" in rules.render(services, {spn: 40000}, CTX)


def test_cleanup_removes_only_what_exists():
    assert rules.cleanup_text(saved("*nat\nCOMMIT\n")) == ""
    live = rules.render({}, {}, CTX)
    # what iptables-save would show after that restore
    save_text = ("*filter\n:KUBE-NODEPORT-NON-LOCAL - [0:0]\n-A INPUT " + rules.JUMPS[4].args
                 + "\nCOMMIT\n*nat\n" + "".join(f":{c} - [0:0]\n" for c in rules.NAT_CHAINS)
                 + "".join(j.saved_form() + "\n" for j in rules.JUMPS if j.table == "nat")
                 + "COMMIT\n")
    assert live
    text = rules.cleanup_text(saved(save_text))
    assert text.count("-D ") == 5 and text.count("-X ") == 5
    assert text.index("-D PREROUTING") < text.index("-X KUBE-PORTALS-CONTAINER")
