"""kube-proxy's IPVS mode: the ``Syncer`` that applies the IPVS desired state.

The loop (``testbed.proxy.loop``) does what every mode does (watches, ``ProxyState`` change
tracking, ``SyncScheduler`` rate limiting, UDP conntrack cleanup, health-check servers,
metrics, events); this syncer does one sync:

- full sync (the first one, after a failure, on request, and every ``full_sync_period``):
  ensure ``kube-ipvs0`` and every ipset, read the node's addresses (NodePort virtual servers
  are created for each), recompute the whole desired state, read the kernel (IPVS services,
  destinations of the services that stay, addresses on ``kube-ipvs0``, ipset members) and
  apply the difference; ``iptables-save`` tells which upstream jump rules are missing, which
  are folded into the one ``iptables-restore --noflush`` of the sync;
- partial sync: recompute only the Services that changed (``StateChange.updated_services``)
  and apply the difference between their old and new contributions; the iptables rules are
  restored only if their text changed (they depend on which sets are non-empty).

Each restore input that succeeded replaces ``cfg.rules_file``: every one declares (so
flushes) all of the mode's chains, so the last one is what the kernel should hold
(``mode.check_rules``).

Kernel changes go in batches: IPVS (services first, then destinations, then deletions),
``kube-ipvs0`` addresses, ipset members, then ``iptables-restore``. A failed request makes
the next sync a full one (which reads the kernel again).

Real servers leaving a virtual server that stays go through upstream's graceful termination
(``graceful_termination.go``): UDP/SCTP ones, and TCP ones no connection uses, are deleted at
once; the others are set to weight 0 and listed, and a thread started on the first such one
deletes them once the kernel counts no connection for them (every ``graceful_interval``,
upstream's one minute). The thread and the syncs share the netlink sockets under one lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from testbed import exec as ex
from testbed import netlink
from testbed.proxy.iptables import apply
from testbed.proxy.iptables.restore import HostIptables, Iptables
from testbed.proxy.ipvs import desired as D
from testbed.proxy.ipvs import kernel as K
from testbed.proxy.syncer import ProxyConfig, SyncOutcome, write_last_restore
from testbed.proxy.sysctl import write_sysctl
from testbed.proxy.tracker import ProxyState, StateChange

log = logging.getLogger("testbed.proxy")


class IpvsSyncError(RuntimeError):
    pass


def kernel_version() -> tuple[int, int]:
    rel = os.uname().release.split(".")
    try:
        return int(rel[0]), int(rel[1].split("-")[0])
    except (ValueError, IndexError):
        return (0, 0)


def ensure_modules() -> None:
    """Load what IPVS mode needs when it is a loadable module (a no-op where built in)."""
    if os.path.exists("/proc/net/ip_vs"):
        return
    for mod in ("ip_vs", "ip_vs_rr", "dummy", "ip_set", "xt_set"):
        ex.run(["modprobe", "-q", mod], check=False)


class IpvsSyncer:
    mode = "ipvs"

    def __init__(self, cfg: ProxyConfig, *, iptables: Iptables | None = None,
                 kernel: K.IpvsKernel | None = None, random_fully: bool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 graceful_interval: float | None = D.GRACEFUL_CHECK_INTERVAL):
        self.clock = clock
        self.rules_file = cfg.rules_file
        self.iptables = iptables if iptables is not None else HostIptables()
        if random_fully is None:
            random_fully = HostIptables.random_fully()
        self.ipvs_config = D.IpvsConfig(
            node_name=cfg.node_name, node_ip=cfg.node_ip, cluster_cidr=cfg.cluster_cidr,
            masquerade_all=cfg.masquerade_all, scheduler=cfg.ipvs_scheduler or D.DEFAULT_SCHEDULER,
            random_fully=random_fully)
        self.desired = D.DesiredState(self.ipvs_config)
        self.kernel = kernel if kernel is not None else K.IpvsKernel()
        self._rules_text: str | None = None
        self._need_full = True
        self.last_ops = 0
        # real servers draining at weight 0, deleted by a check every graceful_interval seconds
        # (None: only when reap() is called)
        self.graceful = D.GracefulList()
        self.graceful_interval = graceful_interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    @property
    def needs_full_sync(self) -> bool:
        return self._need_full

    def force_full_sync(self) -> None:
        self._need_full = True

    def sync_failed(self) -> None:
        self._need_full = True

    def setup_host(self) -> None:
        """The sysctls upstream's IPVS proxier sets (``net.ipv4.vs.*`` exist once ip_vs is
        loaded; they are per network namespace); the loop adds the mode-independent ones."""
        ensure_modules()
        for key, value in D.sysctls(kernel_version()):
            write_sysctl(key, value)

    # ------------------------------------------------------------------ one sync
    def _full(self, state: ProxyState) -> tuple[int, str]:
        k = self.kernel
        dummy = k.ensure_dummy(D.DUMMY_DEVICE)
        addrs = k.node_addresses(dummy)
        if addrs != self.ipvs_config.node_addresses:
            self.ipvs_config = D.IpvsConfig(**{**self.ipvs_config.__dict__, "node_addresses": addrs})
            self.desired.cfg = self.ipvs_config
        k.ensure_sets()
        self.desired.rebuild(state)
        want = self.desired
        ks = k.read(dummy, set(want.virtual_servers))
        delta = D.Delta()
        for key, vs in want.virtual_servers.items():
            cur = ks.virtual_servers.get(key)
            if cur is None:
                delta.add_vs[key] = vs
                cur_d: set = set()
            else:
                if cur != vs:
                    delta.add_vs[key] = vs
                    delta.update_vs.add(key)
                cur_d = ks.destinations.get(key, set())
            wanted_d = want.destinations.get(key, frozenset())
            # a destination with another weight (draining at 0, or lowered by someone) is set back
            # to weight 1 in place, its connections kept
            cur_ep = {(r.address, r.port): r for r in cur_d}
            wanted_ep = {(w.address, w.port) for w in wanted_d}
            plus = {r for r in wanted_d if (r.address, r.port) not in cur_ep}
            reweight = {r for r in wanted_d if cur_ep.get((r.address, r.port), r) != r}
            minus = {r for r in cur_d if (r.address, r.port) not in wanted_ep}
            if plus:
                delta.add_dest[key] = plus
            if minus:
                delta.del_dest[key] = minus
            if reweight:
                delta.reweight_dest[key] = reweight
        delta.del_vs = set(ks.virtual_servers) - set(want.virtual_servers)
        bound = want.bound_addresses
        delta.bind, delta.unbind = bound - ks.bound, ks.bound - bound
        entries = want.set_entries()
        for name, members in entries.items():
            have = ks.entries.get(name, set())
            delta.add_entries |= {(name, e) for e in members - have}
            delta.del_entries |= {(name, e) for e in have - members}
        jumps: list = []
        try:
            saved = apply.parse_save(self.iptables.save())
            jumps = D.missing_jump_rules(saved.rules)
        except OSError as exc:
            log.warning("%s; installing every jump rule", exc)
            jumps = list(D.JUMP_RULES)
        return self._apply(delta, dummy, jumps, full=True, conns=ks.conns)

    def _partial(self, state: ProxyState, changes: StateChange) -> tuple[int, str]:
        delta = D.Delta()
        for nn in sorted(changes.updated_services):
            self.desired.update(state, nn, delta)
        return self._apply(delta, self.kernel.dummy_index, [], full=False)

    def _apply(self, delta: D.Delta, dummy: int, jumps: list, full: bool,
               conns: dict[D.RSKey, int] | None = None) -> tuple[int, str]:
        fam = self.kernel.family
        g = netlink.Batch()
        for key, vs in delta.add_vs.items():
            K.add_service(g, fam, vs, update=key in delta.update_vs)
        retire = self._plan_retirement(delta, conns)
        for key, dests in retire.delete.items():
            for rs in dests:
                K.del_dest(g, fam, key, rs)
        for key, dests in retire.quiesce.items():
            for rs in dests:
                K.add_dest(g, fam, key, rs, update=True)
                self.graceful.add(key, rs)
        for key, dests in delta.add_dest.items():
            for rs in dests:
                # back before it drained: upstream deletes and re-adds it; setting its weight
                # keeps the connections it still carries
                back = (key, rs.address, rs.port) in self.graceful
                K.add_dest(g, fam, key, rs, update=back)
                if back:
                    self.graceful.discard(key, rs.address, rs.port)
        for key, dests in delta.reweight_dest.items():
            for rs in dests:
                K.add_dest(g, fam, key, rs, update=True)
                self.graceful.discard(key, rs.address, rs.port)
        # iptables before deletions, as upstream: rules may reference sets that only grow here
        r = netlink.Batch()
        for ip in sorted(delta.bind):
            K.addr_add(r, dummy, ip)
        n = netlink.Batch()
        for name, entry in sorted(delta.add_entries):
            K.ipset_add(n, name, D.SET_BY_NAME[name].type, entry)
        failures = self.kernel.send("genl", g) + self.kernel.send("rtnl", r) + self.kernel.send("nfnl", n)
        text = D.render_iptables(self.ipvs_config, self.desired.nonempty_sets(), self.desired.out_filter(), jumps)
        rc, stderr = 0, ""
        if full or text != self._rules_text:
            rc, stderr = self.iptables.restore(text)
            self._rules_text = text if rc == 0 else None
            if rc == 0:
                write_last_restore(self.rules_file, text)
        # deletions last (upstream: cleanLegacyService / unbind after the rules are in place)
        g2, r2, n2 = netlink.Batch(), netlink.Batch(), netlink.Batch()
        for key in sorted(delta.del_vs):
            K.del_service(g2, fam, key)
            self.graceful.forget(key)
        for ip in sorted(delta.unbind):
            K.addr_del(r2, dummy, ip)
        for name, entry in sorted(delta.del_entries):
            K.ipset_del(n2, name, D.SET_BY_NAME[name].type, entry)
        failures += self.kernel.send("genl", g2) + self.kernel.send("rtnl", r2) + self.kernel.send("nfnl", n2)
        self.last_ops = len(g) + len(r) + len(n) + len(g2) + len(r2) + len(n2)
        if self.graceful:
            self._start_reaper()
        if failures:
            what, err = failures[0]
            raise IpvsSyncError(f"{len(failures)} kernel request(s) failed, first: {what}: {os.strerror(err)}")
        return rc, stderr if rc else text

    def _plan_retirement(self, delta: D.Delta, conns: dict[D.RSKey, int] | None) -> D.Retirement:
        """Real servers leaving a virtual server that stays, already draining ones left as they
        are; the connection counts a TCP one's fate depends on are read from the kernel (a
        full sync has read them already)."""
        leaving: dict[D.VSKey, set[D.RealServer]] = {}
        for key, dests in delta.del_dest.items():
            if key in delta.del_vs:
                continue
            rest = {rs for rs in dests if (key, rs.address, rs.port) not in self.graceful}
            if rest:
                leaving[key] = rest
        if conns is None:
            conns = {}
            for key in leaving:
                if D.graceful_termination_needed(key.protocol):
                    conns.update(((key, rs.address, rs.port), n) for rs, n in self._dest_conns(key).items())
        return D.plan_retirement(leaving, conns)

    def _dest_conns(self, key: D.VSKey) -> dict[D.RealServer, int]:
        try:
            return self.kernel.dest_conns(key)
        except OSError:   # the virtual server is gone: so are its real servers
            return {}

    # ------------------------------------------------------------------ graceful termination
    def reap(self) -> int:
        """Upstream ``tryDeleteRs``: delete the draining real servers no connection uses any
        more. Returns how many were deleted."""
        with self._lock:
            b = netlink.Batch()
            for key in self.graceful.virtual_servers():
                try:
                    kernel = self.kernel.dest_conns(key)
                except OSError:
                    kernel = None
                for rs in sorted(self.graceful.drained(key, kernel)):
                    K.del_dest(b, self.kernel.family, key, rs)
            if not len(b):
                return 0
            failures = self.kernel.send("genl", b)
            for what, err in failures:
                log.warning("graceful termination: %s: %s", what, os.strerror(err))
            return len(b) - len(failures)

    def _start_reaper(self) -> None:
        # started from the sync thread, so it runs in the node's network namespace too
        if self._reaper is not None or self.graceful_interval is None:
            return
        self._reaper = threading.Thread(target=self._reap_loop, name="ipvs-graceful-termination", daemon=True)
        self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.graceful_interval):
            try:
                self.reap()
            except Exception:  # noqa: BLE001 - retried at the next interval, as upstream
                log.exception("graceful termination check failed")

    def sync(self, state: ProxyState, changes: StateChange, full: bool, now: float) -> SyncOutcome:
        error = None
        rc, out = 0, ""
        try:
            with self._lock:
                rc, out = self._full(state) if full else self._partial(state, changes)
            if rc != 0:
                error = f"iptables-restore failed (exit {rc}): {out.strip().splitlines()[0] if out.strip() else ''}"
        except Exception as exc:  # noqa: BLE001 - reported as a failed sync; next one is full
            log.exception("IPVS %s sync failed", "full" if full else "partial")
            error = str(exc)
        took = self.clock() - now
        if error is not None:
            self._need_full = True
            log.error("%s sync failed: %s", "full" if full else "partial", error)
            return SyncOutcome(False, 0, self.last_ops, restore=took, error=error,
                               failure_event=f"IPVS {'full' if full else 'partial'} sync failed: {error}")
        self._need_full = False
        lines = out.count("\n") if full or out else 0
        return SyncOutcome(True, lines, self.last_ops, restore=took)

    def report(self, state: ProxyState, out: SyncOutcome, full: bool, duration: float,
               conntrack: float, conntrack_deleted: int) -> tuple[str, str]:
        d = self.desired
        line = (f"{'full' if full else 'partial'} IPVS sync: {state.service_count()} services, "
                f"{len(d.virtual_servers)} virtual servers, {len(d.bound_addresses)} addresses, "
                f"{self.last_ops} kernel requests; {duration * 1e3:.1f} ms "
                f"(conntrack {conntrack * 1e3:.1f} ms: {conntrack_deleted} entries)")
        event = (f"full IPVS sync: {state.service_count()} services, {len(d.virtual_servers)} virtual servers, "
                 f"{self.last_ops} kernel requests in {duration * 1000:.1f} ms")
        return line, event

    def rules_lost(self) -> str | None:
        """No KUBE-PROXY-CANARY in IPVS mode; a periodic full sync re-reads the kernel."""
        return None

    def metrics(self) -> dict:
        d = self.desired
        return {"ipvs": {"scheduler": self.ipvs_config.scheduler, "virtual_servers": len(d.virtual_servers),
                         "real_servers": sum(len(v) for v in d.destinations.values()),
                         "draining_real_servers": len(self.graceful),
                         "bound_addresses": len(d.bound_addresses),
                         "nodeport_addresses": list(self.ipvs_config.nodeport_addresses),
                         "last_sync_kernel_requests": self.last_ops}}

    def close(self) -> None:
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(5.0)
        with self._lock:
            self.kernel.close()
