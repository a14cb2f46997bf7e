"""The iptables rules of kube-proxy's userspace mode, as one ``iptables-restore --noflush``.

Upstream (``pkg/proxy/userspace/proxier.go`` up to v1.25) installs them one ``EnsureRule`` at a
time; here the same rules, in the same chains and with the same arguments, are one restore
input that declares (and so flushes and refills) only its own five chains, leaving every other
chain of the node (flannel's, another proxy mode's) alone:

- nat ``KUBE-PORTALS-CONTAINER`` (from PREROUTING): ``REDIRECT --to-ports`` the proxy port for
  traffic arriving at a portal (cluster IP, external IP, load-balancer IP) from the network;
- nat ``KUBE-PORTALS-HOST`` (from OUTPUT): ``DNAT`` to ``node IP:proxy port`` for the node's
  own traffic, because REDIRECT of locally generated packets answers from the wrong address;
- nat ``KUBE-NODEPORT-CONTAINER`` / ``KUBE-NODEPORT-HOST``: the same for node ports, reached
  through a ``--dst-type LOCAL`` jump that must come after the portal jump;
- filter ``KUBE-NODEPORT-NON-LOCAL`` (from INPUT): accept new connections to the proxy ports
  of node ports on hosts whose INPUT policy would drop them.

The jumps from the built-in chains are added only when ``iptables-save`` shows them missing
(upstream's ``EnsureRule``), so repeating a sync never duplicates them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Mapping, NamedTuple

from testbed import exec as ex
from testbed.proxy.iptables.apply import SavedTables, parse_save
from testbed.proxy.model import ServicePortInfo, ServicePortName, join_host_port

CONTAINER_PORTALS = "KUBE-PORTALS-CONTAINER"
HOST_PORTALS = "KUBE-PORTALS-HOST"
CONTAINER_NODEPORTS = "KUBE-NODEPORT-CONTAINER"
HOST_NODEPORTS = "KUBE-NODEPORT-HOST"
NON_LOCAL_NODEPORTS = "KUBE-NODEPORT-NON-LOCAL"
NAT_CHAINS = (CONTAINER_PORTALS, HOST_PORTALS, CONTAINER_NODEPORTS, HOST_NODEPORTS)
FILTER_CHAINS = (NON_LOCAL_NODEPORTS,)

_PORTALS_COMMENT = ('-m comment --comment '
                    '"handle ClusterIPs; NOTE: this must be before the NodePort rules"')
_NODEPORTS_MATCH = ('-m addrtype --dst-type LOCAL -m comment --comment '
                    '"handle service NodePorts; NOTE: this must be the last rule in the chain"')
_NON_LOCAL_COMMENT = '-m comment --comment "Ensure that non-local NodePort traffic can flow"'
ANY_IPV4 = "0.0.0.0"


class Jump(NamedTuple):
    """A rule in a built-in chain that leads to one of ours; ``prepend`` as upstream's
    ``EnsureRule(Prepend)`` (else ``Append``)."""

    table: str
    chain: str
    args: str
    prepend: bool

    def saved_form(self) -> str:
        return f"-A {self.chain} {self.args}"

    def restore_line(self) -> str:
        return f"{'-I' if self.prepend else '-A'} {self.chain} {self.args}"


# In upstream's iptablesInit order: the portal jumps go first in PREROUTING/OUTPUT and the
# broad --dst-type LOCAL node-port jumps last, so a load-balancer IP that the node treats as
# local still reaches its portal rather than a node port with the same number.
JUMPS: tuple[Jump, ...] = (
    Jump("nat", "PREROUTING", f"{_PORTALS_COMMENT} -j {CONTAINER_PORTALS}", True),
    Jump("nat", "OUTPUT", f"{_PORTALS_COMMENT} -j {HOST_PORTALS}", True),
    Jump("nat", "PREROUTING", f"{_NODEPORTS_MATCH} -j {CONTAINER_NODEPORTS}", False),
    Jump("nat", "OUTPUT", f"{_NODEPORTS_MATCH} -j {HOST_NODEPORTS}", False),
    Jump("filter", "INPUT", f"{_NON_LOCAL_COMMENT} -j {NON_LOCAL_NODEPORTS}", True),
)


@dataclass(frozen=True)
class Portal:
    """Where clients reach a service port: an address (None: any local one, a node port)."""

    ip: str | None
    port: int
    external: bool = False   # an externalIP: also matched for the node's own traffic to it


def portals(info: ServicePortInfo) -> list[Portal]:
    """Upstream ``openPortal`` order: cluster IP, external IPs, load-balancer IPs."""
    out = [Portal(info.cluster_ip, info.port)]
    out += [Portal(ip, info.port, external=True) for ip in info.external_ips]
    out += [Portal(ip, info.port) for ip in info.load_balancer_vips]
    return out


def _to_cidr(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def _common(name: ServicePortName, protocol: str, dport: int, dest: str | None,
            physdev: bool = False, dst_local: bool = False) -> str:
    """Upstream ``iptablesCommonPortalArgs`` (its argument order is the ``iptables-save`` order)."""
    proto = protocol.lower()
    args = f"-m comment --comment {name} -p {proto} -m {proto} --dport {dport}"
    if dest is not None:
        args += f" -d {_to_cidr(dest)}"
    if physdev:
        args += " -m physdev ! --physdev-is-in"
    if dst_local:
        args += " -m addrtype --dst-type LOCAL"
    return args


@dataclass(frozen=True)
class RuleContext:
    """The proxier's addresses: ``listen_ip`` its sockets' bind address, ``host_ip`` the node
    address the node's own traffic is DNATed to when it listens on every address."""

    host_ip: str
    listen_ip: str = ANY_IPV4

    def container_target(self, proxy_port: int) -> str:
        # Bound to every address: REDIRECT, which answers from the address the packet arrived
        # on (so UDP replies match the client's conntrack entry). Bound to one address: only a
        # DNAT to that address reaches the socket.
        if self.listen_ip in (ANY_IPV4, "::"):
            return f"-j REDIRECT --to-ports {proxy_port}"
        return f"-j DNAT --to-destination {join_host_port(self.listen_ip, proxy_port)}"

    def host_target(self, proxy_port: int) -> str:
        # REDIRECT of locally generated packets goes to 127.0.0.1 and the reply comes from
        # another address, so the node's own traffic is DNATed to a real address of the node.
        ip = self.host_ip if self.listen_ip in (ANY_IPV4, "::") else self.listen_ip
        return f"-j DNAT --to-destination {join_host_port(ip, proxy_port)}"


