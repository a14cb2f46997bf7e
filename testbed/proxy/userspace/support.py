"""What upstream's userspace proxier never implemented, said out loud.

Upstream's userspace mode proxied every ready endpoint of a service port, from any client, and
knew only TCP and UDP. Fields that change that in the other modes were silently ignored there;
here each one yields a ``Notice`` the caller reports (a log line, an Event on the Service), and
SCTP is refused (no listener, no rules), as upstream's ``newProxySocket`` refused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from testbed.proxy.model import ServicePortInfo, ServicePortName

SUPPORTED_PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class Notice:
    service_port: ServicePortName
    field: str
    message: str
    refused: bool = False   # True: the service port is not proxied at all

    def __str__(self) -> str:
        return f"{self.service_port}: {self.field}: {self.message}"


def notices(info: ServicePortInfo) -> list[Notice]:
    spn = info.name
    if info.protocol not in SUPPORTED_PROTOCOLS:
        return [Notice(spn, "spec.ports.protocol",
                       f"protocol {info.protocol} is not supported by the userspace proxy "
                       f"(allowed: {', '.join(SUPPORTED_PROTOCOLS)}); service port not proxied",
                       refused=True)]
    if ":" in info.cluster_ip:
        # The listeners are IPv4 sockets and the rules go through iptables, not ip6tables.
        return [Notice(spn, "spec.clusterIPs",
                       f"IPv6 cluster IP {info.cluster_ip} is not supported by this userspace "
                       f"proxy (allowed: IPv4); service port not proxied", refused=True)]
    out = []
    if info.external_policy_local:
        out.append(Notice(spn, "spec.externalTrafficPolicy",
                          "Local is not supported by the userspace proxy; external traffic goes "
                          "to every endpoint and the client address is not preserved"))
    if info.internal_policy_local:
        out.append(Notice(spn, "spec.internalTrafficPolicy",
                          "Local is not supported by the userspace proxy; every endpoint is used"))
    if info.load_balancer_source_ranges:
        out.append(Notice(spn, "spec.loadBalancerSourceRanges",
                          "not supported by the userspace proxy; traffic from any source is "
                          "accepted"))
    if info.hints_annotation:
        out.append(Notice(spn, "metadata.annotations",
                          "topology-aware routing is not supported by the userspace proxy; "
                          "every endpoint is used"))
    return out
