"""The userspace mode's restore input, byte for byte, for every ``userspace-*`` golden case.

Inputs: a ``UserspaceProxyTestHarness`` document (node address, bind address, the proxy port
each service port got, whether the jump rules already exist) and Service objects as the
proxy's model reads them. Expected: upstream's ``iptablesInit`` + ``openPortal`` +
``openNodePort`` rules for them as one ``iptables-restore --noflush`` input.
Regenerate after a reviewed change with ``UPDATE_GOLDEN=1``.
"""

import os
from pathlib import Path

import pytest
import yaml

from testbed.proxy.iptables.apply import parse_save
from testbed.proxy.model import ServicePortName, service_port_map
from testbed.proxy.userspace import rules

GOLDEN = Path(__file__).resolve().parents[3] / "golden"
CASES = sorted(GOLDEN.glob("userspace-*.harness.yaml"))


def _spn(text: str) -> ServicePortName:
    name, _, proto = text.rpartition("/")
    nn, _, port = name.partition(":")
    ns, _, svc = nn.partition("/")
    return ServicePortName(ns, svc, port, proto)


def render_case(path: Path) -> str:
    harness, *objects = list(yaml.safe_load_all(path.read_text()))
    assert harness["kind"] == "UserspaceProxyTestHarness"
    services = {}
    for obj in objects:
        services.update(service_port_map(obj))
    ports = {_spn(k): v for k, v in harness["proxyPorts"].items()}
    assert set(ports) == set(services), "every service port of the case needs a proxy port"
    saved = None
    if harness["existingJumps"]:
        saved = parse_save("".join(f"*{t}\n" + "".join(j.saved_form() + "\n" for j in rules.JUMPS
                                                        if j.table == t) + "COMMIT\n"
                                   for t in ("filter", "nat")))
    ctx = rules.RuleContext(host_ip=harness["hostIP"], listen_ip=harness["listenIP"])
    return rules.render(services, ports, ctx, saved)


def test_cases_exist():
    assert len(CASES) >= 3


@pytest.mark.parametrize("inputs", CASES, ids=lambda p: p.name.removesuffix(".harness.yaml"))
def test_golden(inputs):
    expected_path = inputs.with_name(inputs.name.replace(".harness.yaml", ".expected.txt"))
    got = render_case(inputs)
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(got)
    assert got == expected_path.read_text()