def service_rules(info: ServicePortInfo, proxy_port: int, ctx: RuleContext
                  ) -> dict[str, list[str]]:
    """Every rule of one service port, per chain, in upstream's order."""
    out: dict[str, list[str]] = {c: [] for c in NAT_CHAINS + FILTER_CHAINS}
    name, proto = info.name, info.protocol
    for p in portals(info):
        out[CONTAINER_PORTALS].append(
            f"{_common(name, proto, p.port, p.ip, physdev=p.external)} "
            f"{ctx.container_target(proxy_port)}")
        if p.external:
            out[CONTAINER_PORTALS].append(
                f"{_common(name, proto, p.port, p.ip, dst_local=True)} "
                f"{ctx.container_target(proxy_port)}")
            out[HOST_PORTALS].append(
                f"{_common(name, proto, p.port, p.ip, dst_local=True)} "
                f"{ctx.host_target(proxy_port)}")
        else:
            out[HOST_PORTALS].append(
                f"{_common(name, proto, p.port, p.ip)} {ctx.host_target(proxy_port)}")
    if info.node_port:
        out[CONTAINER_NODEPORTS].append(
            f"{_common(name, proto, info.node_port, None)} {ctx.container_target(proxy_port)}")
        out[HOST_NODEPORTS].append(
            f"{_common(name, proto, info.node_port, None)} {ctx.host_target(proxy_port)}")
        # Upstream matches the proxy port here: INPUT sees the packet after REDIRECT.
        out[NON_LOCAL_NODEPORTS].append(
            f"{_common(name, proto, proxy_port, None)} -m state --state NEW -j ACCEPT")
    return out


