"""Object names of kube-proxy's nftables table, byte for byte as upstream.

Per-service chains are ``<prefix><HASH>-<ns>/<svc>/<proto>/<port>`` and endpoint chains
``endpoint-<HASH>-<ns>/<svc>/<proto>/<port>__<ip>/<port>``: the hash is the first 8 characters of
standard base32(sha256(base)), where base is the readable part. The readable part makes a
dump legible; the hash keeps names unique when a long name has to be truncated.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

TABLE = "kube-proxy"

SERVICE_PREFIX = "service-"     # Cluster traffic policy endpoints
LOCAL_PREFIX = "local-"         # Local traffic policy endpoints
EXTERNAL_PREFIX = "external-"   # NodePort, externalIPs, LoadBalancer destinations
FIREWALL_PREFIX = "firewall-"   # loadBalancerSourceRanges
ENDPOINT_PREFIX = "endpoint-"
AFFINITY_PREFIX = "affinity-"   # per-endpoint ClientIP affinity set

# knftables.NameLengthMax (256) minus the longest prefix (16).
_BASE_MAX = 240


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]     # 10 bits -> 2 characters


def _hash8(name: str) -> str:
    """First 8 chars of base32(sha256(name)): exactly the first 5 digest bytes (40 bits).
    (``base64.b32encode`` of the whole digest is pure Python and dominated a 10k render.)"""
    n = int.from_bytes(hashlib.sha256(name.encode()).digest()[:5], "big")
    p = _B32_PAIRS
    return p[n >> 30] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023]


def hash_and_truncate(name: str) -> str:
    out = _hash8(name) + "-" + name
    return out if len(out) <= _BASE_MAX else out[:_BASE_MAX - 3] + "..."


def service_base(namespace: str, service: str, protocol: str, port_name: str) -> str:
    """``HASH-ns/svc/proto/port``; ``protocol`` lower-case."""
    return hash_and_truncate(f"{namespace}/{service}/{protocol}/{port_name}")


def endpoint_base(namespace: str, service: str, protocol: str, port_name: str,
                  ip: str, port: int) -> str:
    """``HASH-ns/svc/proto/port__ip/port``; IPv6 colons become dots (not allowed in names)."""
    return hash_and_truncate(
        f"{namespace}/{service}/{protocol}/{port_name}__{ip.replace(':', '.')}/{port}")


class ServiceChains(NamedTuple):
    cluster: str
    local: str
    external: str
    firewall: str


def service_chains(namespace: str, service: str, protocol: str, port_name: str) -> ServiceChains:
    base = service_base(namespace, service, protocol.lower(), port_name)
    return ServiceChains(SERVICE_PREFIX + base, LOCAL_PREFIX + base, EXTERNAL_PREFIX + base,
                         FIREWALL_PREFIX + base)


def is_service_chain(name: str) -> bool:
    """Per-service and endpoint chains are the only names of ours that contain a '/'."""
    return "/" in name


def is_affinity_set(name: str) -> bool:
    return name.startswith(AFFINITY_PREFIX)
