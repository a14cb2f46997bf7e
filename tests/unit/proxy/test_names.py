import re
from pathlib import Path

import pytest

from testbed.proxy.iptables.names import (
    endpoint_chain_name,
    is_service_chain_name,
    port_proto_hash,
    service_chain_names,
)

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


@pytest.mark.parametrize("spn,hash16", [
    ("ns1/svc1:p80", "XPGD46QRK7WJZT7O"),
    ("ns2/svc2:p80", "GNZBNJ2PO5MGZ6GT"),
    ("ns3/svc3:p80", "X27LE4BHSL4DOUIK"),
    ("ns4/svc4:p80", "4SW47YFZTEDKD3PK"),
    ("ns5/svc5:p80", "NUKIZ6OKUXPJNT4C"),
    ("ns2/svc2:p8080", "2VJB64SDSIJUP5T6"),
    ("ns4/svc4:p8082", "EBDQOQU5SJFXRIL3"),
    ("default/kubernetes:https", "NPX46M4PTMTKRN6Y"),
])
def test_service_chains(spn, hash16):
    assert port_proto_hash(spn, "tcp") == hash16
    names = service_chain_names(spn, "TCP")
    assert names == ("KUBE-SVC-" + hash16, "KUBE-SVL-" + hash16, "KUBE-EXT-" + hash16,
                     "KUBE-FW-" + hash16)


@pytest.mark.parametrize("spn,endpoint,chain", [
    ("ns1/svc1:p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    ("ns1/svc1:p80", "10.180.2.1:80", "KUBE-SEP-ZX7GRIZKSNUQ3LAJ"),
    ("ns4/svc4:p80", "10.180.0.4:80", "KUBE-SEP-UKSFD7AGPMPPLUHC"),
    ("ns4/svc4:p80", "10.180.0.5:80", "KUBE-SEP-C6EBXVWJJZMIWKLZ"),
    ("ns5/svc5:p80", "10.180.0.3:80", "KUBE-SEP-I77PXRDZVX7PMWMN"),
    ("ns1/svc1:p80", "10.0.0.0:80", "KUBE-SEP-DKGQUZGBKLTPAR56"),
    ("ns3/svc3:p8081", "203.0.113.4:8081", "KUBE-SEP-RUVVH7YV3PHQBDOS"),
    ("ns2/svc2:p8080", "10.0.2.1:8080", "KUBE-SEP-UHEGFW77JX3KXTOV"),
])
def test_endpoint_chains(spn, endpoint, chain):
    assert endpoint_chain_name(spn, "tcp", endpoint) == chain


def test_every_golden_sep_chain_is_derivable():
    """Each KUBE-SEP chain in the goldens hashes from the comment/DNAT of its own rules."""
    text = "\n".join(p.read_text() for p in GOLDEN.glob("*.txt"))
    pairs = set(re.findall(r"-A (KUBE-SEP-\w+) -m comment --comment (\S+) -m (\w+) -p \w+ -j DNAT"
                           r" --to-destination (\S+)", text))
    assert len(pairs) >= 8
    for chain, spn, proto, endpoint in pairs:
        assert endpoint_chain_name(spn, proto, endpoint) == chain
    svcs = set(re.findall(r'--comment "(\S+) cluster IP" -m (\w+) .* -j (KUBE-SVC-\w+)', text))
    assert svcs
    for spn, proto, chain in svcs:
        assert service_chain_names(spn, proto).svc == chain


def test_is_service_chain_name():
    for c in ("KUBE-SVC-X", "KUBE-SVL-X", "KUBE-EXT-X", "KUBE-FW-X", "KUBE-SEP-X"):
        assert is_service_chain_name(c)
    for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-MARK-MASQ", "KUBE-XLB-X", "FOO"):
        assert not is_service_chain_name(c)


def test_names_fit_iptables_limit():
    assert len(endpoint_chain_name("a" * 300, "sctp", "[fd00::1]:65535")) == 25
