"""Userspace mode's entry in ``testbed.proxy.modes``: its syncer, and its rules seen from outside
the proxy (``testbed rules``, ``--check``, cleanup).

The port map (which proxy port serves which service port) is read back from the rules
themselves: every portal rule names its service port in its comment and its proxy port in its
``REDIRECT``/``DNAT`` target. Next to each port, whether a socket of the node listens on it,
so a proxy that died (rules left, listeners gone) shows as such.
"""

from __future__ import annotations

import os
import re
import shutil

from testbed import netns, state
from testbed.errors import TestbedError
from testbed.proxy.iptables import apply
from testbed.proxy.iptables import mode as iptables_mode
from testbed.proxy.iptables.restore import HostIptables
from testbed.proxy.syncer import ProxyConfig
from testbed.proxy.userspace import rules

_OURS = rules.NAT_CHAINS + rules.FILTER_CHAINS
# iptables-save prints the matches in its own order (-d, -p, then the modules)
_COMMENT = re.compile(r'--comment ("[^"]*"|\S+)')
_PROTO = re.compile(r" -p (tcp|udp) ")
_PROXY_PORT = re.compile(r"(?:--to-ports |--to-destination \S*:)(\d+)$")


def trace_socket(cluster: str, node: str) -> str:
    """Where the node's proxy tells a trace about the connections it carried (tracing.py)."""
    return os.path.join(state.directory(cluster), f"proxy-{node}.trace.sock")


def make_syncer(cfg: ProxyConfig, **host) -> "UserspaceSyncer":
    # imported here: every proxy imports this module to clean up after this mode, few run it
    from testbed.proxy.userspace.syncer import UserspaceSyncer
    return UserspaceSyncer(cfg, **host)


def problem() -> str | None:
    if shutil.which("iptables-restore") is None:
        return "proxy mode userspace needs iptables-restore, which is not on PATH (apt-get install iptables)"
    return None


def own_rules(saved: apply.SavedTables) -> dict[tuple[str, str], list[str]]:
    """(table, chain) -> rules, for the five chains (and the jumps to them from built-in chains)."""
    out: dict[tuple[str, str], list[str]] = {}
    for table in ("filter", "nat"):
        for line in saved.rules.get(table, []):
            chain = line[3:].split(" ", 1)[0]
            if chain in _OURS or any(line.endswith(f"-j {c}") for c in _OURS):
                out.setdefault((table, chain), []).append(line)
    return out


def port_map(saved: apply.SavedTables) -> dict[str, tuple[str, int]]:
    """Service port name -> (protocol, proxy port), from the container portal rules."""
    out: dict[str, tuple[str, int]] = {}
    for line in saved.rules.get("nat", []):
        if not line.startswith(f"-A {rules.CONTAINER_PORTALS} "):
            continue
        c, p, t = _COMMENT.search(line), _PROTO.search(line), _PROXY_PORT.search(line)
        if c and p and t:
            out[c.group(1).strip('"')] = (p.group(1).upper(), int(t.group(1)))
    return out


def _listening() -> set[tuple[str, int]]:
    """(protocol, port) of the sockets bound in the calling thread's namespace."""
    out = set()
    for proto, path, state in (("TCP", "/proc/thread-self/net/tcp", "0A"), ("UDP", "/proc/thread-self/net/udp", "07")):
        with open(path) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == state:
                    out.add((proto, int(fields[1].rsplit(":", 1)[1], 16)))
    return out


def dump_rules(ns: str) -> str:
    """The node's userspace chains and the jumps to them, then the port map."""
    text = iptables_mode.save_in(ns, "filter", "nat")
    saved = apply.parse_save(text)
    listening = netns.run_in(ns, _listening)
    lines = []
    for (table, chain), rs in sorted(own_rules(saved).items()):
        lines += [f"# {table} {chain}", *rs]
    lines += ["", "Service port -> proxy port (userspace proxier listeners)"]
    pm = port_map(saved)
    if not pm:
        lines.append("  (none)")
    for spn, (proto, port) in sorted(pm.items()):
        state = "listening" if (proto, port) in listening else "NO-LISTENER"
        lines.append(f"  {spn:<40} {proto:<4} {port:<6} {state}")
    return "\n".join(lines) + "\n"


def check_rules(cluster: str, node: str, ns: str) -> tuple[list[apply.RuleDiff], str]:
    """The five chains the node's proxy last restored (``<state>/proxy-NODE.rules``), put in
    ``iptables-save`` form by a round trip through a scratch namespace, against the kernel's;
    and the jumps to them."""
    path = iptables_mode.rules_file(cluster, node)
    try:
        with open(path) as f:
            intended = f.read()
    except FileNotFoundError:
        raise TestbedError(f"kube-proxy on {node} has not recorded a sync yet (no {path})") from None
    want = iptables_mode.normalise(apply.replay_restore([intended]), cluster)
    kernel = apply.parse_save(iptables_mode.save_in(ns, "filter", "nat"))
    diffs = apply.compare_rules(want, kernel)
    diffs += [apply.RuleDiff(j.table, j.chain, "missing jump", [j.saved_form()], [])
              for j in rules.missing_jumps(kernel)]
    return diffs, "the userspace proxy's chains and the jumps to them"


def cleanup() -> None:
    """Upstream ``CleanupLeftovers`` of the userspace proxier, in one restore."""
    ipt = HostIptables()
    text = rules.cleanup_text(apply.parse_save(ipt.save()))
    if not text:
        return
    rc, err = ipt.restore(text)
    if rc != 0:
        raise TestbedError(f"removing the userspace proxy's iptables rules failed: {err.strip()}")
