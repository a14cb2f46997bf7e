"""The kube-proxy process's loop, the same in every mode: watch, coalesce, sync, clean up, report.

Like upstream's ``BoundedFrequencyRunner`` and the mode-neutral half of each ``Proxier``:

- Services and EndpointSlices come from ``ApiClient.list_and_watch`` (informer-like); watch
  threads only queue events. The sync thread owns ``ProxyState`` and the ``Syncer``: it drains
  the queue into the state, checks out the changes and hands them to the syncer, whose mode
  package turns them into kernel state (``testbed.proxy.modes`` names them).
- Syncs are rate limited by ``SyncScheduler``: a token bucket of ``burst`` (2, upstream's
  ``burstSyncs``) refilled every ``min_sync_period`` (upstream default 1 s), so a burst of changes
  costs at most two immediate syncs and then one sync per ``min_sync_period``; a sync runs at
  least every ``full_sync_period`` (upstream ``proxyutil.FullSyncPeriod``, 1 h, the runner's max
  interval) and such a sync is a full one; after a failed sync it is retried after
  ``sync_period`` (upstream ``RetryAfter(syncPeriod)``, default 30 s). ``sync_period`` is also
  the interval of the syncer's ``rules_lost`` check (iptables: the ``KUBE-PROXY-CANARY``; a
  flushed host triggers a full resync) and the health timeout is ``2 * sync_period`` (upstream
  ``ProxierHealthServer``).
- A sync is full on the first run, when the syncer asks for one (after a failure, on request)
  and every ``full_sync_period``; otherwise it is partial.
- On a failed sync the changes' wait time is kept (health), the sync is retried after
  ``sync_period`` and the pending conntrack cleanup is kept for the next successful sync.
- After a successful sync: UDP conntrack cleanup (``apply.conntrack_filters`` through
  netlink), health-check servers, metrics (JSON, atomically replaced), and a Kubernetes Event
  per full sync (``Synced``) and per failure (``SyncFailed``) posted from a background thread.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from testbed import heap
from testbed.proxy import apply
from testbed.proxy.events import EventPoster, make_event
from testbed.proxy.metrics import Summary, write_json_atomic
from testbed.proxy.model import IPV4
from testbed.proxy.schedule import SyncScheduler
from testbed.proxy.syncer import ProxyConfig, Syncer
from testbed.proxy.sysctl import SYSCTLS, write_sysctl
from testbed.proxy.tracker import ProxyState


log = logging.getLogger("testbed.proxy")

KINDS = ("Service", "EndpointSlice")


class Cleaner(Protocol):
    def clear(self, filters: list[apply.ConntrackFilter]) -> int: ...


class Health(Protocol):
    def sync_services(self, ports: dict) -> None: ...
    def sync_endpoints(self, counts: dict) -> None: ...
    def close(self) -> None: ...


@dataclass
class SyncRecord:
    full: bool
    ok: bool
    duration: float
    render: float
    restore: float
    conntrack: float
    lines: int
    written_chains: int
    deleted_chains: int
    conntrack_deleted: int
    programming_latency: float | None
    error: str | None = None
    error_line: int | None = None
    save: float = 0.0


@dataclass
class _Queued:
    kind: str
    type: str
    obj: dict
    arrived: float


class ProxyLoop:
    def __init__(self, cfg: ProxyConfig, syncer: Syncer, *, cleaner: Cleaner | None = None,
                 health: Health | None = None, post_event: Callable[[dict], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.cfg = cfg
        self.syncer = syncer
        self.clock, self.wall = clock, wall
        self.cleaner = cleaner
        self.health = health
        self.events = EventPoster(post_event) if post_event is not None else None
        self.state = ProxyState(cfg.node_name, IPV4)

        self._cond = threading.Condition()
        self._queue: list[_Queued] = []
        self._pending_since: float | None = None
        self._initialized: set[str] = set()
        self.sched = SyncScheduler(cfg.min_sync_period, cfg.full_sync_period, cfg.burst_syncs, clock())
        self._stop = threading.Event()
        self._force_full = False
        self._peak_endpoints = 0
        self._last_full: float | None = None
        self._pending_filters: list[apply.ConntrackFilter] = []
        self._threads: list[threading.Thread] = []
        self._watches: list = []

        self.applied_rv: dict[str, str] = {}
        self.counters = collections.Counter()
        self.sync_duration = Summary()
        self.full_sync_duration = Summary()
        self.partial_sync_duration = Summary()
        self.programming_latency = Summary()
        self.last: SyncRecord | None = None
        self.last_updated: tuple[float, float] | None = None   # (wall, clock) of the last good sync
        self.started_wall = wall()

    # ------------------------------------------------------------------ host setup
    def setup_host(self) -> None:
        """The mode's host setup, then the sysctls upstream sets in every mode that are per-netns
        (``nf_conntrack_max``/hashsize are not)."""
        self.syncer.setup_host()
        for key, value in SYSCTLS:
            write_sysctl(key, value)

    # ------------------------------------------------------------------ event intake
    def enqueue(self, kind: str, event: dict, arrived: float | None = None) -> None:
        """Queue one watch event (any thread); requests a sync once both kinds are listed."""
        arrived = self.wall() if arrived is None else arrived
        with self._cond:
            self._queue.append(_Queued(kind, event["type"], event["object"], arrived))
            if self._pending_since is None:
                self._pending_since = self.clock()
            if self._initialized.issuperset(KINDS):
                self.sched.request()
                self._cond.notify()

    def mark_listed(self, kind: str) -> None:
        """The initial list of ``kind`` has been queued (informer HasSynced)."""
        with self._cond:
            self._initialized.add(kind)
            if self._initialized.issuperset(KINDS):
                self.sched.request()
                self._cond.notify()

    def request_sync(self, full: bool = False) -> None:
        with self._cond:
            if full:
                self._force_full = True
            self.sched.request()
            self._cond.notify()

    def healthy(self) -> bool:
        """Upstream ProxierHealthServer: unhealthy if a change waits longer than 2 x syncPeriod."""
        ps = self._pending_since
        return ps is None or self.clock() - ps < 2 * self.cfg.sync_period

    # ------------------------------------------------------------------ one sync
    def _drain(self) -> tuple[list[_Queued], float | None]:
        with self._cond:
            items, self._queue = self._queue, []
            since, self._pending_since = self._pending_since, None
            force, self._force_full = self._force_full, False
        if force:
            self.syncer.force_full_sync()
        return items, since

    def _apply_events(self, items: list[_Queued]) -> float | None:
        newest = None
        st = self.state
        for q in items:
            obj = q.obj
            if q.kind == "Service":
                if q.type == "DELETED":
                    st.delete_service(obj)
                else:
                    st.update_service(obj)
            else:
                if q.type == "DELETED":
                    st.delete_endpoint_slice(obj)
                else:
                    st.update_endpoint_slice(obj)
            t = apply.trigger_time(obj, q.arrived) if q.type != "DELETED" else q.arrived
            newest = t if newest is None else max(newest, t)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                old = self.applied_rv.get(q.kind)
                if old is None or _rv_int(rv) > _rv_int(old):
                    self.applied_rv[q.kind] = rv
        return newest

    def sync(self) -> SyncRecord:
        """One sync: take the queued events into the state, decide full or partial, let the
        syncer apply it, then do what follows every successful sync and record the outcome."""
        t0 = self.clock()
        items, pending_since = self._drain()
        newest = self._apply_events(items)
        changes = self.state.checkout()
        full = (self.syncer.needs_full_sync or self._last_full is None
                or t0 - self._last_full > self.cfg.full_sync_period)
        out = self.syncer.sync(self.state, changes, full, t0)
        # kept until a sync succeeds, so a failed one does not lose them
        self._pending_filters += apply.conntrack_filters(changes, self.state.svc_port_map)
        t2 = self.clock()
        for name, n in out.counters.items():
            self.counters[name] += n
        if self.events is not None:
            for ev in out.events:
                self.events.post(ev)

        if not out.ok:
            with self._cond:
                if pending_since is not None:
                    self._pending_since = pending_since if self._pending_since is None \
                        else min(pending_since, self._pending_since)
                if out.resync_now:
                    self.sched.request()
                else:
                    self.sched.retry_after(t2, self.cfg.sync_period)
            rec = SyncRecord(full, False, t2 - t0, out.render, out.restore, 0.0, out.lines, out.written,
                             out.deleted, 0, None, error=out.error, error_line=out.error_line, save=out.save)
            self.counters["sync_failures_total"] += 1
            self._post("SyncFailed", out.failure_event, warning=True)
            self._finish(rec)
            return rec

        if full:
            self._last_full = t0
        deleted, t3, latency = self._after_apply(changes, newest, full)
        rec = SyncRecord(full, True, self.clock() - t0, out.render, out.restore, t3 - t2, out.lines,
                         out.written, out.deleted, deleted, latency, save=out.save)
        self.counters["conntrack_entries_deleted_total"] += deleted
        line, event = self.syncer.report(self.state, out, full, rec.duration, t3 - t2, deleted)
        # a slow sync is worth a line whatever its kind: it is where convergence time goes
        log.log(logging.INFO if full or deleted or rec.duration > 1.0 else logging.DEBUG, "%s", line)
        if full:
            self._post("Synced", event)
        self._give_back_memory(out.lines)
        self._finish(rec)
        return rec

    def _give_back_memory(self, lines: int) -> None:
        """After a sync that built a large ruleset, or once the state shrank to well under its
        peak, hand freed heap pages back to the kernel: glibc keeps them otherwise, and a proxy
        emptied of 100k endpoints would hold its peak RSS for ever."""
        eps = self.state.total_endpoints()
        self._peak_endpoints = max(self._peak_endpoints, eps)
        if lines < 10_000 and not eps < self._peak_endpoints // 2:
            return
        self._peak_endpoints = eps
        heap.give_back()

    def _after_apply(self, changes, newest: float | None, full: bool) -> tuple[int, float, float | None]:
        """What every mode does once its rules are in place: UDP conntrack cleanup (kept for the
        next sync if it fails), health-check servers, network programming latency.
        Returns (conntrack entries deleted, clock after the cleanup, latency or None)."""
        deleted = 0
        if self._pending_filters and self.cleaner is not None:
            try:
                deleted = self.cleaner.clear(self._pending_filters)
                self._pending_filters = []
            except Exception as exc:  # noqa: BLE001 - retried after the next sync
                log.error("conntrack cleanup failed: %s", exc)
        elif self.cleaner is None:
            self._pending_filters = []
        t3 = self.clock()
        if self.health is not None:
            ports = apply.health_check_ports(self.state)
            self.health.sync_services(ports)
            self.health.sync_endpoints(apply.local_ready_endpoints(self.state, ports))
        latency = None
        if newest is not None and (changes.updated_services or full):
            latency = max(0.0, self.wall() - newest)
            self.programming_latency.observe(latency)
        return deleted, t3, latency

    def _post(self, reason: str, message: str, warning: bool = False) -> None:
        if self.events is not None:
            self.events.post(make_event(self.cfg.node_name, reason, message, warning=warning, wall=self.wall()))

    def _finish(self, rec: SyncRecord) -> None:
        self.last = rec
        if rec.ok:
            self.last_updated = (self.wall(), self.clock())
        self.counters["syncs_total"] += 1
        self.counters["full_syncs_total" if rec.full else "partial_syncs_total"] += 1
        self.sync_duration.observe(rec.duration)
        (self.full_sync_duration if rec.full else self.partial_sync_duration).observe(rec.duration)
        self.write_metrics()

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> dict:
        last = None
        if self.last is not None:
            r = self.last
            last = {"full": r.full, "ok": r.ok, "duration_seconds": round(r.duration, 6),
                    "save_seconds": round(r.save, 6), "render_seconds": round(r.render - r.save, 6),
                    "restore_seconds": round(r.restore, 6),
                    "conntrack_seconds": round(r.conntrack, 6), "lines": r.lines,
                    "written_chains": r.written_chains, "deleted_chains": r.deleted_chains,
                    "conntrack_deleted": r.conntrack_deleted,
                    "network_programming_seconds": None if r.programming_latency is None
                    else round(r.programming_latency, 6),
                    "error": r.error, "error_line": r.error_line, "timestamp": self.wall()}
        c = self.counters
        out = {
            "cluster": self.cfg.cluster, "node": self.cfg.node_name, "pid": os.getpid(),
            "mode": self.syncer.mode, "started": self.started_wall, "updated": self.wall(),
            "healthy": self.healthy(), "stopped": self._stop.is_set(),
            "syncs_total": c["syncs_total"], "full_syncs_total": c["full_syncs_total"],
            "partial_syncs_total": c["partial_syncs_total"], "sync_failures_total": c["sync_failures_total"],
            "partial_restore_failures_total": c["partial_restore_failures_total"],
            "conntrack_entries_deleted_total": c["conntrack_entries_deleted_total"],
            "events_posted_total": self.events.posted if self.events else 0,
            "services": self.state.service_count(), "endpoints": self.state.total_endpoints(),
            "applied_resource_versions": dict(self.applied_rv),
            "health_check_ports": {f"{ns}/{n}": p for (ns, n), p in
                                   apply.health_check_ports(self.state).items()},
            "last_sync": last,
            "sync_duration_seconds": self.sync_duration.to_dict(),
            "full_sync_duration_seconds": self.full_sync_duration.to_dict(),
            "partial_sync_duration_seconds": self.partial_sync_duration.to_dict(),
            "network_programming_latency_seconds": self.programming_latency.to_dict(),
            **self.syncer.metrics(),
        }
        # counters a mode adds through ``SyncOutcome.counters`` (e.g. partial syncs written whole)
        out.update((k, v) for k, v in c.items() if k not in out)
        return out

    def write_metrics(self) -> None:
        if not self.cfg.metrics_file:
            return
        try:
            write_json_atomic(self.cfg.metrics_file, self.metrics())
        except OSError as exc:
            log.warning("cannot write metrics to %s: %s", self.cfg.metrics_file, exc)

    # ------------------------------------------------------------------ threads
    def start(self, client) -> None:
        """Start the watches (``client`` is an ``ApiClient``), the sync loop and the rules monitor."""
        for kind in KINDS:
            lw = _listwatch(client, kind, self)
            self._watches.append(lw)
            lw.run(lambda ev, kind=kind: self.enqueue(kind, ev), name=f"watch:{kind}")
        for target, name in ((self._loop, "sync"), (self._monitor, "monitor")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if self._stop.is_set():
                    break
                now = self.clock()
                t = self.sched.next_run(now) if self._initialized.issuperset(KINDS) else None
                if t is None or t > now:
                    self._cond.wait(min(1.0, (t - now) if t is not None else 1.0))
                    continue
                self.sched.ran(now)
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - keep the loop alive; full resync next time
                log.exception("sync failed unexpectedly")
                self.syncer.sync_failed()
                with self._cond:
                    self.sched.retry_after(self.clock(), self.cfg.sync_period)

    def _monitor(self) -> None:
        """Upstream ``ipt.Monitor``: if the mode's rules were removed behind its back, force a
        full resync."""
        while not self._stop.wait(self.cfg.sync_period):
            if self._last_full is None:
                continue
            try:
                why = self.syncer.rules_lost()
            except Exception as exc:  # noqa: BLE001
                log.warning("rules check failed: %s", exc)
                continue
            if why:
                log.warning("%s: full resync", why)
                self.request_sync(full=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and syncing; leaves every rule in place (the node keeps forwarding)."""
        self._stop.set()
        for lw in self._watches:
            lw.stop()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        if self.health is not None:
            self.health.close()
        if self.events is not None:
            self.events.close()
        self.syncer.close()
        self.write_metrics()