def missing_jumps(saved: SavedTables | None) -> list[Jump]:
    """The jumps ``iptables-save`` output lacks (all of them if nothing was saved)."""
    if saved is None:
        return list(JUMPS)
    return [j for j in JUMPS if j.saved_form() not in saved.rules.get(j.table, ())]


def render(services: Mapping[ServicePortName, ServicePortInfo],
           proxy_ports: Mapping[ServicePortName, int], ctx: RuleContext,
           saved: SavedTables | None = None) -> str:
    """The ``iptables-restore --noflush`` input for the proxied service ports.

    Only service ports with a proxy port get rules; they are written in service-port-name
    order (upstream iterated a Go map, so any order is one it could have produced).
    """
    chains: dict[str, list[str]] = {c: [] for c in NAT_CHAINS + FILTER_CHAINS}
    for spn in sorted(proxy_ports):
        info = services.get(spn)
        if info is None:
            continue
        for chain, rules in service_rules(info, proxy_ports[spn], ctx).items():
            chains[chain].extend(rules)
    jumps = missing_jumps(saved)
    lines: list[str] = []
    for table, names in (("filter", FILTER_CHAINS), ("nat", NAT_CHAINS)):
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in names]
        lines += [j.restore_line() for j in jumps if j.table == table]
        for c in names:
            lines += [f"-A {c} {r}" for r in chains[c]]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def cleanup_text(saved: SavedTables) -> str:
    """Upstream ``CleanupLeftovers`` as one restore: the jumps deleted, the chains flushed and
    deleted (only what exists, so it is safe to run on a node that never ran this mode)."""
    lines: list[str] = []
    for table, names in (("filter", FILTER_CHAINS), ("nat", NAT_CHAINS)):
        present = [c for c in names if saved.has_chain(table, c)]
        dels = [f"-D {j.chain} {j.args}" for j in JUMPS
                if j.table == table and j.saved_form() in saved.rules.get(table, ())]
        if not present and not dels:
            continue
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in present]
        lines += dels
        lines += [f"-X {c}" for c in present]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n" if lines else ""


class IptablesError(Exception):
    """``iptables-save``/``iptables-restore`` failed; the message names the command."""


SAVE_CMD = ("iptables-save",)
RESTORE_CMD = ("iptables-restore", "--noflush")


def _checked(cmd: tuple[str, ...], rc: int, out: str, err: str) -> str:
    if rc != 0:
        raise IptablesError(f"{' '.join(cmd)} failed (exit {rc}): {err.strip()}")
    return out


# Both run in the calling thread's network namespace: a child inherits the namespace of the
# thread that forks it.
def save() -> SavedTables:
    """The current filter and nat tables."""
    res = ex.run(SAVE_CMD, check=False)
    return parse_save(_checked(SAVE_CMD, res.returncode, res.stdout, res.stderr))


def restore(text: str) -> None:
    """One ``iptables-restore --noflush``."""
    if text:
        res = ex.run(RESTORE_CMD, input=text, check=False)
        _checked(RESTORE_CMD, res.returncode, res.stdout, res.stderr)


async def _run_async(cmd: tuple[str, ...], text: str | None = None) -> str:
    # a pool thread is started by the loop's thread, so it (and the child it forks) shares
    # that thread's network namespace
    res = await asyncio.to_thread(ex.run, cmd, input=text, check=False)
    return _checked(cmd, res.returncode, res.stdout, res.stderr)


async def save_async() -> SavedTables:
    """``save`` without stalling the event loop that carries the proxied connections."""
    return parse_save(await _run_async(SAVE_CMD))


async def restore_async(text: str) -> None:
    if text:
        await _run_async(RESTORE_CMD, text)
