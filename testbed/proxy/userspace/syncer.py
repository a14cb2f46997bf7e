"""kube-proxy's userspace mode driven by the mode-neutral loop (``testbed.proxy.loop``).

The proxier carries every proxied connection on one asyncio event loop, which this syncer runs
on a thread of its own. The proxy process lives in the node's network namespace, so that
thread (and every socket it opens) does too. One sync:

1. ``iptables-save`` (in the loop's sync thread: the event loop never waits for a subprocess);
2. on the event loop: ``UserspaceProxier.update`` with the whole model (listeners opened and
   closed, node ports claimed, endpoints and affinity set), then the restore input for the
   listeners it now has;
3. one ``iptables-restore --noflush`` of the five chains (and of whichever jumps to them the
   save lacked).

Upstream's userspace proxier had no partial syncs either: every sync is the whole model, which
costs a dictionary walk and a restore of a few rules per service port.

What the mode does not support (``support.notices``) becomes a Warning Event on the Service,
posted once per distinct notice, as a user would otherwise never learn that e.g.
``externalTrafficPolicy: Local`` is ignored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Callable

from testbed.proxy.iptables.apply import parse_save
from testbed.proxy.iptables.restore import HostIptables, Iptables
from testbed.proxy.syncer import ProxyConfig, SyncOutcome, write_last_restore
from testbed.proxy.tracker import ProxyState, StateChange
from testbed.proxy.userspace import rules
from testbed.proxy.userspace.proxier import DEFAULT_UDP_IDLE_TIMEOUT, PortMap, UserspaceProxier
from testbed.proxy.userspace.support import Notice

log = logging.getLogger("testbed.proxy")

# How long the sync thread waits for the event loop to apply an update; the loop only ever runs
# short callbacks, so anything near this means it is wedged.
LOOP_CALL_TIMEOUT = 30.0
NOTICE_REASON = "UnsupportedByUserspaceProxy"


def notice_event(node: str, notice: Notice, wall: float) -> dict:
    """A core/v1 Warning Event about the Service ``notice`` concerns, from kube-proxy on ``node``."""
    spn = notice.service_port
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": spn.namespace, "name": f"{spn.name}.{time.time_ns():x}"},
        "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": spn.namespace,
                           "name": spn.name, "fieldPath": notice.field},
        "reason": NOTICE_REASON, "message": str(notice), "type": "Warning",
        "source": {"component": "kube-proxy", "host": node},
        "reportingComponent": "kube-proxy", "reportingInstance": f"kube-proxy-{node}",
        "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
    }


class EventLoopThread:
    """One asyncio event loop on a daemon thread; ``call`` runs a coroutine on it and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout: float = LOOP_CALL_TIMEOUT):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


