"""The kube-proxy process (iptables mode): watch, coalesce, render, restore, clean up, report.

Like upstream's iptables ``Proxier`` + ``BoundedFrequencyRunner``:

- Services and EndpointSlices come from ``ApiClient.list_and_watch`` (informer-like); watch
  threads only queue events. The sync thread owns ``ProxyState`` and the renderer: it drains the
  queue into the state, checks out the changes and renders one restore input.
- Syncs are rate limited by ``SyncScheduler``: a token bucket of ``burst`` (2, upstream's
  ``burstSyncs``) refilled every ``min_sync_period`` (upstream default 1 s), so a burst of changes
  costs at most two immediate syncs and then one sync per ``min_sync_period``; a sync runs at
  least every ``full_sync_period`` (upstream ``proxyutil.FullSyncPeriod``, 1 h, the runner's max
  interval) and such a sync is a full one; after a failed restore the sync is retried after
  ``sync_period`` (upstream ``RetryAfter(syncPeriod)``, default 30 s). ``sync_period`` is also the
  ``KUBE-PROXY-CANARY`` check interval (a flushed host triggers a full resync) and the health
  timeout is ``2 * sync_period`` (upstream ``ProxierHealthServer``).
- One ``iptables-restore -w 5 -W 100000 --noflush --counters`` per sync (a child of this process,
  so it runs in this process's netns: the node's). Two measured speed-ups, both off by default
  and on in the kube-proxy process (``__main__``): ``replace_full_sync`` restores a full sync's
  tables whole, carrying over every rule that is not kube-proxy's from the sync's own
  ``iptables-save`` (iptables-nft's ``--noflush`` mode is quadratic in the chains written:
  38 s instead of ~1.5 s at 10k Services), and ``skip_unchanged_chains`` leaves out of a
  partial sync the chains whose rules the kernel already holds (an endpoint change no longer
  rewrites a 10k-rule ``KUBE-SERVICES``). The text kube-proxy renders is unchanged. A full sync's
  restore is started before the render and fed chunk by chunk (``RestoreStream``), chains declared
  just before their rules, so the child parses while Python renders.
  Full syncs first run one ``iptables-save``:
  its nat chain names are the renderer's ``existing_nat_chains`` (so a restarted proxy deletes
  chains its predecessor left stale, without flushing anything first) and its rules tell which
  of upstream's jump rules / canary chains are missing; those are folded into the same restore.
- On a failed restore the kernel keeps its previous rules (``--noflush``; tables that failed are
  not committed), the offending input line is logged, ``restore_failed()`` makes the next sync
  full, and the pending conntrack cleanup is kept for the next successful sync.
- After a successful sync: UDP conntrack cleanup (``apply.conntrack_filters`` through
  netlink), health-check servers, metrics (JSON, atomically replaced), and a Kubernetes Event
  per full sync (``Synced``) and per failure (``SyncFailed``) posted from a background thread.
"""

from __future__ import annotations

import bisect
import collections
import fcntl
import json
import logging
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from testbed.proxy import apply
from testbed.proxy.iptables.names import is_service_chain_name
from testbed.proxy.iptables.render import (
    NAT_CHAINS, IptablesConfig, IptablesRenderer, LocalDetector, SyncResult,
)
from testbed.proxy.model import IPV4, ProxyState

log = logging.getLogger("testbed.proxy")

RESTORE_ARGS = ("iptables-restore", "-w", "5", "-W", "100000", "--noflush", "--counters")
HISTOGRAM_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))   # upstream: ExponentialBuckets(0.001, 2, 15)
SYSCTLS = (  # (key, value): per-netns, writable; see datapath.md section 4.3
    ("net.netfilter.nf_conntrack_tcp_timeout_established", 86400),
    ("net.netfilter.nf_conntrack_tcp_timeout_close_wait", 3600),
)
ROUTE_LOCALNET = "net.ipv4.conf.all.route_localnet"
BE_LIBERAL = "net.netfilter.nf_conntrack_tcp_be_liberal"
KINDS = ("Service", "EndpointSlice")


# --------------------------------------------------------------------------- scheduling

