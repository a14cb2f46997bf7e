"""What the proxy loop asks of a proxy mode: the ``Syncer`` interface and the proxy's config.

The loop (``testbed.proxy.loop``) owns everything that is the same in every mode: the watches,
``ProxyState`` change tracking, the sync scheduler, the full/partial decision, conntrack
cleanup, health checks, metrics and events. A ``Syncer`` owns one mode's kernel state: it turns
the state (and, on partial syncs, what changed) into rules and applies them. A mode is a
package with a syncer and an entry in ``testbed.proxy.modes``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Protocol

from testbed.proxy.tracker import ProxyState, StateChange

log = logging.getLogger("testbed.proxy")


@dataclass
class ProxyConfig:
    """One kube-proxy's configuration (upstream ``KubeProxyConfiguration``: shared fields, then
    the ones a single mode reads)."""

    cluster: str
    node_name: str
    node_ip: str
    cluster_cidr: str | None = None
    metrics_file: str | None = None
    min_sync_period: float = 1.0       # upstream --iptables-min-sync-period default
    sync_period: float = 30.0          # upstream --iptables-sync-period default
    full_sync_period: float = 3600.0   # upstream proxyutil.FullSyncPeriod
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    burst_syncs: int = 2
    service_cidrs: tuple[str, ...] = ()   # nftables mode drops traffic to unallocated ClusterIPs
    # iptables mode
    rules_file: str | None = None      # journal of what was restored since the last full sync
    replace_full_sync: bool = False    # full syncs restore whole tables (see iptables.apply.replace_tables_text)
    skip_unchanged_chains: bool = False  # partial syncs leave out chains the kernel holds as is
    cost_based_full_sync: bool = False   # a partial sync dearer than a full one is done as a full one
    restore_deadline: float | None = None  # seconds an iptables-restore may run before it is killed
    restore_batch_chains: int = 0      # a partial sync writing more chains is split (apply.split_restore)
    # ipvs mode
    ipvs_scheduler: str = "rr"         # upstream --ipvs-scheduler default
    # userspace mode
    trace_socket: str | None = None    # unix socket where `testbed trace` hears the proxy's side


@dataclass
class SyncOutcome:
    """What one ``Syncer.sync`` did. Durations are seconds of the syncer's clock; ``render`` runs
    from the start of the sync (the loop's ``now``) to the end of the render, ``save`` is the
    part of it spent reading the kernel first."""

    ok: bool
    lines: int = 0                 # rule text lines written
    written: int = 0               # chains written (iptables), kernel requests (ipvs)
    deleted: int = 0               # stale chains deleted
    render: float = 0.0
    restore: float = 0.0
    save: float = 0.0
    error: str | None = None       # one line, for metrics
    error_line: int | None = None  # the rejected input line, if the mode knows it
    failure_event: str = ""        # the SyncFailed Event's message
    counters: dict[str, int] = field(default_factory=dict)   # mode-specific counters to add
    resync_now: bool = False       # failed in a way a full sync fixes at once: do not wait sync_period
    events: list[dict] = field(default_factory=list)   # mode-specific Events to post (any object)


class Syncer(Protocol):
    """One proxy mode's kernel side. Called from the loop's sync thread only."""

    mode: str

    @property
    def needs_full_sync(self) -> bool:
        """True until a full sync succeeded, and again after a failure or ``force_full_sync``."""
        ...

    def setup_host(self) -> None:
        """Once, before the first sync: modules and sysctls this mode needs in the node's netns."""
        ...

    def sync(self, state: ProxyState, changes: StateChange, full: bool, now: float) -> SyncOutcome:
        """Apply ``state`` (all of it if ``full``, else what ``changes`` names). A failure the
        kernel reports is an outcome with ``ok=False``; the syncer then needs a full sync."""
        ...

    def force_full_sync(self) -> None: ...

    def sync_failed(self) -> None:
        """The sync raised: the next one must be full."""
        ...

    def report(self, state: ProxyState, out: SyncOutcome, full: bool, duration: float,
               conntrack: float, conntrack_deleted: int) -> tuple[str, str]:
        """(log line, ``Synced`` Event message) for a successful sync."""
        ...

    def rules_lost(self) -> str | None:
        """Checked every sync period: why the kernel no longer holds this mode's rules (a full
        resync follows), or None."""
        ...

    def metrics(self) -> dict:
        """Mode-specific keys added to the metrics document."""
        ...

    def close(self) -> None:
        """Release sockets and children; the rules stay in place."""
        ...


def write_last_restore(path: str | None, text: str) -> bool:
    """Replace ``path`` (``ProxyConfig.rules_file``) with ``text``, the rules a mode last applied,
    which ``check_rules`` compares with the kernel. Written beside and renamed into place, so a
    concurrent ``testbed rules --check`` never reads half a file. A failure is logged, not
    raised: the rules are in the kernel all the same, only the check lacks them. Returns
    whether the file was written (False without a path)."""
    if not path:
        return False
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.warning("cannot record the applied rules in %s: %s", path, exc)
        return False
