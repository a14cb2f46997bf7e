"""Desired table + what the kernel holds -> one ``nft -f`` transaction (pure).

A full sync rewrites everything: the table, every chain added and flushed then refilled, the
service sets and maps flushed and refilled; service chains that exist in the kernel but are no
longer wanted are flushed and become *stale*. A partial sync looks only at the Services that
changed: their chains are added, flushed and refilled; a chain no longer wanted is flushed and
becomes stale; set and map elements that differ are deleted or added one by one.

Stale chains are deleted only by a sync that starts more than ``STALE_CHAIN_DELAY`` seconds
after they were flushed, because kernels before 6.2 keep a just-removed verdict-map element's
reference to its chain for a moment, and deleting the chain then fails. Their ``delete chain``
lines go first in the same ``nft -f`` input; ``Transaction.operations`` counts the rest, which
is what upstream's tests count (``NumOperations()`` of the sync's main transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from testbed.proxy.model import NamespacedName
from testbed.proxy.nftables import names
from testbed.proxy.nftables.render import BASE_CHAIN_NAMES, NODEPORT_IPS, SERVICE_CONTAINERS
from testbed.proxy.nftables.table import (
    Fragment,
    Table,
    chain_line,
    container_line,
    element_line,
    prefix,
    rule_lines,
    table_line,
)

STALE_CHAIN_DELAY = 1.0
_EMPTY = Fragment()


@dataclass
class KernelState:
    """What the proxy last wrote: the table, and flushed chains waiting to be deleted."""

    table: Table | None = None
    stale: dict[str, float] = field(default_factory=dict)     # chain -> when it was flushed
    base_chains_recreated: bool = False


@dataclass
class Transaction:
    lines: list[str]                       # the sync's main transaction
    stale_deletes: list[str] = field(default_factory=list)
    full: bool = False
    written_chains: list[str] = field(default_factory=list)
    flushed_stale: list[str] = field(default_factory=list)

    @property
    def operations(self) -> int:
        return len(self.lines)

    @property
    def text(self) -> str:
        lines = self.stale_deletes + self.lines
        return "\n".join(lines) + "\n" if lines else ""


def _old_stale(state: KernelState, now: float, family: str) -> tuple[list[str], dict[str, float]]:
    keep, deletes = {}, []
    for chain, since in state.stale.items():
        if since < now - STALE_CHAIN_DELAY:
            deletes.append(f"delete chain {prefix(family)} {chain}")
        else:
            keep[chain] = since
    return deletes, keep


def _reset_base_containers(desired: Table, pre: str, fam: str) -> list[str]:
    """Empty the sets and maps a full sync refills (and drop ``nodeport-ips`` if unused)."""
    out = [f"flush {desired.base.containers[name].kind} {pre} {name}" for name in SERVICE_CONTAINERS]
    if NODEPORT_IPS in desired.base.containers:
        out.append(f"flush set {pre} {NODEPORT_IPS}")
    else:
        # "add" first so that the delete cannot fail when the set is already absent.
        addr = "ipv6_addr" if fam == "ip6" else "ipv4_addr"
        out += [f"add set {pre} {NODEPORT_IPS} {{ type {addr} ; }}", f"delete set {pre} {NODEPORT_IPS}"]
    return out


def full_sync(desired: Table, state: KernelState, *, now: float,
              existing_chains: Iterable[str] = (), existing_sets: Iterable[str] = ()
              ) -> tuple[Transaction, KernelState]:
    """Rewrite the whole table; ``existing_*`` are what ``nft list`` showed in the kernel."""
    fam = desired.family
    pre = prefix(fam)
    stale_deletes, stale = _old_stale(state, now, fam)
    lines = [table_line(fam, desired.comment)]
    if not state.base_chains_recreated:
        # Re-create base chains once per proxy life: a changed hook or priority of an existing
        # base chain cannot be altered in place.
        for name in BASE_CHAIN_NAMES:
            lines += [f"add chain {pre} {name}", f"delete chain {pre} {name}"]
    written: list[str] = []
    rules: list[str] = []
    elements: list[str] = []
    wanted_chains: set[str] = set()
    wanted_sets: set[str] = set()
    for frag in desired.fragments():
        for ch in frag.chains.values():
            lines += [chain_line(fam, ch), f"flush chain {pre} {ch.name}"]
            wanted_chains.add(ch.name)
            if frag is not desired.base:
                written.append(ch.name)
        for c in frag.containers.values():
            lines.append(container_line(fam, c))
            wanted_sets.add(c.name)
        for ch in frag.chains.values():
            # The kernel walks the whole pending transaction each time a rule binds an
            # anonymous set ("vmap { ... }", "{ a , b }"): such chains are written right after
            # their Service's chains exist, while the transaction is still short.
            (lines if any(" { " in r for r in ch.rules) else rules).extend(rule_lines(fam, ch))
        elements += [element_line(fam, k, e) for k, e in frag.elements.items()]
        if frag is desired.base:
            lines += _reset_base_containers(desired, pre, fam)
    flushed = []
    for chain in sorted(set(existing_chains) | set(stale)):
        if names.is_service_chain(chain) and chain not in wanted_chains:
            if chain not in stale:
                lines.append(f"flush chain {pre} {chain}")
                flushed.append(chain)
                stale[chain] = now
        else:
            stale.pop(chain, None)
    for s in sorted(existing_sets):
        if names.is_affinity_set(s) and s not in wanted_sets:
            lines.append(f"delete set {pre} {s}")
    tx = Transaction(lines + rules + elements, stale_deletes, True, written, flushed)
    return tx, KernelState(desired, stale, True)


def partial_sync(desired: Table, state: KernelState, changed: Iterable[NamespacedName], *,
                 now: float) -> tuple[Transaction, KernelState]:
    """Write only what differs in the ``changed`` Services' objects."""
    assert state.table is not None, "a partial sync needs a previous full sync"
    fam = desired.family
    pre = prefix(fam)
    stale_deletes, stale = _old_stale(state, now, fam)
    el_deletes, chains, sets, rules, el_adds = [], [], [], [], []
    written, flushed = [], []
    for nn in sorted(changed):
        old = state.table.services.get(nn, _EMPTY)
        new = desired.services.get(nn, _EMPTY)
        if old is new:
            continue
        # Like upstream, every chain of a changed Service is rewritten, even one whose rules
        # came out the same: it keeps a partial sync's size predictable (upstream's tests
        # count its operations) and costs a few lines per changed Service.
        for name, ch in new.chains.items():
            stale.pop(name, None)
            chains += [chain_line(fam, ch), f"flush chain {pre} {name}"]
            rules += rule_lines(fam, ch)
            written.append(name)
        for name in old.chains:
            if name not in new.chains and name not in stale:
                chains.append(f"flush chain {pre} {name}")
                flushed.append(name)
                stale[name] = now
        for name, c in new.containers.items():
            was = old.containers.get(name)
            if was is not None and was != c:
                # A set's timeout cannot be changed by "add set": replace it.
                sets.append(f"delete {c.kind} {pre} {name}")
            sets.append(container_line(fam, c))
        for name, c in old.containers.items():
            if name not in new.containers:
                sets.append(f"delete {c.kind} {pre} {name}")
        for key, el in new.elements.items():
            was = old.elements.get(key)
            if was != el:
                if was is not None:
                    el_deletes.append(element_line(fam, key, was, "delete"))
                el_adds.append(element_line(fam, key, el))
        for key, el in old.elements.items():
            if key not in new.elements:
                el_deletes.append(element_line(fam, key, el, "delete"))
    tx = Transaction(el_deletes + chains + sets + rules + el_adds, stale_deletes, False,
                     written, flushed)
    return tx, KernelState(desired, stale, state.base_chains_recreated)
