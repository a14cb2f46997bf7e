"""What the userspace mode does not support is reported, and SCTP refused."""

from testbed.proxy.model import service_port_map
from testbed.proxy.userspace.support import notices


def svc(**spec):
    base = {"clusterIP": "10.96.0.5", "ports": [{"name": "p", "port": 80}]}
    base.update(spec)
    return next(iter(service_port_map({"metadata": {"namespace": "ns", "name": "s"},
                                       "spec": base}).values()))


def test_plain_service_has_no_notices():
    assert notices(svc()) == []


def test_sctp_refused():
    [n] = notices(svc(ports=[{"name": "p", "port": 80, "protocol": "SCTP"}]))
    assert n.refused and n.field == "spec.ports.protocol"
    assert "allowed: TCP, UDP" in str(n) and str(n).startswith("ns/s:p: ")


def test_unsupported_fields_reported_not_refused():
    info = svc(type="LoadBalancer", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
               loadBalancerSourceRanges=["10.0.0.0/8"],
               ports=[{"name": "p", "port": 80, "nodePort": 30000}])
    ns = notices(info)
    assert [n.field for n in ns] == ["spec.externalTrafficPolicy", "spec.internalTrafficPolicy",
                                     "spec.loadBalancerSourceRanges"]
    assert not any(n.refused for n in ns)


def test_ipv6_refused():
    info = next(iter(service_port_map(
        {"metadata": {"namespace": "ns", "name": "s"},
         "spec": {"clusterIP": "fd00::5", "ipFamilies": ["IPv6"], "clusterIPs": ["fd00::5"],
                  "ports": [{"name": "p", "port": 80}]}}, family="IPv6").values()))
    [n] = notices(info)
    assert n.refused and "allowed: IPv4" in n.message
