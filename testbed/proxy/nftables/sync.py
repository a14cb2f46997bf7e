"""The nftables mode's sync state machine: model changes -> one transaction per sync.

``NftablesSyncer.plan(state)`` renders only the Services that changed since the last sync
(all of them on a full sync), plans the transaction against what it last wrote, and returns
it; ``committed()``/``failed()`` tell it whether the kernel took it. Pure: the caller
(``syncer.NftablesSyncer``) runs the transaction and supplies the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from testbed.proxy.model import NamespacedName
from testbed.proxy.tracker import ProxyState, StateChange
from testbed.proxy.nftables.render import (
    TABLE_COMMENT,
    NftablesConfig,
    render_base,
    render_service,
)
from testbed.proxy.nftables.table import Table, dump
from testbed.proxy.nftables.transaction import KernelState, Transaction, full_sync, partial_sync


@dataclass
class SyncPlan:
    transaction: Transaction
    updated_services: set[NamespacedName]
    changes: StateChange = field(repr=False)
    next_state: KernelState = field(repr=False)

    @property
    def full(self) -> bool:
        return self.transaction.full

    @property
    def text(self) -> str:
        return self.transaction.text


class NftablesSyncer:
    """Keeps upstream's sync state (what was written, stale chains, need for a full sync)."""

    def __init__(self, config: NftablesConfig) -> None:
        self.config = config
        self.kernel = KernelState()
        self._need_full = True
        self._base = render_base(config)
        self._topology: Mapping[str, str] | None = None
        self._pending: SyncPlan | None = None

    @property
    def needs_full_sync(self) -> bool:
        return self._need_full

    def force_full_sync(self) -> None:
        self._need_full = True

    def set_topology_labels(self, labels: Mapping[str, str]) -> None:
        """Node labels steer topology hints for every Service: rewrite everything."""
        if dict(labels) != dict(self._topology or {}):
            self._topology = dict(labels)
            self._need_full = True

    def plan(self, state: ProxyState, *, now: float, changes: StateChange | None = None,
             existing_chains: Iterable[str] = (), existing_sets: Iterable[str] = ()) -> SyncPlan:
        """The next sync's transaction; ``existing_*`` (from ``nft list``) matter on full syncs."""
        changes = changes if changes is not None else state.checkout()
        cfg = self.config
        if self._need_full or self.kernel.table is None:
            services = {nn: render_service(cfg, state.ports_of(nn), state.endpoints_map,
                                           self._topology) for nn in state.services()}
            desired = Table(cfg.family, TABLE_COMMENT, self._base, services)
            tx, nxt = full_sync(desired, self.kernel, now=now, existing_chains=existing_chains,
                                existing_sets=existing_sets)
            updated = set(services)
        else:
            updated = changes.updated_services
            services = dict(self.kernel.table.services)
            for nn in updated:
                ports = state.ports_of(nn)
                if ports:
                    services[nn] = render_service(cfg, ports, state.endpoints_map, self._topology)
                else:
                    services.pop(nn, None)
            desired = Table(cfg.family, TABLE_COMMENT, self._base, services)
            tx, nxt = partial_sync(desired, self.kernel, updated, now=now)
        self._pending = SyncPlan(tx, updated, changes, nxt)
        return self._pending

    def committed(self) -> None:
        """The kernel took the last planned transaction."""
        assert self._pending is not None
        self.kernel = self._pending.next_state
        self._need_full = False
        self._pending = None

    def failed(self) -> None:
        """The transaction was rejected (nothing of it applied): the change tracking that led
        to it is spent, so only a full sync can bring the kernel back in line."""
        self._pending = None
        self.kernel = KernelState(self.kernel.table, {}, self.kernel.base_chains_recreated)
        self._need_full = True

    def dump(self) -> str:
        """The table as the kernel holds it after the last committed sync."""
        if self.kernel.table is None:
            return ""
        return dump(self.kernel.table, sorted(self.kernel.stale))