class SyncScheduler:
    """Upstream ``BoundedFrequencyRunner``'s timing as pure state (times are monotonic seconds).

    ``request()`` asks for a sync as soon as allowed; ``retry_after(now, d)`` asks for one no
    later than ``now + d``; a sync is also due ``max_interval`` after the previous one. Runs are
    limited by a token bucket (``burst`` tokens, one more every ``min_interval``).
    """

    def __init__(self, min_interval: float, max_interval: float, burst: int = 2, now: float = 0.0):
        self.min_interval = max(0.0, min_interval)
        self.max_interval = max_interval
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self._refilled = now
        self.pending = False
        self.retry_at: float | None = None
        self.last_run: float | None = None

    def request(self) -> None:
        self.pending = True

    def retry_after(self, now: float, interval: float) -> None:
        t = now + interval
        self.retry_at = t if self.retry_at is None else min(self.retry_at, t)

    def _refill(self, now: float) -> None:
        if self.min_interval > 0 and now > self._refilled:
            self.tokens = min(float(self.burst), self.tokens + (now - self._refilled) / self.min_interval)
        self._refilled = max(self._refilled, now)

    def next_run(self, now: float) -> float | None:
        """When the next sync is due (absolute), or None if nothing is scheduled."""
        cands = []
        if self.pending:
            cands.append(now)
        if self.retry_at is not None:
            cands.append(self.retry_at)
        if self.last_run is not None:
            cands.append(self.last_run + self.max_interval)
        if not cands:
            return None
        t = min(cands)
        self._refill(now)
        if self.min_interval > 0 and self.tokens < 1.0:
            t = max(t, now + (1.0 - self.tokens) * self.min_interval)
        return t

    def periodic_due(self, now: float) -> bool:
        return self.last_run is not None and now >= self.last_run + self.max_interval

    def ran(self, now: float) -> None:
        self._refill(now)
        if self.min_interval > 0:
            self.tokens = max(0.0, self.tokens - 1.0)
        self.pending = False
        self.retry_at = None
        self.last_run = now


# --------------------------------------------------------------------------- metrics

class Summary:
    """A histogram-ish summary: count/sum/min/max/last, quantiles over the last 1024 values,
    and cumulative buckets like upstream's ``ExponentialBuckets(0.001, 2, 15)``."""

    def __init__(self, window: int = 1024) -> None:
        self.count = 0
        self.sum = 0.0
        self.min: float | None = None
        self.max: float | None = None
        self.last: float | None = None
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._buckets = [0] * (len(HISTOGRAM_BUCKETS) + 1)

    def observe(self, v: float) -> None:
        self.count += 1
        self.sum += v
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)
        self.last = v
        self._recent.append(v)
        self._buckets[bisect.bisect_left(HISTOGRAM_BUCKETS, v)] += 1

    def quantile(self, q: float) -> float | None:
        if not self._recent:
            return None
        vals = sorted(self._recent)
        return vals[min(len(vals) - 1, int(q * len(vals)))]

    def to_dict(self) -> dict:
        cum, buckets = 0, {}
        for le, n in zip(list(HISTOGRAM_BUCKETS) + [float("inf")], self._buckets):
            cum += n
            buckets["+Inf" if le == float("inf") else f"{le:g}"] = cum
        r = (lambda v: None if v is None else round(v, 6))
        return {"count": self.count, "sum": r(self.sum), "min": r(self.min), "max": r(self.max),
                "last": r(self.last), "p50": r(self.quantile(0.5)), "p90": r(self.quantile(0.9)),
                "p99": r(self.quantile(0.99)), "buckets": buckets}


def write_json_atomic(path: str, doc: Any) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- events

def make_event(node: str, reason: str, message: str, *, warning: bool = False,
               wall: float | None = None, namespace: str = "default") -> dict:
    """A core/v1 Event about the node, from ``kube-proxy`` on ``node``."""
    wall = time.time() if wall is None else wall
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))
    micro = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1e6):06d}Z"
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": namespace, "name": f"kube-proxy.{node}.{time.time_ns():x}"},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node},
        "reason": reason, "message": message, "type": "Warning" if warning else "Normal",
        "source": {"component": "kube-proxy", "host": node},
        "reportingComponent": "kube-proxy", "reportingInstance": f"kube-proxy-{node}",
        "firstTimestamp": ts, "lastTimestamp": ts, "eventTime": micro, "count": 1,
    }


class EventPoster:
    """Posts Events from a daemon thread so a slow API server never delays a sync."""

    def __init__(self, create: Callable[[dict], Any]):
        self._create = create
        self._q: queue.Queue = queue.Queue(maxsize=1000)
        self.posted = 0
        self.failed = 0
        self._t = threading.Thread(target=self._loop, name="events", daemon=True)
        self._t.start()

    def post(self, event: dict) -> None:
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.failed += 1

    def _loop(self) -> None:
        while True:
            ev = self._q.get()
            if ev is None:
                return
            try:
                self._create(ev)
                self.posted += 1
            except Exception as exc:  # noqa: BLE001
                self.failed += 1
                log.warning("posting event %s failed: %s", ev.get("reason"), exc)

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._q.put_nowait(None)
        except queue.Full:
            return
        self._t.join(timeout)


