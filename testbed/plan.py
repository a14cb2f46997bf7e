"""Scenario -> Plan: every namespace, link, address and route with its final name and value.

Pure: no kernel calls.  ``topology.apply_plan`` turns a plan into kernel state.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from . import naming
from .ipam import HostLocal, RangeFull
from .errors import Problem, ValidationError

if TYPE_CHECKING:  # the kubelets and kube-proxies read a Plan without parsing any scenario
    from .scenario import Scenario


@dataclass
class PeerRoute:
    """What a node installs for one remote node (flannel's per-lease state)."""

    node: str
    pod_cidr: str
    node_ip: str
    vtep_ip: str
    vtep_mac: str


@dataclass
class NodePlan:
    name: str
    netns: str
    ip: str
    mac: str
    pod_cidr: str
    cni_ip: str
    cni_mac: str
    vtep_ip: str
    vtep_mac: str
    mtu: int
    labels: dict[str, str] = field(default_factory=dict)
    peers: list[PeerRoute] = field(default_factory=list)


@dataclass
class ExternalPlan:
    name: str
    netns: str
    ip: str
    mac: str


@dataclass
class PodPlan:
    namespace: str
    name: str
    node: str
    netns: str
    ip: str
    mac: str
    host_veth: str
    host_mac: str
    gateway: str
    prefixlen: int
    mtu: int


@dataclass
class UnderlayPlan:
    netns: str
    bridge: str
    gateway: str
    mac: str
    prefixlen: int
    mtu: int


@dataclass
class Plan:
    cluster: str
    backend: str
    hairpin_mode: str
    proxy_mode: str
    pod_network: str
    service_network: str
    underlay: UnderlayPlan
    nodes: list[NodePlan]
    externals: list[ExternalPlan]
    pods: list[PodPlan] = field(default_factory=list)
    ipam: dict[str, dict] = field(default_factory=dict)
    node_port_range: str = "30000-32767"
    lb_pool: str = ""
    control_plane: bool = True
    proxy_min_sync_period: float = 1.0   # seconds (scenario spec.proxy.minSyncPeriod)
    proxy_sync_period: float = 30.0      # seconds (scenario spec.proxy.syncPeriod)

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def all_netns(self) -> list[str]:
        return ([self.underlay.netns] + [n.netns for n in self.nodes] + [e.netns for e in self.externals]
                + [p.netns for p in self.pods])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        nodes = [NodePlan(**{**n, "peers": [PeerRoute(**p) for p in n["peers"]]}) for n in d["nodes"]]
        return cls(**{**d, "underlay": UnderlayPlan(**d["underlay"]), "nodes": nodes,
                      "externals": [ExternalPlan(**e) for e in d["externals"]],
                      "pods": [PodPlan(**p) for p in d["pods"]]})


def default_lb_pool(s: Scenario) -> str:
    """The pool given in the scenario, else the first /24 after the underlay network that
    overlaps neither the pod nor the service network (172.20.10.0/24 -> 172.20.11.0/24).

    It lies outside the underlay on purpose: the testbed plays the cloud provider by routing
    each assigned address from the underlay namespace to the nodes (``testbed.lbnet``), so
    external clients reach it through their default route via the underlay gateway."""
    if s.lb_pool is not None:
        return str(s.lb_pool)
    start = int(s.underlay_network.broadcast_address) + 1
    start += -start % 256
    taken = (s.pod_network, s.service_network, s.underlay_network)
    for i in range(256):
        try:
            net = ipaddress.IPv4Network((start + 256 * i, 24))
        except ValueError:  # ran past 255.255.255.255
            break
        if not any(net.overlaps(t) for t in taken) and not net.is_multicast and not net.is_reserved:
            return str(net)
    raise ValidationError(s.source, [Problem("spec.loadBalancerPool", "no free /24 after spec.underlay.network; "
                                             "set spec.loadBalancerPool")])


def build_plan(s: Scenario, *, control_plane: bool = True) -> Plan:
    """The plan for a scenario.  With ``control_plane=False`` the scenario's Pods are placed and
    addressed here (static pods, built by ``topology.apply_plan``); otherwise they go through the
    API and the scheduler, and the kubelet builds them."""
    c = s.name
    und = s.underlay_network
    gw = str(und.network_address + 1)
    underlay = UnderlayPlan(naming.underlay_netns(c), naming.UNDERLAY_BRIDGE_NAME, gw,
                            naming.underlay_mac(gw), und.prefixlen, s.underlay_mtu)
    subnets = s.pod_network.subnets(new_prefix=s.node_prefix)
    nodes = []
    for i, spec in enumerate(s.nodes):
        sub = next(subnets)
        ip = str(und.network_address + 2 + i)
        vtep = str(sub.network_address)
        cni = str(sub.network_address + 1)
        nodes.append(NodePlan(spec.name, naming.node_netns(c, spec.name), ip, naming.underlay_mac(ip), str(sub),
                              cni, naming.pod_mac(cni), vtep, naming.vtep_mac(vtep), s.pod_mtu, dict(spec.labels)))
    for n in nodes:
        n.peers = [PeerRoute(o.name, o.pod_cidr, o.ip, o.vtep_ip, o.vtep_mac) for o in nodes if o is not n]
    externals = []
    for i, e in enumerate(s.externals):
        ip = str(und.network_address + 100 + i)
        externals.append(ExternalPlan(e.name, naming.external_netns(c, e.name), ip, naming.underlay_mac(ip)))
    plan = Plan(c, s.backend, s.hairpin_mode, s.proxy_mode, str(s.pod_network), str(s.service_network),
                underlay, nodes, externals, node_port_range="%d-%d" % s.node_port_range,
                lb_pool=default_lb_pool(s), control_plane=control_plane,
                proxy_min_sync_period=s.proxy_min_sync_period, proxy_sync_period=s.proxy_sync_period)
    ipams = {n.name: HostLocal(ipaddress.IPv4Network(n.pod_cidr)) for n in nodes}
    problems = []
    counts = {n.name: 0 for n in nodes}
    pods = [m for m in s.manifests if m.get("kind") == "Pod"] if not control_plane else []
    for obj in pods:
        node = (obj.get("spec") or {}).get("nodeName")
        if node:
            counts[node] += 1
    for i, obj in enumerate(pods):
        meta = obj.get("metadata") or {}
        node = (obj.get("spec") or {}).get("nodeName")
        if not node:  # spread evenly: the node with the fewest pods, in order
            node = min(counts, key=lambda k: counts[k])
            counts[node] += 1
        ns, name = meta.get("namespace", "default"), meta["name"]
        try:
            plan.pods.append(pod_plan(plan, ipams[node], node, ns, name))
        except RangeFull as exc:
            problems.append(Problem(f"pod {ns}/{name}", f"node {node}: {exc}"))
    seen = set()
    for p in plan.pods:
        if (p.namespace, p.name) in seen:
            problems.append(Problem(f"pod {p.namespace}/{p.name}", "defined twice"))
        seen.add((p.namespace, p.name))
    if problems:
        raise ValidationError(s.source, problems)
    plan.ipam = {k: v.to_dict() for k, v in ipams.items()}
    return plan


def pod_plan(plan: Plan, ipam: HostLocal, node: str, namespace: str, name: str) -> PodPlan:
    n = plan.node(node)
    ip = ipam.allocate(f"{namespace}/{name}")
    return PodPlan(namespace, name, node, naming.pod_netns(plan.cluster, namespace, name), ip, naming.pod_mac(ip),
                   naming.host_veth(plan.cluster, namespace, name), naming.host_veth_mac(ip), n.cni_ip,
                   ipaddress.IPv4Network(n.pod_cidr).prefixlen, n.mtu)
