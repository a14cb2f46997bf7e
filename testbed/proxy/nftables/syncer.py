"""kube-proxy ``--proxy-mode=nftables``: the ``Syncer`` the proxy loop drives.

``NftablesSyncer`` (``sync``) plans each sync as pure data; this module runs the plan in the
node's netns as one transaction and keeps what ``testbed rules --check`` and the metrics need:

- full syncs first list the table's service chains and affinity sets (a restarted proxy
  takes over its predecessor's table: whatever it does not want any more is flushed and later
  deleted, nothing is removed first, so traffic keeps flowing);
- every sync is one transaction (``NftRunner.run``); a rejected one changes nothing in the
  kernel, is reported with nft's complaint and the offending line, and makes the next sync full;
- the table as the proxy wrote it is journaled in ``cfg.rules_file``: a full sync writes the
  whole table (``NftablesSyncer.dump``), a partial sync appends its transaction as one more
  ``nft -f`` segment; ``mode.check_rules`` replays the segments into a scratch netns.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from testbed.proxy.nftables import names
from testbed.proxy.nftables.render import NftablesConfig
from testbed.proxy.nftables.runner import NftRunner, RunError, make_runner
from testbed.proxy.nftables.sync import NftablesSyncer as Planner
from testbed.proxy.syncer import ProxyConfig, SyncOutcome, write_last_restore
from testbed.proxy.tracker import ProxyState, StateChange

log = logging.getLogger("testbed.proxy")

# Starts each journal segment: ``mode.check_rules`` runs every segment as its own transaction,
# as the proxy did.
SEGMENT = "# sync\n"


def config_from(cfg: ProxyConfig) -> NftablesConfig:
    """Upstream's nftables defaults for this node: ClusterCIDR local detection, NodePorts on the
    node's primary address only (``--nodeport-addresses primary``), mark bit 14."""
    return NftablesConfig(
        node_name=cfg.node_name, node_ip=cfg.node_ip,
        detect_local_mode="ClusterCIDR" if cfg.cluster_cidr else "",
        detect_local_value=cfg.cluster_cidr or "", masquerade_all=cfg.masquerade_all,
        nodeport_addresses=(f"{cfg.node_ip}/32",), node_addresses=(cfg.node_ip,),
        service_cidrs=tuple(cfg.service_cidrs))


