"""kube-proxy's userspace data plane: the proxy process itself carries every connection.

As upstream's ``pkg/proxy/userspace`` (proxier.go, proxysocket.go) did, with one asyncio event
loop instead of a goroutine per connection:

- per proxied service port one listener on a kernel-chosen free port of ``listen_ip``; the
  iptables rules (``rules.render``) send the service's portals there;
- TCP: accept, dial an endpoint picked by ``RoundRobin`` (ClientIP affinity included), on a
  refused or timed-out dial try the next one with growing timeouts (upstream ``tryConnect``),
  then copy bytes both ways; an EOF is passed on as a half-close, the pair is closed when both
  directions are done;
- UDP: per client address a connected socket to an endpoint, replies sent back from the
  listener, the session closed after ``udp_idle_timeout`` without traffic;
- node ports are claimed (a socket held on them, upstream ``claimNodePort``) so nothing else on
  the node can take them.

The proxy dials from its own network namespace, so endpoints see the node's address as the
source. Endpoint changes affect the next connection; established ones run to their end. All
methods must be called on the loop's thread, which must be in the node's network namespace
(sockets belong to the namespace of the thread that creates them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import socket
from dataclasses import dataclass, field
from typing import Mapping

from testbed.proxy.model import EndpointInfo, ServicePortInfo, ServicePortName
from testbed.proxy.userspace import rules
from testbed.proxy.userspace.roundrobin import NoEndpointsError, RoundRobin, UnknownServiceError
from testbed.proxy.userspace.support import Notice, notices
from testbed.proxy.userspace.tracing import TraceHub, accepted_dscp, addr, original_dst, tos_from_cmsgs
from testbed.proxy.userspace.udpsessions import UdpSessions

log = logging.getLogger(__name__)

# Upstream EndpointDialTimeouts: each failed dial moves to the next endpoint, waiting longer.
DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)
DEFAULT_UDP_IDLE_TIMEOUT = 0.25     # upstream --udp-timeout
NOFILE_LIMIT = 64000                # upstream setRLimit: two descriptors per proxied connection
_BUF = 65536


@dataclass(frozen=True)
class PortMap:
    """What ``update`` did: the proxy port of every proxied service port, and the notices
    about what this mode does not support."""

    ports: dict[ServicePortName, int] = field(default_factory=dict)
    notices: tuple[Notice, ...] = ()


def raise_nofile_limit(want: int = NOFILE_LIMIT) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def ready_endpoints(eps: tuple[EndpointInfo, ...]) -> list[str]:
    """Upstream's userspace mode read Endpoints objects: ready addresses only (no terminating
    fallback, no topology)."""
    return [e.endpoint for e in eps if e.ready]


class _Listener:
    """One service port's proxy socket and what it serves."""

    def __init__(self, proxier: UserspaceProxier, info: ServicePortInfo) -> None:
        self.proxier = proxier
        self.info = info
        self.protocol = info.protocol
        kind = socket.SOCK_STREAM if self.protocol == "TCP" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # lets a trace see its DSCP on what arrives (tracing.py); read only while one subscribes
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
            self.sock.bind((proxier.listen_ip, 0))
            if kind == socket.SOCK_STREAM:
                self.sock.listen(1024)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.port = self.sock.getsockname()[1]
        self.sessions: UdpSessions[_UdpSession] = UdpSessions(proxier.udp_idle_timeout)
        self._timer: asyncio.TimerHandle | None = None
        loop = proxier.loop
        loop.add_reader(self.sock.fileno(),
                        self._accept if kind == socket.SOCK_STREAM else self._datagram)

    @property
    def key(self) -> ServicePortName:
        return self.info.name

    # ---------------------------------------------------------------- TCP
    def _accept(self) -> None:
        for _ in range(64):      # a burst per wake-up, then let other work run
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("accept on %s failed: %s", self.key, exc)
                return
            conn.setblocking(False)
            mark = self._traced(conn, addr) if self.proxier.hub.active else None
            self.proxier._spawn(self.proxier._proxy_tcp(self.key, conn, addr[0], mark))

    def _traced(self, conn: socket.socket, client) -> int | None:
        """The trace DSCP this connection carries, if a trace waits for it (then reported)."""
        dscp = accepted_dscp(conn)
        if not self.proxier.hub.wants(dscp):
            return None
        self.proxier.hub.emit(dscp, "accept", service=str(self.key), protocol="TCP", client=addr(client),
                              original_dst=original_dst(conn), listener=addr(conn.getsockname()))
        return dscp

    # ---------------------------------------------------------------- UDP
    def _datagram(self) -> None:
        hub = self.proxier.hub
        for _ in range(64):
            mark = None
            try:
                if hub.active:
                    data, cmsgs, _, client = self.sock.recvmsg(_BUF, socket.CMSG_SPACE(4))
                    tos = tos_from_cmsgs(cmsgs)
                    mark = tos >> 2 if tos is not None and hub.wants(tos >> 2) else None
                else:
                    data, client = self.sock.recvfrom(_BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("recvfrom on %s failed: %s", self.key, exc)
                return
            session = self.sessions.get(client)
            if mark is not None:
                hub.emit(mark, "accept", service=str(self.key), protocol="UDP", client=addr(client),
                         listener=addr(self.sock.getsockname()), session="existing" if session else "new")
            if session is None:
                session = self._open_session(client, mark)
                if session is None:
                    continue
            try:
                session.sock.send(data)
            except OSError as exc:
                log.info("UDP %s to %s failed: %s", self.key, session.endpoint, exc)
                self._close_session(client)

    def _open_session(self, client: tuple[str, int], mark: int | None = None) -> _UdpSession | None:
        hub = self.proxier.hub
        try:
            endpoint = self.proxier.balancer.next_endpoint(self.key, client[0])
        except (NoEndpointsError, UnknownServiceError) as exc:
            log.info("dropping UDP from %s:%d: %s", client[0], client[1], exc)
            if mark is not None:
                hub.emit(mark, "no-endpoints", service=str(self.key), detail=f"datagram dropped: {exc}")
            return None
        host, _, port = endpoint.rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            if mark is not None:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, mark << 2)
            s.connect((host.strip("[]"), int(port)))
        except OSError as exc:
            s.close()
            log.info("UDP %s to %s failed: %s", self.key, endpoint, exc)
            if mark is not None:
                hub.emit(mark, "dial-failed", service=str(self.key), endpoint=endpoint, error=str(exc))
            return None
        if mark is not None:
            hub.emit(mark, "connect", service=str(self.key), endpoint=endpoint, local=addr(s.getsockname()))
        session = _UdpSession(s, endpoint)
        self.sessions.add(client, session)
        self.proxier.loop.add_reader(s.fileno(), self._reply, client, session)
        self._arm_timer()
        return session

    def _reply(self, client: tuple[str, int], session: _UdpSession) -> None:
        for _ in range(64):
            try:
                data = session.sock.recv(_BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:          # ICMP unreachable from the endpoint: end the session
                self._close_session(client)
                return
            self.sessions.touch(client)
            try:
                self.sock.sendto(data, client)
            except OSError as exc:
                log.info("UDP reply to %s:%d failed: %s", client[0], client[1], exc)

    def _close_session(self, client: tuple[str, int]) -> None:
        session = self.sessions.remove(client)
        if session is not None:
            session.close(self.proxier.loop)

    def _arm_timer(self) -> None:
        deadline = self.sessions.next_deadline()
        if deadline is None or self._timer is not None:
            return
        loop = self.proxier.loop
        # The table's clock is time.monotonic, the loop's too (asyncio's default).
        self._timer = loop.call_at(max(deadline, loop.time()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        for session in self.sessions.expire():
            session.close(self.proxier.loop)
        self._arm_timer()

    def close(self) -> None:
        """Stop serving: no new connections or sessions (established TCP ones finish)."""
        loop = self.proxier.loop
        loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for session in self.sessions.drain():
            session.close(loop)


@dataclass
class _UdpSession:
    sock: socket.socket
    endpoint: str

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.sock.fileno() >= 0:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()


def _claim_node_port(protocol: str, port: int) -> socket.socket:
    """Hold the node port open (upstream ``claimNodePort``) so no local process takes it."""
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            s.listen(1)
    except OSError:
        s.close()
        raise
    return s


class UserspaceProxier:
    """The userspace data plane of one node. ``update`` with the proxy's model, then install
    ``rules_text()`` with one ``iptables-restore --noflush`` (``rules.restore``)."""

    def __init__(self, host_ip: str, *, listen_ip: str = rules.ANY_IPV4,
                 udp_idle_timeout: float = DEFAULT_UDP_IDLE_TIMEOUT,
                 loop: asyncio.AbstractEventLoop | None = None,
                 balancer: RoundRobin | None = None, hub: TraceHub | None = None) -> None:
        if listen_ip in ("127.0.0.1", "::1"):
            raise ValueError(f"listen_ip: cannot proxy on localhost ({listen_ip}); "
                             f"use 0.0.0.0 or a node address")
        if udp_idle_timeout <= 0:
            raise ValueError(f"udp_idle_timeout: must be > 0 seconds, got {udp_idle_timeout}")
        raise_nofile_limit()
        self.ctx = rules.RuleContext(host_ip=host_ip, listen_ip=listen_ip)
        self.listen_ip = listen_ip
        self.udp_idle_timeout = udp_idle_timeout
        self.loop = loop or asyncio.get_running_loop()
        self.balancer = balancer or RoundRobin()
        self.hub = hub or TraceHub()
        self._listeners: dict[ServicePortName, _Listener] = {}
        self._node_ports: dict[tuple[str, int], tuple[ServicePortName, socket.socket]] = {}
        self._services: dict[ServicePortName, ServicePortInfo] = {}
        self._tasks: set[asyncio.Task] = set()      # connections being dialled
        self._conns: set[_Half] = set()              # established: their client side
        self.closed = False

    # ---------------------------------------------------------------- control
    def update(self, services: Mapping[ServicePortName, ServicePortInfo],
               endpoints: Mapping[ServicePortName, tuple[EndpointInfo, ...]]) -> PortMap:
        """Make listeners, node-port claims and endpoints match the model.

        A service port keeps its proxy port (and its connections) across changes of its
        addresses or affinity; only a new protocol means a new listener.
        """
        if self.closed:
            raise RuntimeError("proxier is closed")
        out_notices: list[Notice] = []
        wanted: dict[ServicePortName, ServicePortInfo] = {}
        for spn, info in services.items():
            ns = notices(info)
            out_notices += ns
            if not any(n.refused for n in ns):
                wanted[spn] = info
        for spn in [s for s in self._listeners if s not in wanted
                    or wanted[s].protocol != self._listeners[s].protocol]:
            log.info("Stopping service %s", spn)
            self._listeners.pop(spn).close()
            self.balancer.delete_service(spn)
        for spn, info in sorted(wanted.items()):
            lst = self._listeners.get(spn)
            if lst is None:
                try:
                    lst = _Listener(self, info)
                except OSError as exc:
                    out_notices.append(Notice(spn, "proxy port", f"cannot listen: {exc}", True))
                    continue
                self._listeners[spn] = lst
                log.info("Proxying for service %s on %s port %d", spn, info.protocol, lst.port)
            lst.info = info
            self.balancer.set_service(spn, info.session_affinity, info.sticky_max_age_seconds)
            self.balancer.set_endpoints(spn, ready_endpoints(endpoints.get(spn, ())))
        out_notices += self._claim_node_ports()
        # As upstream's openNodePort: a node port that cannot be claimed gets no rules.
        self._services = {spn: lst.info if not lst.info.node_port
                          or (lst.protocol, lst.info.node_port) in self._node_ports
                          else dataclasses.replace(lst.info, node_port=0)
                          for spn, lst in self._listeners.items()}
        self.balancer.cleanup_stale_sessions()
        return PortMap({spn: lst.port for spn, lst in sorted(self._listeners.items())},
                       tuple(out_notices))

    def _claim_node_ports(self) -> list[Notice]:
        want = {(lst.protocol, lst.info.node_port): spn
                for spn, lst in self._listeners.items() if lst.info.node_port}
        for key in [k for k, (owner, _) in self._node_ports.items() if want.get(k) != owner]:
            self._node_ports.pop(key)[1].close()
        out = []
        for key, spn in want.items():
            if key in self._node_ports:
                continue
            try:
                self._node_ports[key] = (spn, _claim_node_port(*key))
            except OSError as exc:
                out.append(Notice(spn, "spec.ports.nodePort",
                                  f"can't open node port {key[1]}/{key[0]}: {exc}"))
        return out

    def ports(self) -> dict[ServicePortName, int]:
        return {spn: lst.port for spn, lst in self._listeners.items()}

    def rules_text(self, saved: rules.SavedTables | None = None) -> str:
        """The restore input for the current listeners (jumps added if ``saved`` lacks them)."""
        return rules.render(self._services, self.ports(), self.ctx, saved)

    async def sync_rules(self) -> str:
        """One ``iptables-save`` and one ``iptables-restore --noflush`` in the loop thread's
        namespace; the proxied connections keep flowing meanwhile. Returns the restore input."""
        text = self.rules_text(await rules.save_async())
        await rules.restore_async(text)
        return text

    async def close(self) -> None:
        """Close listeners, claims, the trace socket and every proxied connection."""
        self.closed = True
        self.hub.close()
        for lst in self._listeners.values():
            lst.close()
        self._listeners.clear()
        for _, s in self._node_ports.values():
            s.close()
        self._node_ports.clear()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for half in list(self._conns):
            half.abort()
        self._conns.clear()

    def udp_session_count(self) -> int:
        return sum(len(lst.sessions) for lst in self._listeners.values())

    def node_port_count(self) -> int:
        return len(self._node_ports)

    def active_connections(self) -> int:
        """TCP connections being dialled or proxied."""
        return len(self._tasks) + len(self._conns)

    # ---------------------------------------------------------------- TCP data path
    def _spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, spn: ServicePortName, client_ip: str, mark: int | None = None
                    ) -> socket.socket | None:
        """Upstream ``TryConnectEndpoints``: on failure, the next endpoint (affinity reset).
        ``mark``: a trace's DSCP, copied to the upstream socket and each attempt reported."""
        reset = False
        for timeout in DIAL_TIMEOUTS:
            try:
                endpoint = self.balancer.next_endpoint(spn, client_ip, reset)
            except (NoEndpointsError, UnknownServiceError) as exc:
                log.info("Couldn't find an endpoint for %s: %s", spn, exc)
                if mark is not None:
                    self.hub.emit(mark, "no-endpoints", service=str(spn), detail=str(exc))
                return None
            host, _, port = endpoint.rpartition(":")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            if mark is not None:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, mark << 2)
            try:
                await asyncio.wait_for(self.loop.sock_connect(s, (host.strip("[]"), int(port))),
                                       timeout)
                if mark is not None:
                    self.hub.emit(mark, "connect", service=str(spn), endpoint=endpoint,
                                  local=addr(s.getsockname()))
                return s
            except (OSError, asyncio.TimeoutError) as exc:
                if mark is not None:
                    local = s.getsockname() if s.fileno() >= 0 else None
                    self.hub.emit(mark, "dial-failed", service=str(spn), endpoint=endpoint,
                                  local=addr(local) if local else None, error=str(exc) or "timeout",
                                  timeout=timeout)
                s.close()
                log.info("Dial %s for %s failed: %s", endpoint, spn, exc or "timeout")
                reset = True
        log.info("failed to connect to an endpoint of %s", spn)
        return None

    async def _proxy_tcp(self, spn: ServicePortName, conn: socket.socket, client_ip: str,
                         mark: int | None = None) -> None:
        backend = None
        try:
            backend = await self._dial(spn, client_ip, mark)
            if backend is None:
                # upstream's ProxyLoop: "Failed to connect to balancer", then inConn.Close()
                conn.close()
                if mark is not None:
                    self.hub.emit(mark, "closed", service=str(spn),
                                  detail="no endpoint could be connected: the accepted client connection is closed")
                return
            front, back = _Half(), _Half()
            front.peer, back.peer = back, front
            front.on_done = back.on_done = self._conns.discard
            self._conns.add(front)
            await self.loop.connect_accepted_socket(lambda: front, conn)
            await self.loop.create_connection(lambda: back, sock=backend)
            # Both ends exist: only now may bytes flow (each paused itself when made).
            front.transport.resume_reading()
            back.transport.resume_reading()
        except (OSError, asyncio.CancelledError):
            conn.close()
            if backend is not None:
                backend.close()
            raise


class _Half(asyncio.Protocol):
    """One side of a proxied TCP connection: what it reads goes to its peer's transport.

    Flow control: when our transport's write buffer fills we stop reading from the peer, so a
    slow reader slows the fast writer instead of growing memory. An EOF is passed on as a
    half-close; the pair is closed once both sides have sent EOF, or at once on an error.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.eof = False
        self.on_done = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer.eof:
            self.transport.close()
            self.peer.transport.close()
            return False
        if self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
        return True          # keep our side open: the other direction may still be sending

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer.transport is not None and not peer.transport.is_closing():
            # A reset on one side resets the other, as it would have end to end.
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()
        if self.on_done is not None:
            self.on_done(self)
            self.on_done(peer)

    def abort(self) -> None:
        for half in (self, self.peer):
            if half.transport is not None:
                half.transport.abort()
