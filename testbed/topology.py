"""Apply a Plan to the kernel: underlay, nodes (cni0, flannel.1), external clients and pods.

Each namespace is created by a worker thread that then sends one netlink batch from inside it
(see ``netns`` and ``netlink``).  Nothing here touches the root namespace: the only files written
outside the cluster's namespaces are the ``/run/netns`` bind mounts and the state directory.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable

from . import exec, failpoints, naming, netlink, netns
from .errors import TestbedError
from .plan import ExternalPlan, NodePlan, Plan, PodPlan

Progress = Callable[[str, int, int], None]  # (step, done, total)

NODE_SYSCTLS = (
    ("net.ipv6.conf.all.disable_ipv6", 1),
    ("net.ipv6.conf.default.disable_ipv6", 1),
    ("net.ipv4.ip_forward", 1),
    ("net.ipv4.conf.all.route_localnet", 1),
)
BRIDGE_NF_SYSCTL = "net.bridge.bridge-nf-call-iptables"
LEAF_SYSCTLS = (("net.ipv6.conf.all.disable_ipv6", 1), ("net.ipv6.conf.default.disable_ipv6", 1))


def _noop(step: str, done: int, total: int) -> None:
    pass


def _sysctls(values: Iterable[tuple[str, object]]) -> None:
    for key, value in values:
        netns.write_sysctl(key, value)


# --- underlay ----------------------------------------------------------------------------------
def _build_underlay(plan: Plan) -> None:
    u = plan.underlay
    _sysctls(LEAF_SYSCTLS + ((BRIDGE_NF_SYSCTL, 0),))
    b = netlink.Batch()
    b.link_set("underlay: lo up", index=1, up=True)
    b.link_add(f"underlay: bridge {u.bridge}", name=u.bridge, kind="bridge", index=naming.UNDERLAY_BRIDGE,
               mtu=u.mtu, mac=u.mac, up=True, alias=u.netns)
    b.addr_add(f"underlay: {u.gateway}/{u.prefixlen}", index=naming.UNDERLAY_BRIDGE, address=u.gateway,
               prefixlen=u.prefixlen)
    b.apply()


def _attach_underlay_ports(names: list[str]) -> None:
    b = netlink.Batch()
    for name in names:
        b.link_set(f"underlay: attach {name}", name=name, master=naming.UNDERLAY_BRIDGE, up=True)
    b.apply()


# --- nodes -------------------------------------------------------------------------------------
def _build_node(plan: Plan, node: NodePlan, underlay_fd: int) -> None:
    _sysctls(NODE_SYSCTLS + ((BRIDGE_NF_SYSCTL, 1),))
    u = plan.underlay
    w = f"node {node.name}"
    b = netlink.Batch()
    b.link_set(f"{w}: lo up", index=1, up=True)
    b.veth_add(f"{w}: eth0", name="eth0", index=naming.NODE_ETH0, mtu=u.mtu, mac=node.mac,
               peer_name=node.name, peer_netns_fd=underlay_fd, up=True)
    b.addr_add(f"{w}: eth0 {node.ip}/{u.prefixlen}", index=naming.NODE_ETH0, address=node.ip, prefixlen=u.prefixlen)
    prefixlen = int(node.pod_cidr.split("/")[1])
    b.link_add(f"{w}: cni0", name=naming.BRIDGE_NAME, kind="bridge", index=naming.NODE_CNI0, mtu=node.mtu,
               mac=node.cni_mac, up=True)
    if plan.hairpin_mode == "promiscuous-bridge":
        b.link_set(f"{w}: cni0 promisc", index=naming.NODE_CNI0, promisc=True)
    b.addr_add(f"{w}: cni0 {node.cni_ip}/{prefixlen}", index=naming.NODE_CNI0, address=node.cni_ip,
               prefixlen=prefixlen)
    b.route_add(f"{w}: default via {u.gateway}", dst="0.0.0.0/0", oif=naming.NODE_ETH0, gateway=u.gateway)
    if plan.backend == "vxlan":
        b.vxlan_add(f"{w}: {naming.VTEP_NAME}", name=naming.VTEP_NAME, index=naming.NODE_VTEP, vni=1,
                    local=node.ip, dev_index=naming.NODE_ETH0, mtu=node.mtu, mac=node.vtep_mac)
        b.addr_add(f"{w}: {naming.VTEP_NAME} {node.vtep_ip}/32", index=naming.NODE_VTEP, address=node.vtep_ip,
                   prefixlen=32)
        b.link_set(f"{w}: {naming.VTEP_NAME} up", index=naming.NODE_VTEP, up=True)
        for p in node.peers:  # flannel's order: ARP, FDB, then the route
            b.neigh_add(f"{w}: neigh {p.vtep_ip} -> {p.vtep_mac}", index=naming.NODE_VTEP, ip=p.vtep_ip,
                        mac=p.vtep_mac)
            b.fdb_append(f"{w}: fdb {p.vtep_mac} dst {p.node_ip}", index=naming.NODE_VTEP, mac=p.vtep_mac,
                         dst=p.node_ip)
            b.route_add(f"{w}: route {p.pod_cidr} via {p.vtep_ip} onlink", dst=p.pod_cidr,
                        oif=naming.NODE_VTEP, gateway=p.vtep_ip, onlink=True, replace=True)
    else:  # host-gw
        for p in node.peers:
            b.route_add(f"{w}: route {p.pod_cidr} via {p.node_ip}", dst=p.pod_cidr, oif=naming.NODE_ETH0,
                        gateway=p.node_ip, replace=True)
    b.apply()


def flannel_rules(plan: Plan, node: NodePlan) -> str:
    """flanneld's iptables rules (``--ip-masq``, forward rules) plus FORWARD policy DROP."""
    net, sub = plan.pod_network, node.pod_cidr
    fwd = '-m comment --comment "flanneld forward"'
    masq = '-m comment --comment "flanneld masq"'
    return "\n".join([
        "*filter",
        ":FORWARD DROP [0:0]",
        ":FLANNEL-FWD - [0:0]",
        f"-A FORWARD {fwd} -j FLANNEL-FWD",
        f"-A FLANNEL-FWD -s {net} {fwd} -j ACCEPT",
        f"-A FLANNEL-FWD -d {net} {fwd} -j ACCEPT",
        "COMMIT",
        "*nat",
        ":FLANNEL-POSTRTG - [0:0]",
        f"-A POSTROUTING {masq} -j FLANNEL-POSTRTG",
        f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {sub} -d {net} {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {net} -d {sub} {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG ! -s {net} -d {sub} {masq} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {net} ! -d 224.0.0.0/4 {masq} -j MASQUERADE --random-fully",
        f"-A FLANNEL-POSTRTG ! -s {net} -d {net} {masq} -j MASQUERADE --random-fully",
        "COMMIT",
        "",
    ])


def iptables_restore(text: str, *, noflush: bool = True, what: str = "iptables-restore") -> None:
    """Run one ``iptables-restore`` in the calling thread's namespace (a forked child inherits it)."""
    args = ["iptables-restore", "-w"] + (["--noflush"] if noflush else [])
    res = exec.run(args, input=text, check=False)
    if res.returncode != 0:
        raise TestbedError(f"{what} failed: {res.stderr.strip()}")


# --- external clients --------------------------------------------------------------------------
def _build_external(plan: Plan, ext: ExternalPlan, underlay_fd: int) -> None:
    _sysctls(LEAF_SYSCTLS)
    u = plan.underlay
    b = netlink.Batch()
    b.link_set(f"external {ext.name}: lo up", index=1, up=True)
    b.veth_add(f"external {ext.name}: eth0", name="eth0", index=2, mtu=u.mtu, mac=ext.mac, peer_name=ext.name,
               peer_netns_fd=underlay_fd, up=True)
    b.addr_add(f"external {ext.name}: {ext.ip}/{u.prefixlen}", index=2, address=ext.ip, prefixlen=u.prefixlen)
    b.route_add(f"external {ext.name}: default via {u.gateway}", dst="0.0.0.0/0", oif=2, gateway=u.gateway)
    b.apply()


# --- pods --------------------------------------------------------------------------------------
def pod_batch(pod: PodPlan, pod_network: str, node_fd: int) -> netlink.Batch:
    """The one netlink batch that builds a pod's network, sent from inside its new namespace.

    A pod sends no IPv6 frame and has no IPv6 address, as if ``disable_ipv6`` were set, without
    writing it: two ``/proc/sys`` writes per pod were a seventh of the kubelets' CPU at 1,000
    pods. eth0 gets address generation mode ``none`` before it has carrier (no link-local
    address, so no DAD, router solicitation or MLD report; its peer in the node has IPv6
    disabled by the node's defaults), and the loopback's ``::1``, which the kernel adds when lo comes up, is
    removed."""
    w = f"pod {pod.namespace}/{pod.name}"
    b = netlink.Batch()
    b.link_set(f"{w}: lo up", index=1, up=True)
    b.addr_del6(f"{w}: lo ::1 removed", index=1, address="::1", prefixlen=128)
    b.veth_add(f"{w}: eth0", name="eth0", index=naming.POD_ETH0, mtu=pod.mtu, mac=pod.mac,
               peer_name=pod.host_veth, peer_netns_fd=node_fd, peer_mac=pod.host_mac)
    # one request: even if the kernel brings eth0 up before it applies the mode, IPv6 starts
    # configuring it only at carrier, which waits for the peer, brought up in the node later
    b.link_set(f"{w}: eth0 up without IPv6 addresses", index=naming.POD_ETH0, up=True, ipv6_addresses=False)
    b.addr_add(f"{w}: eth0 {pod.ip}/{pod.prefixlen}", index=naming.POD_ETH0, address=pod.ip, prefixlen=pod.prefixlen)
    b.route_add(f"{w}: default via {pod.gateway}", dst="0.0.0.0/0", oif=naming.POD_ETH0, gateway=pod.gateway)
    b.route_add(f"{w}: {pod_network} via {pod.gateway}", dst=pod_network, oif=naming.POD_ETH0, gateway=pod.gateway)
    return b


def _build_pod(pod: PodPlan, pod_network: str, node_fd: int) -> None:
    pod_batch(pod, pod_network, node_fd).apply()


def _attach_pods(plan: Plan, pods: list[PodPlan]) -> None:
    hairpin = plan.hairpin_mode == "hairpin-veth"
    b = netlink.Batch()
    for p in pods:
        b.link_set(f"node {p.node}: attach {p.host_veth} ({p.namespace}/{p.name})", name=p.host_veth,
                   master=naming.NODE_CNI0, up=True, alias=p.netns)
        if hairpin:
            b.bridge_port(f"node {p.node}: hairpin on {p.host_veth}", name=p.host_veth, hairpin=True)
    b.apply()


def _detach_pods(pods: list[PodPlan]) -> None:
    b = netlink.Batch()
    for p in pods:
        b.add(netlink.RTM_DELLINK, netlink.REQUEST, netlink.ifinfo() + netlink.a_str(netlink.IFLA_IFNAME, p.host_veth),
              f"node {p.node}: delete {p.host_veth}")
    try:
        b.apply()
    except OSError as exc:  # already gone (pod netns vanished): nothing to do
        if exc.errno != 19:
            raise


def add_pods(plan: Plan, pods: list[PodPlan], runner: netns.Runner, progress: Progress = _noop) -> None:
    """Create pod namespaces and wire them to their nodes' cni0 (one batch per pod and per node)."""
    by_node: dict[str, list[PodPlan]] = defaultdict(list)
    for p in pods:
        by_node[p.node].append(p)
    fds = {n: netns.open_fd(plan.node(n).netns) for n in by_node}
    try:
        futures = [runner.submit_new(p.netns, _build_pod, p, plan.pod_network, fds[p.node]) for p in pods]
        for i, f in enumerate(futures):
            f.result()
            failpoints.hit("pods", i + 1)
            if i % 50 == 49 or i == len(futures) - 1:
                progress("pods", i + 1, len(pods))
        for node, node_pods in by_node.items():
            runner.run_in(plan.node(node).netns, _attach_pods, plan, node_pods)
    finally:
        for fd in fds.values():
            os.close(fd)


def remove_pods(plan: Plan, pods: list[PodPlan], runner: netns.Runner) -> None:
    by_node: dict[str, list[PodPlan]] = defaultdict(list)
    for p in pods:
        by_node[p.node].append(p)
    for node, node_pods in by_node.items():
        if netns.exists(plan.node(node).netns):
            runner.run_in(plan.node(node).netns, _detach_pods, node_pods)
    for p in pods:
        netns.delete(p.netns)


def apply_plan(plan: Plan, progress: Progress = _noop, workers: int = 1) -> None:
    """Build everything in the plan.  On error the caller tears the cluster down (see cluster.py)."""
    with netns.Runner(workers) as runner:
        runner.run_new(plan.underlay.netns, _build_underlay, plan)
        failpoints.hit("underlay")
        progress("underlay", 1, 1)
        ufd = netns.open_fd(plan.underlay.netns)
        try:
            futures = [runner.submit_new(n.netns, _build_node, plan, n, ufd) for n in plan.nodes]
            futures += [runner.submit_new(e.netns, _build_external, plan, e, ufd) for e in plan.externals]
            for f in futures:
                f.result()
        finally:
            os.close(ufd)
        runner.run_in(plan.underlay.netns, _attach_underlay_ports,
                      [n.name for n in plan.nodes] + [e.name for e in plan.externals])
        rules = [runner.submit_in(n.netns, iptables_restore, flannel_rules(plan, n), what=f"node {n.name}: flannel rules")
                 for n in plan.nodes]
        for i, f in enumerate(rules):
            f.result()
        failpoints.hit("nodes")
        progress("nodes", len(plan.nodes), len(plan.nodes))
        if plan.pods:
            add_pods(plan, plan.pods, runner, progress)