# --------------------------------------------------------------------------- host access

class Iptables(Protocol):
    def save(self) -> str: ...
    def restore(self, text: str) -> tuple[int, str]: ...
    def has_canary(self) -> bool: ...
    # optional: ``open_restore(noflush) -> RestoreStream`` (else a ``BufferedRestore`` is used)


F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# iptables-nft-restore spends a tenth of its time in glibc's free-list upkeep (malloc_consolidate,
# unlink_chunk) at 10k Services; a large tcache and no fastbins cut its user time by ~25 %.
RESTORE_ENV = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=65000:glibc.malloc.mxfast=0:"
                                 "glibc.malloc.top_pad=268435456:glibc.malloc.trim_threshold=268435456"}


class RestoreStream:
    """One ``iptables-restore`` fed while its input is still being produced: ``write()`` pieces
    as they are rendered (the child parses them meanwhile, on the other core), ``close()`` for
    (exit status, stderr). ``text`` is everything written (error lines refer to it)."""

    def __init__(self, noflush: bool = True):
        args = list(RESTORE_ARGS) if noflush else [a for a in RESTORE_ARGS if a != "--noflush"]
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._err, env={**os.environ, **RESTORE_ENV})
        try:   # a 1 MiB pipe: the renderer runs ahead instead of waking the child every 64 KiB
            fcntl.fcntl(self._proc.stdin.fileno(), F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        self._parts: list[str] = []
        self._broken = False

    def write(self, piece: str) -> None:
        self._parts.append(piece)
        if not self._broken:
            try:
                self._proc.stdin.write(piece.encode())
            except BrokenPipeError:   # the child gave up (a parse error): close() reports it
                self._broken = True

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def abort(self) -> None:
        """Kill the child before it saw ``COMMIT``: nothing is committed."""
        self._proc.kill()
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()
        self._err.close()

    def close(self) -> tuple[int, str]:
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self._proc.wait()
        self._err.seek(0)
        err = self._err.read().decode(errors="replace")
        self._err.close()
        return rc, err


class BufferedRestore:
    """``RestoreStream``'s interface over an ``Iptables`` without one (test doubles): the input
    is collected and restored in one call at ``close()``."""

    def __init__(self, iptables: Iptables, noflush: bool = True):
        self._ipt, self._noflush, self._parts = iptables, noflush, []

    def write(self, piece: str) -> None:
        self._parts.append(piece)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def abort(self) -> None:
        self._parts = []

    def close(self) -> tuple[int, str]:
        text = self.text
        return self._ipt.restore(text) if self._noflush else self._ipt.restore(text, noflush=False)


class HostIptables:
    """The real thing: children of this process, so they act on this process's netns."""

    def save(self) -> str:
        r = subprocess.run(["iptables-save"], capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError(f"iptables-save failed: {r.stderr.strip()}")
        return r.stdout

    def restore(self, text: str, noflush: bool = True) -> tuple[int, str]:
        stream = self.open_restore(noflush)
        stream.write(text)
        return stream.close()

    @staticmethod
    def open_restore(noflush: bool = True) -> RestoreStream:
        return RestoreStream(noflush)

    def has_canary(self) -> bool:
        r = subprocess.run(["iptables", "-w", "5", "-t", "mangle", "-S", apply.CANARY_CHAIN],
                           capture_output=True, text=True)
        return r.returncode == 0

    @staticmethod
    def random_fully() -> bool:
        """``HasRandomFully``: iptables >= 1.6.2."""
        try:
            out = subprocess.run(["iptables", "--version"], capture_output=True, text=True).stdout
        except OSError:
            return False
        m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
        return bool(m) and tuple(int(x) for x in m.groups()) >= (1, 6, 2)


class Cleaner(Protocol):
    def clear(self, filters: list[apply.ConntrackFilter]) -> int: ...


class Health(Protocol):
    def sync_services(self, ports: dict) -> None: ...
    def sync_endpoints(self, counts: dict) -> None: ...
    def close(self) -> None: ...


def read_sysctl(key: str) -> str | None:
    try:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def write_sysctl(key: str, value: int) -> bool:
    """Write if different (upstream ``setIntSysCtl``); False if it failed (logged)."""
    cur = read_sysctl(key)
    if cur == str(value):
        return True
    try:
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))
        log.info("sysctl %s: %s -> %s", key, cur, value)
        return True
    except OSError as exc:
        log.warning("cannot set sysctl %s=%s: %s", key, value, exc)
        return False


