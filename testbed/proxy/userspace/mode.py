"""Userspace mode's entry in ``testbed.proxy.modes``: its syncer, and its rules seen from outside
the proxy (``testbed rules``, ``--check``, cleanup).

The port map (which proxy port serves which service port) is read back from the rules
themselves: every portal rule names its service port in its comment and its proxy port in its
``REDIRECT``/``DNAT`` target. Next to each port, whether a socket of the node listens on it,
so a proxy that died (rules left, listeners gone) shows as such.
"""

from __future__ import annotations

import re
import shutil

from testbed import netns
from testbed.errors import TestbedError
from testbed.proxy.iptables import apply
from testbed.proxy.iptables import mode as iptables_mode
from testbed.proxy.iptables.restore import HostIptables
from testbed.proxy.syncer import ProxyConfig
from testbed.proxy.userspace import rules
from testbed.proxy.userspace.syncer import UserspaceSyncer

_OURS = rules.NAT_CHAINS + rules.FILTER_CHAINS
_TARGET = re.compile(r"-m comment --comment (\S+) -p (tcp|udp) .*"
                     r"(?:--to-ports (\d+)|--to-destination [^ ]*:(\d+))$")


def make_syncer(cfg: ProxyConfig, **host) -> UserspaceSyncer:
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
        m = _TARGET.search(line)
        if m:
            out[m.group(1).strip('"')] = (m.group(2).upper(), int(m.group(3) or m.group(4)))
    return out


def _listening() -> set[tuple[str, int]]:
    """(protocol, port) of the sockets bound in the calling thread's namespace."""
    out = set()
    for proto, path, state in (("TCP", "/proc/self/net/tcp", "0A"), ("UDP", "/proc/self/net/udp", "07")):
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
        state = "listening" if (proto, port) in listening else "NOT LISTENING"
        lines.append(f"  {spn:<40} {proto:<4} {port:<6} {state}")
    return "\n".join(lines) + "\n"


def check_rules(cluster: str, node: str, ns: str) -> tuple[list[apply.RuleDiff], str]:
    """The five chains the node's proxy last restored (``<state>/proxy-NODE.rules``) against
    the kernel's, and the jumps to them."""
    path = iptables_mode.rules_file(cluster, node)
    try:
        with open(path) as f:
            intended = f.read()
    except FileNotFoundError:
        raise TestbedError(f"kube-proxy on {node} has not recorded a sync yet (no {path})") from None
    want: dict[tuple[str, str], list[str]] = {}
    table = ""
    for line in intended.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            want[(table, line[1:].split(" ", 1)[0])] = []
        elif line.startswith("-A ") and line[3:].split(" ", 1)[0] in _OURS:
            want[(table, line[3:].split(" ", 1)[0])].append(line)
    saved = apply.parse_save(iptables_mode.save_in(ns, "filter", "nat"))
    have = own_rules(saved)
    diffs = []
    for (t, chain), w in sorted(want.items()):
        if not saved.has_chain(t, chain):
            diffs.append(apply.RuleDiff(t, chain, "missing chain", w, []))
        elif have.get((t, chain), []) != w:
            h = have.get((t, chain), [])
            diffs.append(apply.RuleDiff(t, chain, "rules differ", [r for r in w if r not in h],
                                        [r for r in h if r not in w]))
    for j in rules.missing_jumps(saved):
        diffs.append(apply.RuleDiff(j.table, j.chain, "missing jump", [j.saved_form()], []))
    return diffs, f"the {len(want)} userspace proxy chains and their jumps"


def cleanup() -> None:
    """Upstream ``CleanupLeftovers`` of the userspace proxier, in one restore."""
    ipt = HostIptables()
    text = rules.cleanup_text(apply.parse_save(ipt.save()))
    if not text:
        return
    rc, err = ipt.restore(text)
    if rc != 0:
        raise TestbedError(f"removing the userspace proxy's iptables rules failed: {err.strip()}")
