"""The default pod workload: one asyncio loop in one thread serving every pod of the process.

A pod is a network namespace.  Its listening sockets are created by a worker thread that has
``setns()`` into the pod's namespace (``testbed.netns``); a socket belongs to the namespace it
was created in, so the loop thread itself never leaves the root namespace.  The loop serves
the sockets with plain ``add_reader`` callbacks (no asyncio Server/transport objects per pod),
which keeps a pod at a few KB of Python memory and well under a millisecond to add.

For every port number a pod declares (8080 when none) the pod gets a TCP listener speaking
HTTP/1.1 (see ``http.py``) and a UDP socket answering ``hostname``/``clientip``/``version``
datagrams and echoing anything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import ipaddress
import resource
import socket
import threading
import time
from dataclasses import dataclass

from .. import netns
from .http import CONTINUE, MODES, HttpError, PodContext, RequestParser, error_response, serve_request, udp_reply

DEFAULT_PORT = 8080
PROTOCOLS = ("TCP", "UDP", "SCTP")
BACKLOG = 128
ACCEPT_BURST = 32
UDP_BURST = 32
MAX_OUTPUT = 1 << 20  # stop reading a connection whose unsent responses exceed this


@dataclass(frozen=True)
class PodInfo:
    key: str
    netns: str | None
    pod: str
    ports: tuple[tuple[int, str], ...]  # as declared (normalised)
    bound: tuple[int, ...]  # port numbers actually listening (TCP and UDP), in order
    version: str
    ready: bool
    mode: str = "default"  # "echo": every path answers with the request as JSON

    def to_dict(self) -> dict:
        return {"key": self.key, "netns": self.netns, "pod": self.pod, "ports": [list(p) for p in self.ports],
                "bound": list(self.bound), "version": self.version, "ready": self.ready,
                "mode": self.mode}

    @classmethod
    def from_dict(cls, d: dict) -> PodInfo:
        return cls(d["key"], d.get("netns"), d["pod"], tuple((int(p), str(s)) for p, s in d["ports"]),
                   tuple(int(p) for p in d["bound"]), d["version"], bool(d["ready"]),
                   d.get("mode", "default"))


def normalize_ports(ports) -> tuple[tuple[int, str], ...]:
    """Validate (port, protocol) pairs; none declared means ``8080/TCP``."""
    out: list[tuple[int, str]] = []
    for item in ports or ():
        try:
            port, proto = item
        except (TypeError, ValueError):
            raise ValueError(f"port must be (number, protocol), got {item!r}") from None
        proto = str(proto).upper()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"invalid port number {port!r}")
        if proto not in PROTOCOLS:
            raise ValueError(f"invalid protocol {proto!r} (TCP, UDP or SCTP)")
        if (port, proto) not in out:
            out.append((port, proto))
    return tuple(out) or ((DEFAULT_PORT, "TCP"),)


def _addr(a) -> str:
    return f"{a[0]}:{a[1]}"


class _Pod:
    __slots__ = ("key", "netns", "name", "ports", "bound", "version", "ready", "mode", "socks", "conns", "closed")

    def __init__(self, key, netns_name, name, ports, version, ready, mode="default"):
        self.key = key
        self.netns = netns_name
        self.name = name
        self.ports = ports
        self.bound: tuple[int, ...] = ()
        self.version = version
        self.ready = ready
        self.mode = mode
        self.socks: list[tuple[socket.socket, bool]] = []  # (socket, is_tcp)
        self.conns: set[_Conn] = set()
        self.closed = False

    def info(self) -> PodInfo:
        return PodInfo(self.key, self.netns, self.name, self.ports, self.bound, self.version, self.ready, self.mode)


class _Conn:
    """One accepted TCP connection, served from the loop thread."""

    __slots__ = ("server", "pod", "sock", "fd", "peer", "local", "parser", "out", "writing", "reading",
                 "closing", "last")

    def __init__(self, server: WorkloadServer, pod: _Pod, sock: socket.socket, peer):
        self.server = server
        self.pod = pod
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = _addr(peer)
        try:
            self.local = _addr(sock.getsockname())
        except OSError:
            self.local = ""
        self.parser = RequestParser()
        self.out = bytearray()
        self.writing = False
        self.reading = True
        self.closing = False
        self.last = time.monotonic()

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        self.last = time.monotonic()
        parser = self.parser
        parser.feed(data)
        pod = self.pod
        while not self.closing:
            try:
                req = parser.next()
            except HttpError as exc:
                self.out += error_response(exc)
                self.closing = True
                break
            if req is None:
                if parser.want_continue():
                    self.out += CONTINUE
                break
            ctx = PodContext(pod.name, pod.version, pod.ready, self.peer, self.local, pod.mode)
            resp, keep = serve_request(req, ctx)
            self.out += resp
            if not keep:
                self.closing = True
        self.flush()

    def flush(self) -> None:
        if self.sock is None:
            return
        if self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.close()
                return
            del self.out[:n]
        loop = self.server._loop
        if self.out:
            if not self.writing:
                loop.add_writer(self.fd, self.flush)
                self.writing = True
            if self.reading and len(self.out) > MAX_OUTPUT:
                loop.remove_reader(self.fd)
                self.reading = False
            return
        if self.writing:
            loop.remove_writer(self.fd)
            self.writing = False
        if self.closing:
            self.close()
        elif not self.reading:
            loop.add_reader(self.fd, self.on_readable)
            self.reading = True

    def close(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self.sock = None
        loop = self.server._loop
        if self.reading:
            loop.remove_reader(self.fd)
        if self.writing:
            loop.remove_writer(self.fd)
        self.pod.conns.discard(self)
        sock.close()


class WorkloadServer:
    """Serve the default workload of many pods from one event loop thread.

    All public methods are thread-safe; call them from any thread except the loop thread.
    """

    def __init__(self, *, idle_timeout: float | None = 300.0):
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._pods: dict[str, _Pod] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: netns.Runner | None = None
        self._accepting = False

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> WorkloadServer:
        with self._lock:
            if self._loop is not None:
                return self
            _raise_nofile_limit()
            self._runner = netns.Runner(1)
            self._loop = asyncio.new_event_loop()
            self._accepting = True
            started = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(started,), name="workload-loop", daemon=True)
            self._thread.start()
        started.wait()
        return self

    def __enter__(self) -> WorkloadServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, started: threading.Event) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        if self.idle_timeout:
            loop.call_later(min(self.idle_timeout, 30.0), self._sweep)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        with self._lock:
            loop, thread, runner = self._loop, self._thread, self._runner
            if loop is None or not self._accepting:
                return
            self._accepting = False
            pods = list(self._pods.values())
            self._pods.clear()

        def shutdown():
            for pod in pods:
                self._close_pod(pod)
            loop.stop()
        try:
            loop.call_soon_threadsafe(shutdown)
        except RuntimeError:  # loop already closed
            pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        if runner is not None:
            runner.close()
        with self._lock:
            self._loop = self._thread = self._runner = None

    @property
    def running(self) -> bool:
        return self._accepting

    # --- pods ------------------------------------------------------------------------------
    def add_pod(self, key: str, netns_name: str | None, pod_name: str, ports=(), version: str = "v1", *,
                ready: bool = True, host: str = "0.0.0.0", mode: str = "default") -> PodInfo:
        """Start serving pod ``key`` inside namespace ``netns_name``.

        ``ports`` are ``(port, "TCP"|"UDP"|"SCTP")`` pairs (8080/TCP when empty); every declared
        port number gets a TCP (HTTP) listener and a UDP socket.  ``netns_name=None`` serves in
        the process's own namespace and is allowed only for loopback ``host`` addresses (tests);
        port 0 picks a free port (see ``PodInfo.bound``).
        """
        if not isinstance(key, str) or not key:
            raise ValueError("pod key must be a non-empty string")
        if not isinstance(pod_name, str) or not pod_name:
            raise ValueError("pod name must be a non-empty string")
        if not isinstance(version, str):
            raise ValueError("version must be a string")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        norm = normalize_ports(ports)
        addr = ipaddress.IPv4Address(host)
        if netns_name is None and not addr.is_loopback:
            raise ValueError("without a namespace only loopback addresses may be served (nothing in the root netns)")
        pod = _Pod(key, netns_name, pod_name, norm, version, bool(ready), mode)
        with self._lock:
            if not self._accepting:
                raise RuntimeError("WorkloadServer is not running")
            if key in self._pods:
                raise ValueError(f"pod {key!r} is already served")
            self._pods[key] = pod  # reserve the key
            loop, runner = self._loop, self._runner
        numbers = list(dict.fromkeys(p for p, _ in norm))
        try:
            if netns_name is None:
                socks, bound = _open_sockets(str(addr), numbers)
            else:
                socks, bound = runner.run_in(netns_name, _open_sockets, str(addr), numbers)
        except BaseException:
            with self._lock:
                if self._pods.get(key) is pod:
                    del self._pods[key]
            raise
        pod.socks = socks
        pod.bound = tuple(bound)
        with self._lock:
            alive = self._pods.get(key) is pod and self._accepting
            if alive:
                # FIFO with later remove_pod()/stop() calls; the kernel already queues connections
                loop.call_soon_threadsafe(self._register, pod)
        if not alive:  # removed or stopped while the sockets were being created
            for s, _ in socks:
                s.close()
        return pod.info()

    def remove_pod(self, key: str) -> bool:
        """Stop serving ``key``: close its listeners and established connections before returning."""
        with self._lock:
            pod = self._pods.pop(key, None)
            loop = self._loop
        if pod is None:
            return False
        self._call(loop, self._close_pod, pod)
        return True

    def set_ready(self, key: str, ready: bool) -> None:
        with self._lock:
            pod = self._pods.get(key)
            if pod is None:
                raise KeyError(key)
            pod.ready = bool(ready)

    def pods(self) -> list[PodInfo]:
        with self._lock:
            return [p.info() for p in self._pods.values()]

    def get(self, key: str) -> PodInfo | None:
        with self._lock:
            pod = self._pods.get(key)
            return pod.info() if pod else None

    def connection_count(self, key: str | None = None) -> int:
        """Established connections (of one pod or all); read from the loop thread."""
        def count():
            with self._lock:
                pods = [self._pods[key]] if key in self._pods else [] if key is not None else list(self._pods.values())
            return sum(len(p.conns) for p in pods)
        return self._call(self._loop, count)

    # --- loop side ---------------------------------------------------------------------------
    def _call(self, loop, fn, *args):
        if loop is None or loop.is_closed():
            return fn(*args)
        if self._thread is threading.current_thread():
            return fn(*args)
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run():
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)
        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # loop closed meanwhile
            return fn(*args)
        return fut.result()

    def _register(self, pod: _Pod) -> None:
        if pod.closed:
            return
        loop = self._loop
        for s, tcp in pod.socks:
            if tcp:
                loop.add_reader(s.fileno(), self._on_accept, pod, s)
            else:
                loop.add_reader(s.fileno(), self._on_datagram, pod, s)

    def _close_pod(self, pod: _Pod) -> None:
        if pod.closed:
            return
        pod.closed = True
        loop = self._loop
        for s, _ in pod.socks:
            try:
                loop.remove_reader(s.fileno())
            except Exception:  # loop already closed
                pass
            s.close()
        for conn in list(pod.conns):
            conn.close()

    def _on_accept(self, pod: _Pod, lsock: socket.socket) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                sock, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                return  # EMFILE and friends: retried on the next readiness event
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, pod, sock, peer)
            pod.conns.add(conn)
            self._loop.add_reader(conn.fd, conn.on_readable)

    def _on_datagram(self, pod: _Pod, sock: socket.socket) -> None:
        for _ in range(UDP_BURST):
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED from an ICMP error of an earlier reply
                continue
            client = _addr(peer)
            try:
                sock.sendto(udp_reply(data, pod.name, pod.version, client), peer)
            except OSError:
                pass

    def _sweep(self) -> None:
        loop = self._loop
        if loop is None:
            return
        limit = time.monotonic() - self.idle_timeout
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            for conn in [c for c in pod.conns if c.last < limit and not c.out]:
                conn.close()
        loop.call_later(min(self.idle_timeout, 30.0), self._sweep)


def _open_sockets(host: str, numbers: list[int]) -> tuple[list[tuple[socket.socket, bool]], list[int]]:
    """Create the TCP listeners and UDP sockets of one pod in the calling thread's namespace."""
    socks: list[tuple[socket.socket, bool]] = []
    bound: list[int] = []
    try:
        for number in numbers:
            for attempt in range(20):
                t = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    t.bind((host, number))
                    port = t.getsockname()[1]
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                    try:
                        u.bind((host, port))
                    except OSError as exc:
                        u.close()
                        if number == 0 and exc.errno == errno.EADDRINUSE and attempt < 19:
                            t.close()
                            continue  # the free TCP port is taken for UDP: pick another
                        raise
                    t.listen(BACKLOG)
                except BaseException:
                    t.close()
                    raise
                socks.append((t, True))
                socks.append((u, False))
                bound.append(port)
                break
    except BaseException:
        for s, _ in socks:
            s.close()
        raise
    return socks, bound


def _raise_nofile_limit() -> None:
    """Two descriptors per port per pod plus connections: lift the soft limit to the hard one."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass
