"""IPVS mode's entry in ``testbed.proxy.modes``: its syncer, preflight, and its rules seen from
outside the proxy (``testbed rules``, ``--check``, cleanup)."""

from __future__ import annotations

import os
import socket

from testbed import netlink, netns
from testbed.errors import TestbedError
from testbed.proxy.iptables import apply
from testbed.proxy.iptables import mode as iptables_mode
from testbed.proxy.ipvs import desired as D
from testbed.proxy.ipvs import kernel as K
from testbed.proxy.ipvs import preflight
from testbed.proxy.ipvs.syncer import IpvsSyncer
from testbed.proxy.syncer import ProxyConfig

PERSISTENT = 0x1   # IP_VS_SVC_F_PERSISTENT


def make_syncer(cfg: ProxyConfig, **host) -> IpvsSyncer:
    return IpvsSyncer(cfg, **host)


def problem() -> str | None:
    return preflight.ipvs_problem()


def read_table() -> str:
    """This netns's IPVS table and ipsets read over netlink, laid out like ``ipvsadm -Ln`` and
    ``ipset list``."""
    k = K.IpvsKernel()
    k.open()
    try:
        lines = ["IP Virtual Server (read over netlink)", "Prot LocalAddress:Port Scheduler Flags",
                 "  -> RemoteAddress:Port           Forward Weight"]
        services = k.list_services()
        for key in sorted(services, key=lambda x: (x.protocol, x.address, x.port)):
            vs = services[key]
            flags = f" persistent {vs.timeout}" if vs.flags & PERSISTENT else ""
            lines.append(f"{key.protocol:<4} {key.address}:{key.port} {vs.scheduler}{flags}")
            for rs in sorted(k.list_dests(key)):
                lines.append(f"  -> {str(rs):<28} Masq    {rs.weight}")
        sets = k.list_sets()
        for name in sorted(sets):
            lines += ["", f"Name: {name}", f"Number of entries: {len(sets[name])}", "Members:"]
            lines += sorted(sets[name])
        return "\n".join(lines) + "\n"
    finally:
        k.close()


def dump_rules(ns: str) -> str:
    """The node's ``iptables-save``, then its IPVS table and ipsets."""
    return iptables_mode.dump_rules(ns) + netns.run_in(ns, read_table)


# IPVS mode's jump rules from the built-in chains, as ``compare_rules`` checks them
JUMP_RULES = tuple(apply.JumpRule(table, src, dst, comment, "") for table, src, dst, comment in D.JUMP_RULES)


def _create_sets() -> None:
    """Upstream's ipsets in the calling thread's netns, which the rules' ``--match-set`` need."""
    K.IpvsKernel().ensure_sets()


def check_rules(cluster: str, node: str, ns: str) -> tuple[list, str]:
    """The iptables part of IPVS mode: the last input the node's proxy restored
    (``<state>/proxy-NODE.rules``; each one declares, so flushes, all the mode's chains) as
    iptables mode checks its journal, normalised in a scratch namespace that holds upstream's
    ipsets; and IPVS mode's jump rules. The virtual servers are not compared here (doctor checks
    each Service's against its EndpointSlices)."""
    model = iptables_mode.intended_model(cluster, node)
    intended = iptables_mode.normalise(model, cluster, prelude=_create_sets)
    kernel = apply.parse_save(iptables_mode.save_in(ns, "filter", "nat"))
    n = sum(len(apply.kube_chains(model, t)) for t in ("filter", "nat"))
    return (apply.compare_rules(intended, kernel, jumps=JUMP_RULES),
            f"the {n} KUBE-* chains kube-proxy wrote")


def parse_table(text: str) -> dict[D.VSKey, set[D.RealServer]]:
    """The virtual servers and their real servers in ``read_table``'s (``ipvsadm -Ln``'s) layout;
    lines of anything else (``iptables-save``, ipsets) are ignored."""
    out: dict[D.VSKey, set[D.RealServer]] = {}
    current = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("TCP", "UDP", "SCTP") and not line[0].isspace():
            addr, _, port = parts[1].rpartition(":")
            if addr and port.isdigit():
                current = D.VSKey(addr, parts[0], int(port))
                out[current] = set()
                continue
        if current is not None and len(parts) >= 4 and parts[0] == "->":
            addr, _, port = parts[1].rpartition(":")
            if addr and port.isdigit() and parts[3].isdigit():
                out[current].add(D.RealServer(addr, int(port), int(parts[3])))
                continue
        current = None
    return out


def cleanup() -> None:
    """Upstream IPVS ``CleanupLeftovers``: the iptables rules first (they match the ipsets),
    then every IPVS virtual server, ``kube-ipvs0`` and the ipsets."""
    iptables_mode.cleanup()
    failures: list[tuple[str, int]] = []
    k = K.IpvsKernel()
    try:
        try:
            services = k.list_services()
        except OSError:        # no IPVS in this kernel: no virtual servers either
            services = {}
        g = netlink.Batch()
        for key in services:
            K.del_service(g, k.family, key)
        if len(g):
            failures += k.send("genl", g)
    finally:
        k.close()
    try:
        index = socket.if_nametoindex(D.DUMMY_DEVICE)
    except OSError:
        index = 0
    if index:
        b = netlink.Batch()
        b.add(netlink.RTM_DELLINK, netlink.REQUEST, netlink.ifinfo(index), f"delete {D.DUMMY_DEVICE}")
        with netlink.open_socket() as sock:
            failures += K.send_collect(sock, b)
    if failures:
        what, err = failures[0]
        raise TestbedError(f"removing IPVS mode's rules: {len(failures)} request(s) failed, first: {what}: "
                           f"{os.strerror(err)}")
    _destroy_sets()


def _destroy_sets() -> None:
    try:
        from pyroute2 import IPSet
        with IPSet() as ips:
            names = {msg.get_attr("IPSET_ATTR_SETNAME") for msg in ips.list()}
            for s in D.IPSETS:
                if s.name in names:
                    ips.destroy(s.name)
    except OSError as exc:
        raise TestbedError(f"removing IPVS mode's ipsets: {exc}") from None
