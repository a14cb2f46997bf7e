"""Chain names, byte-for-byte as upstream kube-proxy: the fixed KUBE-* chains and the
per-service and per-endpoint ones.

The hashed string is the plain concatenation ``"<ns>/<svc>[:<portName>]" + "<tcp|udp|sctp>"``
(plus ``"<ip>:<targetPort>"`` for endpoint chains): SHA-256, standard base32, first 16 chars.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

SVC_PREFIX = "KUBE-SVC-"
SVL_PREFIX = "KUBE-SVL-"
EXT_PREFIX = "KUBE-EXT-"
FW_PREFIX = "KUBE-FW-"
SEP_PREFIX = "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX)

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"

FILTER_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS,
                 KUBE_PROXY_FIREWALL)
NAT_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)
NFACCT_CT_STATE_INVALID = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NODEPORTS = "localhost_nps_accepted_pkts"


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]     # 10 bits -> 2 characters


def _hash16(text: str) -> str:
    """First 16 chars of base32(sha256(text)): exactly the first 10 digest bytes (80 bits)."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    p = _B32_PAIRS
    return (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
            + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """``portProtoHash``; ``protocol`` is the lower-case protocol (``tcp``)."""
    return _hash16(service_port_name + protocol)


class ServiceChainNames(NamedTuple):
    svc: str  # KUBE-SVC-: Cluster traffic policy endpoints
    svl: str  # KUBE-SVL-: Local traffic policy endpoints
    ext: str  # KUBE-EXT-: external destinations (NodePort, externalIPs, LB)
    fw: str   # KUBE-FW-: loadBalancerSourceRanges


def service_chain_names(service_port_name: str, protocol: str) -> ServiceChainNames:
    h = port_proto_hash(service_port_name, protocol.lower())
    return ServiceChainNames(SVC_PREFIX + h, SVL_PREFIX + h, EXT_PREFIX + h, FW_PREFIX + h)


def endpoint_chain_name(service_port_name: str, protocol: str, endpoint: str) -> str:
    """``KUBE-SEP-``; ``endpoint`` is ``ip:targetPort`` (``[ip]:port`` for IPv6)."""
    return SEP_PREFIX + _hash16(service_port_name + protocol.lower() + endpoint)


def is_service_chain_name(chain: str) -> bool:
    """Chains kube-proxy deletes when stale (``isServiceChainName``)."""
    return chain.startswith(SERVICE_CHAIN_PREFIXES)