def _rv_int(rv: str) -> int:
    try:
        return int(rv)
    except (TypeError, ValueError):
        return -1


class _HookedClient:
    """Hands ``ListWatch`` the client's ``list``/``watch``; the first ``watch`` call means the
    initial list has been handed to the handler (the informer has synced)."""

    def __init__(self, client, on_listed: Callable[[], None]):
        self._client = client
        self._on_listed = on_listed
        self._done = False

    def list(self, *a, **kw):
        return self._client.list(*a, **kw)

    def watch(self, *a, **kw):
        if not self._done:
            self._done = True
            self._on_listed()
        return self._client.watch(*a, **kw)


def _metadata_only(obj: dict) -> dict:
    """What the proxy's watch cache keeps of an object: enough to find it again on a relist
    (and to delete it from ``ProxyState``). ``ProxyState`` holds what it parsed; a whole
    EndpointSlice per slice here was ~800 B per endpoint (tracemalloc)."""
    meta = obj.get("metadata") or {}
    return {"kind": obj.get("kind"), "metadata": {k: meta[k] for k in ("namespace", "name", "resourceVersion")
                                                  if k in meta}}


def _listwatch(client, kind: str, loop: ProxyLoop):
    from testbed.apiserver.client import ListWatch
    return ListWatch(_HookedClient(client, lambda: loop.mark_listed(kind)), kind, keep=_metadata_only)
