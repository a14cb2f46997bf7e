"""The checks section: parsing and validation, every error with its message (no root)."""

from __future__ import annotations

import pytest

from testbed.errors import ValidationError
from testbed.scenario import parse
from testbed.verify.model import Context, validate

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}, "spec": {"containers": [{"name": "c"}]}}
WEB = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "c"}]}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
       "spec": {"ports": [{"name": "http", "port": 80}]}}


def doc(*checks) -> dict:
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "t"}, "spec": {},
            "manifests": [POD, WEB, SVC], "checks": list(checks)}


def problems(*checks) -> list[str]:
    with pytest.raises(ValidationError) as e:
        parse(doc(*checks), source="s.yaml")
    assert str(e.value).startswith("s.yaml: ")
    return [str(p) for p in e.value.problems]


def ok(**kw) -> dict:
    return {"name": "c1", "from": "pod/client", "to": {"service": "web", "port": 80}, "expect": {"reach": "answered"}, **kw}


def test_valid_checks_parse():
    s = parse(doc(ok(), {"name": "c2", "from": "external/client", "to": {"service": "web", "via": "nodePort", "node": "node1"},
                         "expect": {"dnat": True, "source": "masquerade", "vxlan": {"ttl": 63}}},
                  {"name": "c3", "to": {"service": "web"}, "expect": {"rules": "absent"}}))
    checks, probs = validate(s.checks, Context())
    assert not probs and [c.name for c in checks] == ["c1", "c2", "c3"]
    assert checks[1].vxlan.ttl == 63 and checks[1].expected_reach == "answered"
    assert checks[2].source is None and checks[2].rules == "absent"


def test_every_problem_at_once_with_paths_and_allowed_values():
    got = problems({"name": "Bad_Name", "from": "vm/x", "to": {"service": "web", "via": "tunnel"}, "protocol": "SCTP",
                    "expect": {"reach": "maybe", "colour": 1}})
    assert "checks[0].name: 'Bad_Name' is not a check name: lower-case letters, digits and '-', at most 63" in got
    assert ("checks[0].from: 'vm/x' is not a source; allowed: pod/NAME, pod/NAMESPACE/NAME, node/NAME, "
            "external/NAME") in got
    assert "checks[0].to.via: unsupported value 'tunnel'; allowed: clusterIP, nodePort, externalIP, loadBalancer, healthCheck" in got
    assert "checks[0].protocol: unsupported value 'SCTP'; allowed: TCP, UDP" in got
    assert "checks[0].expect.reach: unsupported value 'maybe'; allowed: answered, refused, dropped" in got
    assert any(g.startswith("checks[0].expect.colour: unknown field; allowed: reach, backends") for g in got)


@pytest.mark.parametrize("check,message", [
    (ok(name="x", **{"from": "pod/nope"}), "checks[0].from: unknown pod 'nope'; pods: client, web-1"),
    (ok(to={"service": "nope"}), "checks[0].to.service: unknown service 'nope'; services: kube-system/kube-dns, web"),
    (ok(to={"service": "web", "port": 81}), "checks[0].to.port: service 'web' has no port 81; ports: http"),
    (ok(to={"service": "web", "via": "nodePort"}), "checks[0].to.node: required with via nodePort (which node's address to use)"),
    (ok(to={"service": "web", "via": "nodePort", "node": "n9"}), "checks[0].to.node: unknown node 'n9'; nodes: node1, node2"),
    (ok(to={"service": "web", "pod": "web-1"}), "checks[0].to: needs exactly one of service, pod, ip (got service, pod)"),
    (ok(to={"ip": "10.1.2"}), "checks[0].to.ip: '10.1.2' is not an IPv4 address"),
    (ok(to={"ip": "10.1.2.3"}), "checks[0].to.port: required with ip"),
    (ok(to={"pod": "web-1", "via": "nodePort"}), "checks[0].to.via: only with checks[0].to.service"),
    (ok(expect={"reach": "refused", "dnat": True}), "checks[0].expect.dnat: needs an answered request; expect.reach is refused"),
    (ok(expect={"source": "nobody"}), "checks[0].expect.source: unsupported value 'nobody'; allowed: client, masquerade, gateway or an IPv4 address"),
    (ok(expect={"backends": {"requests": 0, "pods": ["web-1"]}}), "checks[0].expect.backends.requests: must be an integer from 1 to 10000, got 0"),
    (ok(expect={"backends": {"pods": ["web-9"]}}), "checks[0].expect.backends.pods[0]: unknown pod 'web-9'; pods: client, web-1"),
    (ok(expect={"backends": {"requests": 5}}), "checks[0].expect.backends.pods: required: the pods allowed to answer"),
    (ok(expect={"backends": {"pods": ["web-1"], "silent": ["web-1"]}}), "checks[0].expect.backends.silent: pod 'web-1' is both in pods and silent"),
    (ok(expect={"hairpin": True}, **{"from": "external/client"}), "checks[0].expect.hairpin: needs a pod source (from: pod/NAME), got external/client"),
    (ok(expect={"hairpin": False}), "checks[0].expect.reach: required with hairpin: false (refused or dropped: what happens instead)"),
    (ok(to={"pod": "web-1", "port": 8080}, expect={"rules": "absent"}), "checks[0].expect.rules: needs a service destination (to.service)"),
    (ok(expect={"status": 200}), "checks[0].expect.status: only with to.via healthCheck (the HTTP status of the health check port)"),
    (ok(expect={"vxlan": {"mtu": True}}), "checks[0].expect.vxlan.mtu: the MTU probe is a full-size UDP datagram; use protocol: UDP"),
    (ok(expect={"vxlan": False}), "checks[0].expect.vxlan: false is not an expectation; leave vxlan out"),
    (ok(expect={}), "checks[0].expect: empty; give one or more of reach, backends, dnat, source, vxlan, hairpin, rules, status, steady, doctor, http"),
    (ok(retries=11), "checks[0].retries: must be an integer from 0 to 10, got 11"),
    ({"name": "x", "to": {"service": "web"}, "expect": {"reach": "answered"}}, "checks[0].from: required: pod/NAME, node/NAME or external/NAME"),
    (ok(expect={"steady": {"action": {}, "until": {"version": "v2"}}}), "checks[0].expect.steady.action: needs apply or delete (what happens while traffic runs)"),
    (ok(expect={"steady": {"action": {"delete": ["pod/web-1"]}}}), "checks[0].expect.steady.until: required: one of answeredBy, version, rollout"),
    (ok(expect={"steady": {"action": {"delete": ["pod/web-1"]}, "until": {"version": "v2"}, "socket": "shared"}}),
     "checks[0].expect.steady.socket: shared (one socket, one conntrack entry) needs protocol: UDP"),
    (ok(expect={"steady": {"action": {"delete": ["web-1"]}, "until": {"rollout": "web"}}}),
     "checks[0].expect.steady.action.delete: must be a list of KIND/NAME (pod/web-1, deployment/web)"),
])
def test_each_error(check, message):
    assert message in problems(check)


