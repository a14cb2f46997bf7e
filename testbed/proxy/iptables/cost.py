"""What a restore will cost, so a sync can pick the cheaper of a partial and a full restore (pure).

iptables-nft's ``--noflush`` restore is quadratic in the chains it writes (each declared chain
is looked up in, and flushed from, a cache it walks linearly), independent of how many chains
the table already holds; a table-replacing restore is linear in the lines of the whole table.
Measured on the development host (Debian 12, iptables 1.8.9 nft, kernel 6.18, 2 shared
cores under load), one restore each, chains of two or four rules:

    --noflush, chains written:   3,000 -> 0.64-0.75 s   6,000 -> 1.5 s   12,000 -> 6.1 s
    (new or existing chains alike; the same with 5,000 or 25,000 chains already in the table)
    whole table, lines:          60,000 -> 1.85 s       123,000 -> 3.6 s (cold) .. 8.5 s (replacing)

so a ``--noflush`` restore costs ~1e-4 s per chain plus ~3e-8 s per chain squared, and a
whole-table one ~4e-5 s per line. At 100k endpoints (~400k lines) a partial sync pays off up
to ~20k chains; past that the whole table is written.

A partial sync split into restores of at most ``batch`` chains each (``apply.split_restore``)
pays the quadratic term per restore only: ~1.6e-4 s per chain at 2,000 chains a restore, so it
stays cheaper than the whole table until it writes about as many chains as the table holds
endpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from testbed.proxy.tracker import ProxyState, StateChange

NOFLUSH_SECONDS_PER_CHAIN = 1e-4
NOFLUSH_SECONDS_PER_CHAIN2 = 3e-8
FULL_SECONDS_PER_LINE = 4e-5
# a full sync's iptables-save and the start of a restore, whatever the size: a small partial
# sync stays partial even when the table is nearly empty
FULL_FIXED_SECONDS = 0.05
RESTORE_FIXED_SECONDS = 0.02   # one more iptables-restore process, for a split partial sync
# per service port: its KUBE-SVC- chain and a few KUBE-SERVICES/KUBE-NODEPORTS lines; per
# endpoint: its KUBE-SEP- chain (declaration, mark rule, DNAT rule) and a jump from KUBE-SVC-
LINES_PER_PORT = 4
LINES_PER_ENDPOINT = 4


@dataclass(frozen=True)
class RestoreCost:
    chains: int              # chains a partial restore would write (declared or deleted)
    table_lines: int         # lines a full restore would write
    partial_seconds: float
    full_seconds: float

    @property
    def full_is_cheaper(self) -> bool:
        return self.full_seconds < self.partial_seconds


def partial_chains(state: ProxyState, changes: StateChange, skip_unchanged: bool = True) -> int:
    """Chains a partial sync writes: every updated Service's port chains, and its endpoint
    chains that appear or go away (``skip_unchanged``: the syncer leaves out chains the kernel
    holds as they are) or all of them, before and after (each is rewritten)."""
    n = 0
    for nn in changes.updated_services:
        ports = state.ports_of(nn)
        n += len(ports)
        prev_svc = changes.service_changes.get(nn)
        if prev_svc is not None:
            n += len(set(prev_svc[0]) - set(ports))
        eps = changes.endpoint_changes.get(nn)
        if eps is None:
            if not skip_unchanged:
                n += sum(len(state.endpoints_map.get(spn, ())) for spn in ports)
            continue
        prev, cur = eps
        for spn in set(prev) | set(cur):
            before = {str(ep) for ep in prev.get(spn, ())}
            after = {str(ep) for ep in cur.get(spn, ())}
            n += len(before ^ after) if skip_unchanged else len(before | after)
    return n


def table_lines(state: ProxyState) -> int:
    return LINES_PER_PORT * len(state.svc_port_map) + LINES_PER_ENDPOINT * state.total_endpoints()


def restore_cost(chains: int, lines: int, batch: int = 0) -> RestoreCost:
    return RestoreCost(chains, lines, noflush_seconds(chains, batch),
                       FULL_FIXED_SECONDS + FULL_SECONDS_PER_LINE * lines)


def estimate(state: ProxyState, changes: StateChange, skip_unchanged: bool = True,
             batch: int = 0, stale: int = 0) -> RestoreCost:
    """``stale``: chains the sync deletes besides the changed Services' (a large cluster's
    periodic sweep of stale chains)."""
    return restore_cost(partial_chains(state, changes, skip_unchanged) + stale, table_lines(state), batch)


def noflush_seconds(chains: int, batch: int = 0) -> float:
    """One ``--noflush`` restore of ``chains`` chains, or (``batch``) as many restores of at
    most ``batch`` chains each as it takes."""
    if batch <= 0 or chains <= batch:
        return NOFLUSH_SECONDS_PER_CHAIN * chains + NOFLUSH_SECONDS_PER_CHAIN2 * chains * chains
    full, rest = divmod(chains, batch)
    return full * noflush_seconds(batch) + noflush_seconds(rest) + (full - (rest == 0)) * RESTORE_FIXED_SECONDS


def break_even_chains(lines: int) -> int:
    """The chain count past which a whole-table restore of ``lines`` lines is cheaper."""
    full = FULL_FIXED_SECONDS + FULL_SECONDS_PER_LINE * lines
    a, b = NOFLUSH_SECONDS_PER_CHAIN2, NOFLUSH_SECONDS_PER_CHAIN
    return int((-b + math.sqrt(b * b + 4 * a * full)) / (2 * a))
