"""The ``rules`` check kind: kube-proxy's Service chains for a Service on every node (KUBE-SVC
chains in iptables mode, ``service-...`` chains of ``table ip kube-proxy`` in nftables mode,
the virtual servers at the Service's ClusterIPs in IPVS mode)."""

from __future__ import annotations

import functools
import re

from .. import exec
from ..troubleshoot.evidence import parse_ipvs_services
from .model import Check

# an nftables-mode service chain and its rules, as ``nft list table`` prints them
_NFT_CHAIN = re.compile(r"^\s*chain service-[A-Z0-9]{8}-(\S+) \{\n(.*?)^\s*\}", re.M | re.S)


def _iptables(netns: str, key: str) -> tuple[int, int]:
    """(KUBE-SVC chains, their rules for Service ``key``)."""
    p = exec.run(["iptables-save", "-t", "nat"], netns=netns, check=False)
    chains = [ln for ln in p.stdout.splitlines() if ln.startswith(":KUBE-SVC-")]
    mine = [ln for ln in p.stdout.splitlines()
            if ln.startswith("-A KUBE-SVC-") and (f'"{key}:' in ln or f'"{key} ' in ln or f'"{key}"' in ln)]
    return len(chains), len(mine)


def _nftables(netns: str, key: str) -> tuple[int, int]:
    """(service chains with rules, rules of ``key``'s service chains); flushed (stale) chains
    wait empty for a later sync to delete them and do not count."""
    p = exec.run(["nft", "list", "table", "ip", "kube-proxy"], netns=netns, check=False)
    live = [(name, [ln for ln in body.splitlines() if ln.strip()]) for name, body in _NFT_CHAIN.findall(p.stdout)]
    live = [(name, rules) for name, rules in live if rules]
    return len(live), sum(len(rules) for name, rules in live if name.startswith(f"{key}/"))


def _ipvs(netns: str, addresses: set[str]) -> tuple[int, int]:
    """(virtual servers, those at one of the Service's ``addresses``): IPVS mode has no chain
    per Service, its virtual servers are the Service's programming."""
    p = exec.run(["cat", "/proc/net/ip_vs"], netns=netns, check=False)
    servers = parse_ipvs_services(p.stdout)
    return len(servers), sum(1 for vs in servers if vs.split()[1].rsplit(":", 1)[0] in addresses)


class RulesCheck:
    def rules(self, c: Check) -> None:
        key = f"{c.to.namespace}/{c.to.service}"
        mode = self.v.plan.proxy_mode
        if mode == "ipvs":
            with self.v.c.api() as api:
                spec = api.get("Service", c.to.namespace, c.to.service).get("spec") or {}
            # a headless or ExternalName Service has none, so nothing may be programmed for it
            addresses = {a for a in spec.get("clusterIPs") or [spec.get("clusterIP")] if a and a != "None"}
            what, absent, present = ("IPVS virtual servers", f"no IPVS virtual server for {key}",
                                     f"IPVS virtual servers for {key}")
            count = functools.partial(_ipvs, addresses=addresses)
        else:
            nft = mode == "nftables"
            what, rule = ("service chains", "service chain") if nft else ("KUBE-SVC chains", "KUBE-SVC")
            absent, present = f"no {rule} rule for {key}", f"{rule} rules for {key}"
            count = functools.partial(_nftables if nft else _iptables, key=key)
        per_node = []
        for n in self.v.plan.nodes:
            self.nodes_involved.add(n.name)
            k, m = count(n.netns)
            per_node.append((n.name, k, m))
        # must-see-something: the proxy is programming other Services on every node
        alive = all(k > 0 for _, k, _ in per_node)
        self.r.add("rules", f"kube-proxy active: {what} on every node",
                   ", ".join(f"{n}: {k} {what}" for n, k, _ in per_node), alive)
        if c.rules == "absent":
            self.r.add("rules", f"{absent} on any node",
                       ", ".join(f"{n}: {m}" for n, _, m in per_node), all(m == 0 for _, _, m in per_node))
        else:
            self.r.add("rules", f"{present} on every node",
                       ", ".join(f"{n}: {m}" for n, _, m in per_node), all(m > 0 for _, _, m in per_node))
