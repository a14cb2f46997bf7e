"""The DNS server process: one asyncio loop for UDP, TCP, HTTP and forwarded queries.

The API's list+watch loops run in one thread per kind (the client is blocking) and hand
events to the loop with ``call_soon_threadsafe``; everything else happens on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct
import sys
import time

from testbed.apiserver.client import ApiClient, ListWatch

from . import corefile, records
from .metrics import Metrics
from .responder import Overloaded, Responder, Router

log = logging.getLogger("testbed.dns")
WATCHED = ("Namespace", "Service", "EndpointSlice")


class _Udp:
    """UDP on a raw non-blocking socket: each wake-up drains up to a batch of datagrams and
    answers cached ones inline, which skips the per-datagram transport machinery."""

    BATCH = 64

    def __init__(self, responder: Router, sock: socket.socket):
        self.r = responder
        self.sock = sock

    def readable(self) -> None:
        recv, send, cached = self.sock.recvfrom, self.sock.sendto, self.r.cached
        for _ in range(self.BATCH):
            try:
                data, addr = recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an earlier reply; the socket is still fine
            started = time.perf_counter()
            family = "2" if ":" in addr[0] else "1"
            out = cached(data, "udp", family, started)
            if out is None:
                asyncio.ensure_future(self._slow(data, addr, family, started))
                continue
            try:
                send(out, addr)
            except OSError:
                pass  # a full socket buffer drops the reply, as the kernel would drop the query

    async def _slow(self, data, addr, family, started) -> None:
        out = await self.r.respond(data, "udp", family, started)
        if out is not None:
            try:
                self.sock.sendto(out, addr)
            except OSError:
                pass


async def _tcp_client(responder: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    family = "2" if ":" in (writer.get_extra_info("peername") or ("",))[0] else "1"
    try:
        while True:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            data = await reader.readexactly(n)
            out = await responder.respond(data, "tcp", family, time.perf_counter())
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class Forwarder:
    """The ``forward`` plugin: UDP to the upstreams in order, TCP when the answer is truncated."""

    def __init__(self, fwd: corefile.Forward, metrics: Metrics, timeout: float = 2.0):
        self.fwd = fwd
        self.metrics = metrics
        self.timeout = timeout
        self.inflight = 0
        self.next = 0

    def _order(self) -> list[tuple[str, int]]:
        ups = list(self.fwd.upstreams)
        if self.fwd.policy == "random":
            random.shuffle(ups)
        elif self.fwd.policy == "round_robin":
            self.next = (self.next + 1) % len(ups)
            ups = ups[self.next:] + ups[:self.next]
        return ups

    async def __call__(self, wire: bytes) -> bytes | None:
        if self.fwd.max_concurrent and self.inflight >= self.fwd.max_concurrent:
            raise Overloaded(self.fwd.max_concurrent)
        self.inflight += 1
        try:
            return await self._ask(wire)
        finally:
            self.inflight -= 1

    async def _ask(self, wire: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        for host, port in self._order():
            self.metrics.forward_requests[f"{host}:{port}"] += 1
            fut: asyncio.Future = loop.create_future()
            qid = random.getrandbits(16)
            out = struct.pack("!H", qid) + wire[2:]

            class P(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr) -> None:
                    if data[:2] == out[:2] and not fut.done():
                        fut.set_result(data)

                def error_received(self, exc) -> None:
                    if not fut.done():
                        fut.set_exception(exc)

            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                transport, _ = await loop.create_datagram_endpoint(P, remote_addr=(host, port), family=fam)
            except OSError as e:
                log.error("plugin/forward: %s:%d: %s", host, port, e)
                continue
            try:
                transport.sendto(out)
                resp = await asyncio.wait_for(fut, self.timeout)
            except (OSError, asyncio.TimeoutError) as e:
                log.error("plugin/errors: 2 %s:%d: %s", host, port, e or "i/o timeout")
                continue
            finally:
                transport.close()
            if resp[2] & 0x02:  # TC: ask again over TCP
                resp = await self._tcp(host, port, out) or resp
            return wire[:2] + resp[2:]
        return None

    async def _tcp(self, host: str, port: int, wire: bytes) -> bytes | None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
            writer.write(struct.pack("!H", len(wire)) + wire)
            n = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), self.timeout))[0]
            data = await asyncio.wait_for(reader.readexactly(n), self.timeout)
            writer.close()
            return data
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return None


async def _http(handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        parts = line.decode("latin-1").split()
        status, body = handler(parts[1] if len(parts) > 1 else "/")
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        payload = body.encode()
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _split(addr: str) -> tuple[str | None, int]:
    host, _, port = addr.rpartition(":")
    return (host.strip("[]") or None), int(port)


class DnsServer:
    def __init__(self, blocks: list[corefile.ServerBlock], api_socket: str, corefile_path: str | None = None):
        self.blocks = blocks
        self.api_socket = api_socket
        self.corefile_path = corefile_path
        k8s = next((b.kubernetes for b in blocks if b.kubernetes), None)
        self.index = records.ClusterIndex(endpoint_pod_names=bool(k8s and k8s.endpoint_pod_names))
        self.responders: list[Responder] = []
        self.metrics: list[Metrics] = []
        self.watches: list[ListWatch] = []
        self.stopping: asyncio.Event | None = None
        self.exit_code = 0

    def _on_event(self, kind: str, ev: dict) -> None:
        affected = self.index.apply(kind, ev["type"], ev["object"])
        for r in self.responders:
            r.invalidate(affected)

    def ready(self) -> bool:
        return bool(self.responders) and all(r.synced for r in self.responders)

    def _route(self, paths: set[str]):
        """The handler of one listener: each plugin serves its own path on its own address."""
        def handle(path: str) -> tuple[int, str]:
            if path not in paths:
                return 404, "404 page not found\n"
            if path == "/health":
                return 200, "OK"
            if path == "/ready":
                return (200, "OK") if self.ready() else (503, "kubernetes")
            return 200, "".join(m.render() for m in self.metrics)
        return handle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        by_port: dict[int, list[corefile.ServerBlock]] = {}
        for b in self.blocks:
            by_port.setdefault(b.port, []).append(b)
        http_paths: dict[str, set[str]] = {}
        for port, blocks in by_port.items():
            metrics = Metrics(f"dns://:{port}")
            self.metrics.append(metrics)
            router = Router([Responder(b, self.index, metrics, Forwarder(b.forward, metrics) if b.forward else None)
                             for b in blocks])
            self.responders += router.responders
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("0.0.0.0", port))
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), _Udp(router, sock).readable)
            await asyncio.start_server(lambda rd, wr, r=router: _tcp_client(r, rd, wr), "0.0.0.0", port)
            for block in blocks:
                for addr, path in ((block.health, "/health"), (block.ready, "/ready"),
                                   (block.prometheus, "/metrics")):
                    if addr:
                        http_paths.setdefault(addr, set()).add(path)
        for addr, paths in http_paths.items():
            host, port = _split(addr)
            handler = self._route(paths)
            await asyncio.start_server(lambda rd, wr, h=handler: _http(h, rd, wr), host or "0.0.0.0", port)
        self._start_watches(loop)
        if any(b.reload for b in self.blocks) and self.corefile_path:
            self._watch_corefile(loop)
        for r in self.responders:
            if r.block.loop and r.forward:
                loop.create_task(self._loop_check(r))
        log.info("CoreDNS-1.11.3 (testbed) listening on %s", ", ".join(f":{p}" for p in by_port))
        await self.stopping.wait()
        for w in self.watches:
            w.stop()
        return self.exit_code

    def shutdown(self) -> None:
        """SIGTERM: keep answering for the health plugin's lameduck time (while the endpoint
        is being removed from kube-dns), then stop."""
        duck = max((b.lameduck for b in self.blocks), default=0.0)
        if duck and self.stopping is not None and not self.stopping.is_set():
            log.info("plugin/health: Going into lameduck mode for %gs", duck)
            asyncio.get_running_loop().call_later(duck, self.stopping.set)
        elif self.stopping is not None:
            self.stopping.set()

    def _start_watches(self, loop: asyncio.AbstractEventLoop) -> None:
        # Pods only for `pods verified`, as CoreDNS: watching every pod is the expensive part.
        verified = any(b.kubernetes and b.kubernetes.pods == "verified" for b in self.blocks)
        kinds = WATCHED + (("Pod",) if verified else ())
        for kind in kinds:
            lw = ListWatch(ApiClient(self.api_socket, timeout=None), kind)
            self.watches.append(lw)
            lw.run(lambda ev, kind=kind: loop.call_soon_threadsafe(self._on_event, kind, ev), name=f"dns-watch:{kind}")

        async def mark_synced() -> None:
            await loop.run_in_executor(None, self._wait_synced)
            # `synced` is set right after each list, before its objects reach this loop as
            # events; apply every list now so no answer is given from a partial index (the
            # queued events re-apply the same or newer objects, in order).
            for kind, lw in zip(kinds, self.watches):
                for obj in list(lw.cache.values()):
                    self.index.apply(kind, "ADDED", obj)
            for r in self.responders:
                r.invalidate(None)
                r.synced = True
            log.info("plugin/ready: synced with the API")
        loop.create_task(mark_synced())

    def _wait_synced(self) -> None:
        for w in self.watches:
            w.synced.wait()

    def _watch_corefile(self, loop: asyncio.AbstractEventLoop) -> None:
        from testbed.inotify import DirWatch
        path = self.corefile_path
        with open(path, "rb") as f:
            current = f.read()
        dw = DirWatch(os.path.dirname(os.path.abspath(path)))

        def changed() -> None:
            os.read(dw.fd, 65536)  # drain the inotify events; the file itself is compared below
            try:
                with open(path, "rb") as f:
                    text = f.read()
                if text == current:
                    return
                corefile.parse(text.decode(), path)
            except (OSError, corefile.CorefileError) as e:
                log.error("plugin/reload: Corefile changed but reload failed: %s", e)
                return
            log.info("plugin/reload: Running configuration SHA512 changed, restarting")
            os.execv(sys.executable, [sys.executable, "-m", "testbed.dns", *sys.argv[1:]])

        loop.add_reader(dw.fd, changed)

    async def _loop_check(self, r: Responder) -> None:
        """The ``loop`` plugin: a query for a random name must not come back to us."""
        import dns.message
        name = f"{random.getrandbits(63)}.{random.getrandbits(63)}."
        r.loop_probe = name.encode()
        q = dns.message.make_query(name, "HINFO")
        for _ in range(3):
            await r.forward(q.to_wire())
            if r.loop_hits > 2:
                up = r.block.forward.upstreams[0]
                log.critical('plugin/loop: Loop (%s:%d -> :%d) detected for zone ".", see '
                             'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO %s"',
                             up[0], up[1], r.block.port, name)
                self.exit_code = 1
                self.stopping.set()
                return
        r.loop_probe = None
