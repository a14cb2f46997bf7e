"""kube-proxy ``--proxy-mode=iptables``: the ``Syncer`` that renders and restores the rules.

- One ``iptables-restore -w 5 -W 100000 --noflush --counters`` per sync (a child of this
  process, so it runs in this process's netns: the node's). Two measured speed-ups, both off by
  default and on in the kube-proxy process (``__main__``): ``replace_full_sync`` restores a full
  sync's tables whole, carrying over every rule that is not kube-proxy's from the sync's own
  ``iptables-save`` (iptables-nft's ``--noflush`` mode is quadratic in the chains written:
  38 s instead of ~1.5 s at 10k Services), and ``skip_unchanged_chains`` leaves out of a
  partial sync the chains whose rules the kernel already holds (an endpoint change no longer
  rewrites a 10k-rule ``KUBE-SERVICES``). The text kube-proxy renders is unchanged. A full sync's
  restore is started before the render and fed chunk by chunk (``RestoreStream``), chains
  declared just before their rules, so the child parses while Python renders.
- Full syncs first run one ``iptables-save``: its nat chain names are the renderer's
  ``existing_nat_chains`` (so a restarted proxy deletes chains its predecessor left stale,
  without flushing anything first) and its rules tell which of upstream's jump rules / canary
  chains are missing; those are folded into the same restore. A partial sync written whole
  (below) does not read the kernel: it carries over what the last full sync read, less
  kube-proxy's own chains, plus what that sync added (``apply.after_full_sync``) -- the save
  of a 400k-line table costs seconds, and upstream reads the table only to learn which chains
  to delete, which the renderer tracks itself. A failed restore, a forced full sync (the canary
  is gone) and every full sync the loop asks for read the kernel again.
- A partial sync is done as a full one when it would cost more (``cost_based_full_sync``,
  ``cost.py``: ``--noflush`` is quadratic in the chains written, a whole-table restore linear
  in the table): a burst of 100k endpoint changes is one whole-table restore of a few seconds
  instead of a ``--noflush`` one of minutes. Stale chains are left out of (replace) or deleted
  in (``--noflush``) the same restore.
- A partial sync writing more than ``restore_batch_chains`` chains is split into restores of
  about that many (``apply.split_restore``: each Service's chains whole, then the top-level
  chains with the deletion of the stale chains they stop jumping to, or, more than
  ``restore_batch_chains`` of these, their deletion in restores of their own after it), each its
  own transaction and every state in between a consistent ruleset: the quadratic cost is paid
  per restore, so a sync of 20k new endpoint chains costs ~3 s instead of ~14 s and a growing
  table is written as it grows, not again and again whole. The pieces are cut one at a time and
  journaled as each is committed. One transaction per sync would cost more here: a whole-table
  restore growing the table from 20k to 100k endpoints took 45-60 s where the split one took
  31-42 s (same period, load 16-22), one ``--noflush`` restore of the new chains is quadratic,
  and so is one deleting 35k stale chains (16.5 s at load 20, the cleanup target is 10 s).
- A ``--noflush`` restore running past ``restore_deadline`` is killed (nothing of it is
  committed; the restores of a split sync before it are) and a full sync, restoring the whole table, follows at once; a restore child dies with the proxy (``restore.RestoreStream``).
- On a failed restore the kernel keeps its previous rules (``--noflush``; tables that failed
  are not committed), the offending input line is logged and ``restore_failed()`` makes the
  next sync full.
- Every successful restore input is journaled in ``cfg.rules_file`` (``testbed rules --check``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable

from testbed.proxy.iptables import apply, cost
from testbed.proxy.iptables.names import FILTER_CHAINS, NAT_CHAINS, is_service_chain_name
from testbed.proxy.iptables.render import IptablesConfig, IptablesRenderer, LocalDetector
from testbed.proxy.iptables.restore import BufferedRestore, HostIptables, Iptables
from testbed.proxy.model import IPV4
from testbed.proxy.syncer import ProxyConfig, SyncOutcome, write_last_restore
from testbed.proxy.sysctl import read_sysctl, write_sysctl
from testbed.proxy.tracker import ProxyState, StateChange

log = logging.getLogger("testbed.proxy")

ROUTE_LOCALNET = "net.ipv4.conf.all.route_localnet"
BE_LIBERAL = "net.netfilter.nf_conntrack_tcp_be_liberal"


def _digest(block: str) -> bytes:
    """Chain rules by digest: what the kernel holds is compared, never read back, and its text
    would be a second copy of the whole ruleset (~30 MB at 100k endpoints)."""
    return hashlib.blake2b(block.encode(), digest_size=16).digest()


def _ours_nat(chain: str) -> bool:
    """The nat chains a full sync writes (or, when stale, drops): the rest is carried over."""
    return chain in NAT_CHAINS or is_service_chain_name(chain)


def _ours(table: str, chain: str) -> bool:
    """The chains every full sync writes whole, so a kept copy of the kernel leaves them out."""
    return _ours_nat(chain) if table == "nat" else table == "filter" and chain in FILTER_CHAINS


class IptablesSyncer:
    mode = "iptables"

    def __init__(self, cfg: ProxyConfig, *, iptables: Iptables | None = None,
                 random_fully: bool | None = None, be_liberal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self.iptables = iptables if iptables is not None else HostIptables()
        if random_fully is None:
            random_fully = HostIptables.random_fully()
        if be_liberal is None:
            be_liberal = read_sysctl(BE_LIBERAL) not in (None, "0")
        self.config = IptablesConfig(
            node_name=cfg.node_name, node_ips=(cfg.node_ip,), ip_family=IPV4,
            local_detector=LocalDetector("ClusterCIDR", cfg.cluster_cidr) if cfg.cluster_cidr else None,
            masquerade_all=cfg.masquerade_all, mark_format="padded",
            localhost_nodeports=cfg.localhost_nodeports, conntrack_tcp_be_liberal=be_liberal,
            random_fully=random_fully, sync_period=cfg.sync_period, full_sync_period=cfg.full_sync_period)
        self.renderer = IptablesRenderer(self.config)
        self._journal_base = 0
        # (table, chain) -> digest of the rules the kernel holds in it, from our own restores
        self._kernel_blocks: dict[tuple[str, str], bytes] = {}
        # the kernel's tables less kube-proxy's chains, as the last full sync left them
        self._foreign: apply.SavedTables | None = None
        self.last_full = False   # what the last sync was: the loop's choice, or promoted by cost

    @property
    def needs_full_sync(self) -> bool:
        return self.renderer.needs_full_sync

    def force_full_sync(self) -> None:
        self._foreign = None
        self.renderer.force_full_sync()

    def sync_failed(self) -> None:
        self._foreign = None
        self.renderer.restore_failed()

    def setup_host(self) -> None:
        if self.renderer.localhost_nodeports:
            write_sysctl(ROUTE_LOCALNET, 1)

    # ------------------------------------------------------------------ one sync
    def sync(self, state: ProxyState, changes: StateChange, full: bool, now: float) -> SyncOutcome:
        promoted = False
        if not full and self.cfg.cost_based_full_sync:
            est = cost.estimate(state, changes, self.cfg.skip_unchanged_chains, self.cfg.restore_batch_chains,
                                self.renderer.stale_chains_due(now))
            if est.full_is_cheaper:
                log.info("partial sync would write %d chains (~%.1f s with --noflush): writing the "
                         "whole table instead (%d lines, ~%.1f s)", est.chains, est.partial_seconds,
                         est.table_lines, est.full_seconds)
                full = promoted = True
        self.last_full = full
        saved = None
        ts = self.clock()
        fresh = False   # saved was read from the kernel by this sync
        if full:
            saved = self._foreign if promoted else None
            if saved is None:
                try:
                    saved = apply.parse_save(self.iptables.save())
                    fresh = True
                except OSError as exc:
                    log.warning("%s; stale chains are tracked from what this process wrote", exc)
        t_save = self.clock() - ts
        stream = None
        missing = apply.missing_jump_rules(saved) if saved is not None else []
        if full and saved is not None and self.cfg.replace_full_sync:
            stream = self._open_full_restore(saved)
        try:
            result = self.renderer.sync(
                state, changes=changes, full=full, now=now,
                existing_nat_chains=saved.chain_names("nat") if fresh else None,
                on_chunk=stream.write if stream is not None else None)
            if stream is not None:   # the child can commit nat while the rest is prepared
                extra = apply.host_extras("nat", NAT_CHAINS.__contains__, missing, saved)
                stream.write(self.renderer.nat_tail + "".join(extra) + "COMMIT\n")
            text = result.text
            if full and saved is not None:
                text = apply.add_host_rules(text, missing, saved)
            ours = text
            if stream is not None:   # then filter (and the mangle canary), replaced whole
                stream.write(apply.replace_tables_text(ours, saved))
        except BaseException:
            if stream is not None:
                stream.abort()   # no child is left waiting for input
            raise
        blocks = None
        spans = None   # the partial input parsed once, for every way it is shaped below
        split = not full and self.cfg.restore_batch_chains > 0
        if stream is None and not full and self.cfg.skip_unchanged_chains:
            spans = apply.spans(ours)
            blocks = apply.chain_digests(ours, _digest, spans)
            if self._kernel_blocks:
                spans, skipped = apply.drop_unchanged_spans(spans, self._kernel_blocks, blocks)
                if skipped:   # a split input is cut from the spans: no joined copy of it all
                    text = None if split else "".join(piece for _, _, _, piece in spans)
        t1 = self.clock()
        journaled = False
        if stream is not None:
            text = stream.text
            if self.cfg.skip_unchanged_chains:
                blocks = apply.chain_digests(text, _digest)   # while the child parses and commits
            rc, stderr = stream.close()
            lines = text.count("\n")
        else:
            # pieces are cut one at a time and journaled once committed, so that no more than
            # one of them is alive besides the render and the spans: all of them and their join
            # for the journal were two more copies of a sync's input (~30 MB at 80k chains)
            pieces = (apply.iter_split_restore(text, result.written_groups, self.cfg.restore_batch_chains, spans)
                      if split else iter([text]))
            spans = None
            lines = restores = 0
            for piece in pieces:
                # only partial syncs have a deadline: theirs is the cost that explodes (quadratic
                # in the chains written) and a full sync is the way out; a full one is linear in
                # the table (and fed while the renderer runs), and killing it would leave no way out
                stream = self._open_restore(noflush=True, deadline=None if full else self.cfg.restore_deadline)
                stream.write(piece)
                if blocks is None and self.cfg.skip_unchanged_chains:
                    blocks = apply.chain_digests(ours, _digest)   # while the child parses and commits
                rc, stderr = stream.close()
                restores += 1
                lines += piece.count("\n")
                text = piece   # error lines refer to the failed input
                if rc != 0:   # the inputs before it are committed (and journaled): a full sync follows
                    break
                if not full:
                    self.journal(piece, False)
                    journaled = True
            if restores > 1:
                log.info("partial sync written as %d restores of at most ~%d chains each",
                         restores, self.cfg.restore_batch_chains)
        t2 = self.clock()
        if blocks is not None:
            if rc != 0:
                self._kernel_blocks = {}
            else:
                if full:
                    self._kernel_blocks = {}
                for c in result.deleted_chains:
                    self._kernel_blocks.pop(("nat", c), None)
                self._kernel_blocks.update(blocks)
        out = SyncOutcome(rc == 0, lines, len(result.written_chains), len(result.deleted_chains),
                          render=t1 - now, restore=t2 - t1, save=t_save)
        if promoted:
            out.counters["partial_syncs_written_whole_total"] = 1
        if getattr(stream, "timed_out", False):
            out.counters["restore_deadline_kills_total"] = 1
            # the kernel kept its previous rules; a whole-table restore is the cheap way out
            out.resync_now = True
        if rc != 0:
            self._foreign = None
            self.renderer.restore_failed()
            line = apply.restore_error_line(stderr)
            msg = stderr.strip().splitlines()[0] if stderr.strip() else f"exit status {rc}"
            log.error("iptables-restore failed (%s sync, %d lines, exit %d): %s",
                      "full" if full else "partial", lines, rc, stderr.strip())
            if line is not None:
                log.error("offending input line %d: %s\n%s", line, apply.line_at(text, line),
                          apply.extract_lines(text, line))
            out.error, out.error_line = msg, line
            out.failure_event = (f"iptables-restore failed ({'full' if full else 'partial'} sync)"
                                 + (f" at line {line}: {apply.line_at(text, line)}" if line else "") + f": {msg}")
            if not full:
                out.counters["partial_restore_failures_total"] = 1
            return out
        if fresh:
            self._foreign = apply.after_full_sync(saved, missing, _ours)
        if not journaled:
            self.journal(text, full)
        return out

    def report(self, state: ProxyState, out: SyncOutcome, full: bool, duration: float,
               conntrack: float, conntrack_deleted: int) -> tuple[str, str]:
        kind = "full" if self.last_full else "partial"
        line = (f"{kind} sync: {state.service_count()} services, {state.total_endpoints()} endpoints, "
                f"{out.lines} lines, {out.written} chains written, {out.deleted} deleted; "
                f"{duration * 1e3:.1f} ms (save {out.save * 1e3:.1f}, render {(out.render - out.save) * 1e3:.1f}, "
                f"restore {out.restore * 1e3:.1f}, conntrack {conntrack * 1e3:.1f}: {conntrack_deleted} entries)")
        event = (f"full sync: {state.service_count()} services, {state.total_endpoints()} endpoints, "
                 f"{out.lines} lines, {out.deleted} stale chains deleted in {duration * 1000:.1f} ms")
        return line, event

    def _open_restore(self, noflush: bool, deadline: float | None = None):
        opener = getattr(self.iptables, "open_restore", None)
        if opener is None:
            return BufferedRestore(self.iptables, noflush)
        return opener(noflush) if deadline is None else opener(noflush, deadline)

    def _open_full_restore(self, saved: apply.SavedTables):
        """Start a full sync's table-replacing restore and write the head of its nat table: the
        chains carried over from ``saved``, the fixed chains and rules. The renderer then streams
        each chunk of Services into it (``on_chunk``) while the child parses what it has; ``sync``
        ends the nat table as soon as the render is done, then writes the filter table."""
        stream = self._open_restore(noflush=False)
        decls, rules = apply.carried_over(saved, "nat", _ours_nat)
        fixed_decls, head = self.renderer.nat_prelude()
        stream.write("*nat\n" + decls + fixed_decls + rules + head)
        return stream

    # ------------------------------------------------------------------ intended rules
    def journal(self, text: str, full: bool) -> None:
        """Record a successful restore input in ``cfg.rules_file`` (``testbed rules --check``):
        a full sync replaces the file, a partial one is appended; when the appended part grows
        past three times the full text, the file is compacted to one equivalent input."""
        path = self.cfg.rules_file
        if not path:
            return
        if full:
            if write_last_restore(path, text):
                self._journal_base = len(text)
            return
        try:
            with open(path, "a") as f:
                f.write(text)
                size = f.tell()
            if size > 3 * max(self._journal_base, 1 << 16):
                with open(path) as f:
                    model = apply.replay_restore([f.read()])
                compact = apply.model_text(model)
                if write_last_restore(path, compact):
                    self._journal_base = len(compact)
        except OSError as exc:
            log.warning("cannot record the restored rules in %s: %s", path, exc)

    # ------------------------------------------------------------------ monitoring, reporting
    def rules_lost(self) -> str | None:
        """Upstream ``ipt.Monitor``: the mangle canary is gone when someone flushed iptables."""
        return None if self.iptables.has_canary() else f"{apply.CANARY_CHAIN} is gone (iptables flushed?)"

    def metrics(self) -> dict:
        return {}

    def close(self) -> None:
        return None
