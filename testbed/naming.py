"""The naming contract: every object a cluster creates carries the cluster's name.

Cluster names are DNS labels (no dots), so ``tb.<cluster>.`` is a prefix no other cluster can
share.  See docs/design.md for the table.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os

PREFIX = "tb"
STATE_ROOT = os.environ.get("TESTBED_STATE_ROOT", "/run/testbed")

# fixed interface indexes inside namespaces the testbed creates itself
NODE_ETH0, NODE_CNI0, NODE_VTEP = 2, 3, 4
POD_ETH0 = 2
UNDERLAY_BRIDGE = 2
UNDERLAY_BRIDGE_NAME = "underlay"
VTEP_NAME = "flannel.1"
BRIDGE_NAME = "cni0"


def cluster_prefix(cluster: str) -> str:
    return f"{PREFIX}.{cluster}."


def underlay_netns(cluster: str) -> str:
    return f"{PREFIX}.{cluster}.underlay"


def node_netns(cluster: str, node: str) -> str:
    return f"{PREFIX}.{cluster}.node.{node}"


def external_netns(cluster: str, name: str) -> str:
    return f"{PREFIX}.{cluster}.ext.{name}"


def pod_netns(cluster: str, namespace: str, pod: str) -> str:
    name = f"{PREFIX}.{cluster}.pod.{namespace}.{pod}"
    if len(name) > 200:  # file-name limit is 255; keep it readable and unique
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name[:189] + "~" + digest
    return name


def host_veth(cluster: str, namespace: str, pod: str) -> str:
    """Node-side veth of a pod: ``veth`` + 8 hex digits, as the CNI bridge plugin names them."""
    return "veth" + hashlib.sha1(f"{cluster}/{namespace}/{pod}".encode()).hexdigest()[:8]


def state_dir(cluster: str) -> str:
    return os.path.join(STATE_ROOT, cluster)


def _mac(prefix: bytes, ip: str) -> str:
    return ":".join(f"{b:02x}" for b in prefix + ipaddress.IPv4Address(ip).packed)


def underlay_mac(ip: str) -> str:
    return _mac(b"\x02\x00", ip)


def pod_mac(ip: str) -> str:
    """Pod eth0 and cni0: ``0a:58`` + IPv4, as CNI's bridge plugin derived MACs."""
    return _mac(b"\x0a\x58", ip)


def host_veth_mac(ip: str) -> str:
    return _mac(b"\x0e\x58", ip)


def vtep_mac(vtep_ip: str) -> str:
    return _mac(b"\x0e\x00", vtep_ip)