class NftablesSyncer:
    mode = "nftables"

    def __init__(self, cfg: ProxyConfig, *, runner: NftRunner | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self.config = config_from(cfg)
        self.planner = Planner(self.config)
        self.runner = runner if runner is not None else make_runner()
        self._journal_base = 0
        self.last_operations = 0
        self.last_text_bytes = 0

    @property
    def needs_full_sync(self) -> bool:
        return self.planner.needs_full_sync

    def force_full_sync(self) -> None:
        self.planner.force_full_sync()

    def sync_failed(self) -> None:
        self.planner.force_full_sync()

    def setup_host(self) -> None:
        """Nothing: upstream's nftables mode needs no sysctl (NodePorts on 127.0.0.1, which
        need route_localnet in iptables mode, are not supported in this mode)."""
        return None

    # ------------------------------------------------------------------ one sync
    def sync(self, state: ProxyState, changes: StateChange, full: bool, now: float) -> SyncOutcome:
        t_list = self.clock()
        existing: dict = {}
        if full:
            self.planner.force_full_sync()
            try:
                ex = self.runner.existing()
                existing = {"existing_chains": ex.chains, "existing_sets": ex.sets}
            except RunError as exc:
                log.warning("%s; stale chains are tracked from what this process wrote", exc)
        t_save = self.clock() - t_list
        plan = self.planner.plan(state, now=now, changes=changes, **existing)
        text = plan.text
        t1 = self.clock()
        try:
            self.runner.run(text)
        except RunError as exc:
            self.planner.failed()
            return self._failed(exc, text, full, now, t1, t_save)
        t2 = self.clock()
        self.planner.committed()
        self.last_operations = plan.transaction.operations
        self.last_text_bytes = len(text)
        self.journal(text, full)
        return SyncOutcome(True, text.count("\n"), len(plan.transaction.written_chains),
                           len(plan.transaction.stale_deletes), render=t1 - now, restore=t2 - t1,
                           save=t_save)

    def _failed(self, exc: RunError, text: str, full: bool, now: float, t1: float,
                t_save: float) -> SyncOutcome:
        kind = "full" if full else "partial"
        where = f" at line {exc.line}: {line_at(text, exc.line)}" if exc.line else ""
        log.error("nft -f failed (%s sync, %d lines)%s: %s", kind, text.count("\n"), where, exc.message)
        out = SyncOutcome(False, text.count("\n"), render=t1 - now, restore=self.clock() - t1,
                          save=t_save, error=exc.message, error_line=exc.line,
                          failure_event=f"nft transaction failed ({kind} sync){where}: {exc.message}")
        if not full:
            out.counters["partial_restore_failures_total"] = 1
        return out

    def report(self, state: ProxyState, out: SyncOutcome, full: bool, duration: float,
               conntrack: float, conntrack_deleted: int) -> tuple[str, str]:
        kind = "full" if full else "partial"
        line = (f"{kind} sync: {state.service_count()} services, {state.total_endpoints()} endpoints, "
                f"{self.last_operations} operations, {out.written} chains written, {out.deleted} "
                f"stale chains deleted; {duration * 1e3:.1f} ms (list {out.save * 1e3:.1f}, render "
                f"{(out.render - out.save) * 1e3:.1f}, nft {out.restore * 1e3:.1f}, conntrack "
                f"{conntrack * 1e3:.1f}: {conntrack_deleted} entries)")
        event = (f"full sync: {state.service_count()} services, {state.total_endpoints()} endpoints, "
                 f"{self.last_operations} operations, {out.deleted} stale chains deleted "
                 f"in {duration * 1000:.1f} ms")
        return line, event

    # ------------------------------------------------------------------ intended rules
    def journal(self, text: str, full: bool) -> None:
        """Record what the kernel now holds in ``cfg.rules_file`` (see the module docstring);
        when the appended segments outgrow three times the last whole table, the file is
        rewritten as the whole table again."""
        path = self.cfg.rules_file
        if not path:
            return
        try:
            if not full:
                with open(path, "a") as f:
                    f.write(SEGMENT + text)
                    size = f.tell()
                if size <= 3 * max(self._journal_base, 1 << 16):
                    return
        except OSError as exc:
            log.warning("cannot record the written rules in %s: %s", path, exc)
            return
        whole = SEGMENT + self.planner.dump()
        if write_last_restore(path, whole):
            self._journal_base = len(whole)

    # ------------------------------------------------------------------ monitoring
    def rules_lost(self) -> str | None:
        """Upstream watches for its table being deleted (e.g. ``nft flush ruleset``)."""
        try:
            present = self.runner.table_exists()
        except RunError as exc:
            log.warning("cannot check for table %s: %s", names.TABLE, exc)
            return None
        return None if present else f"table {self.config.family} {names.TABLE} is gone (nft flush ruleset?)"

    def metrics(self) -> dict:
        table = self.planner.kernel.table
        return {"nftables": {
            "services": len(table.services) if table is not None else 0,
            "stale_chains": len(self.planner.kernel.stale),
            "last_sync_operations": self.last_operations,
            "last_sync_bytes": self.last_text_bytes,
            "runner": self.runner.kind,
            # transactions the netlink compiler did not know and nft ran instead
            "runner_fallbacks": getattr(self.runner, "fallbacks", 0)}}

    def close(self) -> None:
        self.runner.close()


def line_at(text: str, n: int | None) -> str:
    if not n:
        return ""
    lines = text.splitlines()
    return lines[n - 1] if 0 < n <= len(lines) else ""