class UserspaceSyncer:
    mode = "userspace"

    def __init__(self, cfg: ProxyConfig, *, iptables: Iptables | None = None,
                 udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.cfg = cfg
        self.iptables = iptables if iptables is not None else HostIptables()
        self.udp_idle_timeout = udp_idle_timeout
        self.clock, self.wall = clock, wall
        self._runner: EventLoopThread | None = None
        self.proxier: UserspaceProxier | None = None
        self._need_full = True
        self._posted: set[str] = set()      # notices already reported as Events
        self.port_map = PortMap()

    @property
    def needs_full_sync(self) -> bool:
        return self._need_full

    def force_full_sync(self) -> None:
        self._need_full = True

    def sync_failed(self) -> None:
        self._need_full = True

    def setup_host(self) -> None:
        """Nothing beyond the loop's sysctls: REDIRECT and DNAT to the node need no module
        options, and the proxier raises its own descriptor limit."""

    def _start(self) -> UserspaceProxier:
        if self.proxier is None:
            self._runner = EventLoopThread(f"userspace-proxier:{self.cfg.node_name}")

            async def make() -> UserspaceProxier:
                p = UserspaceProxier(self.cfg.node_ip, udp_idle_timeout=self.udp_idle_timeout)
                if self.cfg.trace_socket:
                    try:
                        await p.hub.serve(self.cfg.trace_socket)
                    except OSError as exc:  # the proxy works without it; only traces lose its side
                        log.warning("cannot serve trace events on %s: %s", self.cfg.trace_socket, exc)
                return p
            self.proxier = self._runner.call(make())
        return self.proxier

    # ------------------------------------------------------------------ one sync
    def sync(self, state: ProxyState, changes: StateChange, full: bool, now: float) -> SyncOutcome:
        try:
            proxier = self._start()
            saved = parse_save(self.iptables.save())
            t_save = self.clock() - now
            services, endpoints = dict(state.svc_port_map), dict(state.endpoints_map)

            async def update() -> tuple[PortMap, str]:
                pm = proxier.update(services, endpoints)
                return pm, proxier.rules_text(saved)
            pm, text = self._runner.call(update())
            t_render = self.clock() - now
            rc, err = self.iptables.restore(text)
        except (OSError, RuntimeError, concurrent.futures.TimeoutError) as exc:
            self._need_full = True
            log.error("userspace sync failed: %s", exc)
            return SyncOutcome(False, error=str(exc), failure_event=f"userspace sync failed: {exc}")
        took = self.clock() - now - t_render
        self.port_map = pm
        if rc != 0:
            self._need_full = True
            first = err.strip().splitlines()[0] if err.strip() else ""
            error = f"iptables-restore failed (exit {rc}): {first}"
            return SyncOutcome(False, text.count("\n"), render=t_render, restore=took, save=t_save,
                               error=error, failure_event=f"userspace sync failed: {error}")
        self._need_full = False
        write_last_restore(self.cfg.rules_file, text)
        return SyncOutcome(True, text.count("\n"), len(rules.NAT_CHAINS + rules.FILTER_CHAINS),
                           render=t_render, restore=took, save=t_save, events=self._new_events(pm))

    def _new_events(self, pm: PortMap) -> list[dict]:
        """Events for notices not reported yet; a notice that went away may be reported again."""
        current = {str(n): n for n in pm.notices}
        new = [n for key, n in current.items() if key not in self._posted]
        for n in new:
            log.warning("%s", n)
        self._posted = set(current)
        return [notice_event(self.cfg.node_name, n, self.wall()) for n in new]

    def report(self, state: ProxyState, out: SyncOutcome, full: bool, duration: float,
               conntrack: float, conntrack_deleted: int) -> tuple[str, str]:
        n = len(self.port_map.ports)
        line = (f"userspace sync: {state.service_count()} services, {n} proxied service ports, "
                f"{out.lines} restore lines; {duration * 1e3:.1f} ms "
                f"(conntrack {conntrack * 1e3:.1f} ms: {conntrack_deleted} entries)")
        event = (f"userspace sync: {state.service_count()} services, {n} proxy listeners "
                 f"in {duration * 1000:.1f} ms")
        return line, event

    def rules_lost(self) -> str | None:
        """Upstream re-ran iptablesInit every sync; here a missing chain or jump (a flushed
        node) asks the loop for a resync."""
        saved = parse_save(self.iptables.save())
        for table, names in (("nat", rules.NAT_CHAINS), ("filter", rules.FILTER_CHAINS)):
            for c in names:
                if not saved.has_chain(table, c):
                    return f"chain {c} is missing from the {table} table"
        if rules.missing_jumps(saved):
            return "a jump to the userspace proxy's chains is missing"
        return None

    def metrics(self) -> dict:
        """The listeners (service port -> proxy port), the node ports held, the connections and
        UDP sessions being proxied, and the notices."""
        out = {"listeners": {str(spn): port for spn, port in self.port_map.ports.items()},
               "notices": [str(n) for n in self.port_map.notices],
               "active_connections": 0, "udp_sessions": 0, "node_ports": 0}
        if self.proxier is not None and self._runner is not None and not self.proxier.closed:
            async def counts() -> dict:
                p = self.proxier
                return {"active_connections": p.active_connections(),
                        "udp_sessions": p.udp_session_count(), "node_ports": p.node_port_count()}
            try:
                out.update(self._runner.call(counts(), timeout=2.0))
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass
        return {"userspace": out}

    def close(self) -> None:
        """Close every listener and proxied connection; the rules stay (a restarted proxy takes
        them over with its first sync)."""
        if self.proxier is not None and self._runner is not None:
            try:
                self._runner.call(self.proxier.close(), timeout=5.0)
            except (concurrent.futures.TimeoutError, RuntimeError) as exc:
                log.warning("closing the userspace proxier: %s", exc)
            self._runner.stop()
        self.proxier = None
        self._runner = None