# --------------------------------------------------------------------------- the proxy

def _ours_nat(chain: str) -> bool:
    """The nat chains a full sync writes (or, when stale, drops): the rest is carried over."""
    return chain in NAT_CHAINS or is_service_chain_name(chain)


@dataclass
class ProxyConfig:
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
    rules_file: str | None = None      # journal of what was restored since the last full sync
    replace_full_sync: bool = False    # full syncs restore whole tables (see apply.replace_tables_text)
    skip_unchanged_chains: bool = False  # partial syncs leave out chains the kernel holds as is


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


class ProxyRunner:
    def __init__(self, cfg: ProxyConfig, *, iptables: Iptables | None = None, cleaner: Cleaner | None = None,
                 health: Health | None = None, post_event: Callable[[dict], Any] | None = None,
                 random_fully: bool | None = None, be_liberal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.cfg = cfg
        self.clock, self.wall = clock, wall
        self.iptables = iptables if iptables is not None else HostIptables()
        self.cleaner = cleaner
        self.health = health
        self.events = EventPoster(post_event) if post_event is not None else None
        if random_fully is None:
            random_fully = HostIptables.random_fully()
        if be_liberal is None:
            be_liberal = read_sysctl(BE_LIBERAL) not in (None, "0")
        self.ipt_config = IptablesConfig(
            node_name=cfg.node_name, node_ips=(cfg.node_ip,), ip_family=IPV4,
            local_detector=LocalDetector("ClusterCIDR", cfg.cluster_cidr) if cfg.cluster_cidr else None,
            masquerade_all=cfg.masquerade_all, mark_format="padded",
            localhost_nodeports=cfg.localhost_nodeports, conntrack_tcp_be_liberal=be_liberal,
            random_fully=random_fully, sync_period=cfg.sync_period, full_sync_period=cfg.full_sync_period)
        self.state = ProxyState(cfg.node_name, IPV4)
        self.renderer = IptablesRenderer(self.ipt_config)

        self._cond = threading.Condition()
        self._queue: list[_Queued] = []
        self._pending_since: float | None = None
        self._initialized: set[str] = set()
        self.sched = SyncScheduler(cfg.min_sync_period, cfg.full_sync_period, cfg.burst_syncs, clock())
        self._stop = threading.Event()
        self._force_full = False
        self._last_full: float | None = None
        self._pending_filters: list[apply.ConntrackFilter] = []
        self._threads: list[threading.Thread] = []
        self._watches: list = []

        self._journal_base = 0
        self._kernel_blocks: dict[tuple[str, str], str] = {}
        self.applied_rv: dict[str, str] = {}
        self.counters = collections.Counter()
        self.sync_duration = Summary()
        self.full_sync_duration = Summary()
        self.partial_sync_duration = Summary()
        self.programming_latency = Summary()
        self.last: SyncRecord | None = None
        self.started_wall = wall()

    # ------------------------------------------------------------------ host setup
    def setup_host(self) -> None:
        """Sysctls upstream sets that are per-netns (``nf_conntrack_max``/hashsize are not)."""
        if self.renderer.localhost_nodeports:
            write_sysctl(ROUTE_LOCALNET, 1)
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
            self.renderer.force_full_sync()
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

    def _begin_sync(self):
        """What every mode does first: take the queued events into the state and decide whether
        this sync is full. Returns (start clock, when the drained events started waiting,
        newest change time, changes, full?)."""
        t0 = self.clock()
        items, pending_since = self._drain()
        newest = self._apply_events(items)
        changes = self.state.checkout()
        do_full = (self.renderer.needs_full_sync or self._last_full is None
                   or t0 - self._last_full > self.cfg.full_sync_period)
        return t0, pending_since, newest, changes, do_full

    def sync(self) -> SyncRecord:
        t0, pending_since, newest, changes, do_full = self._begin_sync()

        saved = None
        ts = self.clock()
        if do_full:
            try:
                saved = apply.parse_save(self.iptables.save())
            except OSError as exc:
                log.warning("%s; stale chains are tracked from what this process wrote", exc)
        t_save = self.clock() - ts
        stream = None
        missing = apply.missing_jump_rules(saved) if saved is not None else []
        if do_full and saved is not None and self.cfg.replace_full_sync:
            stream = self._open_full_restore(saved)
        try:
            result: SyncResult = self.renderer.sync(
                self.state, changes=changes, full=do_full, now=t0,
                existing_nat_chains=saved.chain_names("nat") if saved is not None else None,
                on_chunk=stream.write if stream is not None else None)
            if stream is not None:   # the child can commit nat while the rest is prepared
                extra = apply.host_extras("nat", NAT_CHAINS.__contains__, missing, saved)
                stream.write(self.renderer.nat_tail + "".join(extra) + "COMMIT\n")
            text = result.text
            if do_full and saved is not None:
                text = apply.add_host_rules(text, missing, saved)
            ours = text
            if stream is not None:   # then filter (and the mangle canary), replaced whole
                stream.write(apply.replace_tables_text(ours[: ours.index("\n*nat\n") + 1], saved))
        except BaseException:
            if stream is not None:
                stream.abort()   # no child is left waiting for input
            raise
        blocks = None
        if stream is None and not do_full and self.cfg.skip_unchanged_chains:
            blocks = apply.chain_blocks(ours)
            if self._kernel_blocks:
                text, _ = apply.drop_unchanged_chains(ours, self._kernel_blocks, blocks)
        self._pending_filters += apply.conntrack_filters(changes, self.state.svc_port_map)
        t1 = self.clock()
        if stream is None:
            stream = self._open_restore(noflush=True)
            stream.write(text)
        if blocks is None and self.cfg.skip_unchanged_chains:
            blocks = apply.chain_blocks(ours)   # while the child parses and commits
        rc, stderr = stream.close()
        text = stream.text
        t2 = self.clock()
        lines = text.count("\n")
        if blocks is not None:
            if rc != 0:
                self._kernel_blocks = {}
            else:
                if do_full:
                    self._kernel_blocks = {}
                for c in result.deleted_chains:
                    self._kernel_blocks.pop(("nat", c), None)
                self._kernel_blocks.update(blocks)

        if rc != 0:
            self.renderer.restore_failed()
            with self._cond:
                if pending_since is not None:
                    self._pending_since = pending_since if self._pending_since is None \
                        else min(pending_since, self._pending_since)
                self.sched.retry_after(t2, self.cfg.sync_period)
            line = apply.restore_error_line(stderr)
            msg = stderr.strip().splitlines()[0] if stderr.strip() else f"exit status {rc}"
            log.error("iptables-restore failed (%s sync, %d lines, exit %d): %s",
                      "full" if do_full else "partial", lines, rc, stderr.strip())
            if line is not None:
                log.error("offending input line %d: %s\n%s", line, apply.line_at(text, line),
                          apply.extract_lines(text, line))
            rec = SyncRecord(do_full, False, t2 - t0, t1 - t0, t2 - t1, 0.0, lines,
                             len(result.written_chains), len(result.deleted_chains), 0, None,
                             error=msg, error_line=line, save=t_save)
            self.counters["sync_failures_total"] += 1
            if not do_full:
                self.counters["partial_restore_failures_total"] += 1
            self._post("SyncFailed", f"iptables-restore failed ({'full' if do_full else 'partial'} sync)"
                       + (f" at line {line}: {apply.line_at(text, line)}" if line else "") + f": {msg}",
                       warning=True)
            self._finish(rec)
            return rec

        if do_full:
            self._last_full = t0
        self.journal(text, do_full)
        deleted, t3, latency = self._after_apply(changes, newest, do_full)
        rec = SyncRecord(do_full, True, self.clock() - t0, t1 - t0, t2 - t1, t3 - t2, lines,
                         len(result.written_chains), len(result.deleted_chains), deleted, latency,
                         save=t_save)
        self.counters["conntrack_entries_deleted_total"] += deleted
        log.log(logging.INFO if do_full or deleted else logging.DEBUG,
                "%s sync: %d services, %d endpoints, %d lines, %d chains written, %d deleted; "
                "%.1f ms (save %.1f, render %.1f, restore %.1f, conntrack %.1f: %d entries)",
                "full" if do_full else "partial", self.state.service_count(), self.state.total_endpoints(),
                lines, len(result.written_chains), len(result.deleted_chains), rec.duration * 1e3,
                t_save * 1e3, (t1 - t0 - t_save) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, deleted)
        if do_full:
            self._post("Synced", f"full sync: {self.state.service_count()} services, "
                       f"{self.state.total_endpoints()} endpoints, {lines} lines, "
                       f"{len(result.deleted_chains)} stale chains deleted in {rec.duration * 1000:.1f} ms")
        self._finish(rec)
        return rec

    def _open_restore(self, noflush: bool):
        opener = getattr(self.iptables, "open_restore", None)
        return opener(noflush) if opener is not None else BufferedRestore(self.iptables, noflush)

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

    def _after_apply(self, changes, newest: float | None, do_full: bool) -> tuple[int, float, float | None]:
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
        if newest is not None and (changes.updated_services or do_full):
            latency = max(0.0, self.wall() - newest)
            self.programming_latency.observe(latency)
        return deleted, t3, latency

    # ------------------------------------------------------------------ intended rules
    def journal(self, text: str, full: bool) -> None:
        """Record a successful restore input in ``cfg.rules_file`` (``testbed rules --check``):
        a full sync replaces the file, a partial one is appended; when the appended part grows
        past three times the full text, the file is compacted to one equivalent input."""
        path = self.cfg.rules_file
        if not path:
            return
        try:
            if full:
                tmp = f"{path}.tmp.{os.getpid()}"
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, path)
                self._journal_base = len(text)
                return
            with open(path, "a") as f:
                f.write(text)
                size = f.tell()
            if size > 3 * max(self._journal_base, 1 << 16):
                with open(path) as f:
                    model = apply.replay_restore([f.read()])
                compact = apply.model_text(model)
                tmp = f"{path}.tmp.{os.getpid()}"
                with open(tmp, "w") as f:
                    f.write(compact)
                os.replace(tmp, path)
                self._journal_base = len(compact)
        except OSError as exc:
            log.warning("cannot record the restored rules in %s: %s", path, exc)

    def _post(self, reason: str, message: str, warning: bool = False) -> None:
        if self.events is not None:
            self.events.post(make_event(self.cfg.node_name, reason, message, warning=warning, wall=self.wall()))

    def _finish(self, rec: SyncRecord) -> None:
        self.last = rec
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
                    "save_seconds": round(r.save, 6), "render_seconds": round(r.render - r.save, 6), "restore_seconds": round(r.restore, 6),
                    "conntrack_seconds": round(r.conntrack, 6), "lines": r.lines,
                    "written_chains": r.written_chains, "deleted_chains": r.deleted_chains,
                    "conntrack_deleted": r.conntrack_deleted,
                    "network_programming_seconds": None if r.programming_latency is None
                    else round(r.programming_latency, 6),
                    "error": r.error, "error_line": r.error_line, "timestamp": self.wall()}
        c = self.counters
        return {
            "cluster": self.cfg.cluster, "node": self.cfg.node_name, "pid": os.getpid(),
            "mode": "iptables", "started": self.started_wall, "updated": self.wall(),
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
        }

    def write_metrics(self) -> None:
        if not self.cfg.metrics_file:
            return
        try:
            write_json_atomic(self.cfg.metrics_file, self.metrics())
        except OSError as exc:
            log.warning("cannot write metrics to %s: %s", self.cfg.metrics_file, exc)

    # ------------------------------------------------------------------ threads
    def start(self, client) -> None:
        """Start the watches (``client`` is an ``ApiClient``), the sync loop and the canary monitor."""
        for kind in KINDS:
            lw = _listwatch(client, kind, self)
            self._watches.append(lw)
            lw.run(lambda ev, kind=kind: self.enqueue(kind, ev), name=f"watch:{kind}")
        for target, name in ((self._loop, "sync"), (self._monitor, "canary")):
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
                self.renderer.restore_failed()
                with self._cond:
                    self.sched.retry_after(self.clock(), self.cfg.sync_period)

    def _monitor(self) -> None:
        """Upstream ``ipt.Monitor``: if the mangle canary disappears, force a full resync."""
        while not self._stop.wait(self.cfg.sync_period):
            if self._last_full is None:
                continue
            try:
                if not self.iptables.has_canary():
                    log.warning("KUBE-PROXY-CANARY is gone (iptables flushed?): full resync")
                    self.request_sync(full=True)
            except Exception as exc:  # noqa: BLE001
                log.warning("canary check failed: %s", exc)

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


def _listwatch(client, kind: str, runner: ProxyRunner):
    from testbed.apiserver.client import ListWatch
    return ListWatch(_HookedClient(client, lambda: runner.mark_listed(kind)), kind)


__all__ = ["ProxyConfig", "ProxyRunner", "SyncScheduler", "Summary", "make_event", "write_json_atomic",
           "HostIptables", "EventPoster"]