def test_duplicate_names_and_not_a_list():
    assert "checks[1].name: duplicate check name 'c1' (also checks[0])" in problems(ok(), ok())
    d = doc()
    d["checks"] = {"name": "x"}
    with pytest.raises(ValidationError) as e:
        parse(d, source="s.yaml")
    assert "checks: must be a list" in str(e.value)


def test_shipped_scenarios_are_valid():
    import glob
    import os

    from testbed.scenario import load
    from testbed.verify.model import parse_checks

    here = os.path.dirname(os.path.abspath(__file__))
    files = glob.glob(os.path.join(here, "..", "..", "..", "scenarios", "*.yaml"))
    assert len(files) >= 15
    for f in files:
        s = load(f)
        assert parse_checks(s), f"{f} has no checks"


@pytest.mark.parametrize("to, field", [
    ({"service": "web", "via": "nodePort", "node": [1]}, "checks[0].to.node"),
    ({"service": ["web"], "port": 80}, "checks[0].to.service"),
    ({"pod": {"a": 1}, "port": 8080}, "checks[0].to.pod"),
    ({"service": "web", "via": ["nodePort"], "node": "node1"}, "checks[0].to.via"),
    ({"ip": ["10.96.0.1"], "port": 443}, "checks[0].to.ip"),
    ({"service": "web", "port": [80]}, "checks[0].to.port"),
])
def test_malformed_destination_names_the_field(to, field):
    got = problems(ok(to=to))
    assert any(p.startswith(f"{field}: ") for p in got), got


@pytest.mark.parametrize("expect, field", [
    ({"source": ["client"]}, "checks[0].expect.source"),
    ({"reach": ["answered"]}, "checks[0].expect.reach"),
    ({"rules": {"x": 1}}, "checks[0].expect.rules"),
    ({"backends": {"pods": [["web-1"]]}}, "checks[0].expect.backends.pods"),
])
def test_malformed_expectation_names_the_field(expect, field):
    got = problems(ok(expect=expect))
    assert any(p.startswith(f"{field}: ") for p in got), got


def test_malformed_source_and_protocol_name_the_field():
    got = problems(ok(**{"from": ["pod/client"], "protocol": ["TCP"]}))
    assert any(p.startswith("checks[0].from: ") for p in got), got
    assert any(p.startswith("checks[0].protocol: ") for p in got), got


def test_doctor_expectations():
    checks, problems = validate([{"name": "typo", "to": {"service": "web"},
                                  "expect": {"doctor": {"selector": "fail", "target-port": "ok"}}}])
    assert not problems and checks[0].doctor == (("selector", "fail"), ("target-port", "ok"))
    assert checks[0].source is None
    _, problems = validate([{"name": "bad", "to": {"ip": "10.0.0.1", "port": 80},
                             "expect": {"doctor": {"selectr": "fail", "selector": "broken"}, "reach": "answered"}}])
    text = "\n".join(str(p) for p in problems)
    assert "selectr" in text and "selector" in text and "ok, warn, fail" in text
    assert "cannot be combined" in text and "needs a service or pod destination" in text
