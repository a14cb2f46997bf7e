"""Requests from inside a namespace with plain sockets (no per-packet Python work).

Each request carries a token (an HTTP header for TCP, the first datagram for UDP, which the
default workload echoes), so the same flow can be found again in the captures.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2

SocketFactory = Callable[[int], socket.socket]  # SOCK_STREAM / SOCK_DGRAM -> socket in the source netns


@dataclass
class Answer:
    outcome: str  # answered | refused | dropped | error
    seconds: float
    hostname: str | None = None
    clientip: str | None = None  # "ip:port" as the backend saw it
    version: str | None = None
    local: tuple[str, int] | None = None  # our socket's address
    status: int | None = None
    detail: str = ""

    @property
    def client_addr(self) -> str | None:
        return self.clientip.rsplit(":", 1)[0] if self.clientip else None


def classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "dropped"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "refused"  # ICMP host/net unreachable: rejected at once as well
    return "error"


def tcp(factory: SocketFactory, ip: str, port: int, token: str, timeout: float, path: str = "/") -> Answer:
    t0 = time.monotonic()
    s = factory(socket.SOCK_STREAM)
    local = None
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        local = s.getsockname()
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {ip}\r\nX-Testbed-Token: {token}\r\n\r\n".encode())
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError as exc:
        return Answer(classify(exc), time.monotonic() - t0, local=local, detail=str(exc) or type(exc).__name__)
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return Answer("error", time.monotonic() - t0, local=local, detail=f"not HTTP: {buf[:60]!r}")
    a = Answer("answered", time.monotonic() - t0, local=local, status=status)
    if path == "/":
        try:
            doc = json.loads(body)
            a.hostname, a.clientip, a.version = doc.get("hostname"), doc.get("clientip"), doc.get("version")
        except ValueError:
            a.detail = f"body not JSON: {body[:60]!r}"
    else:
        a.detail = body[:200].decode(errors="replace")
    return a


def udp(factory: SocketFactory, ip: str, port: int, token: str, timeout: float,
        sock: socket.socket | None = None, commands: tuple[str, ...] = ("hostname", "clientip")) -> Answer:
    """Token first (echoed), then the commands, all on one socket (one conntrack entry)."""
    t0 = time.monotonic()
    own = sock is None
    s = sock or factory(socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        if own:
            s.connect((ip, port))
        local = s.getsockname()
        replies = []
        for msg in (token, *commands):
            s.send(msg.encode())
            while True:  # skip late replies to earlier requests of a shared socket
                data = s.recv(65536).decode(errors="replace")
                if msg == token and data != token:
                    continue
                break
            replies.append(data)
    except OSError as exc:
        return Answer(classify(exc), time.monotonic() - t0, detail=str(exc) or type(exc).__name__)
    finally:
        if own:
            s.close()
    a = Answer("answered", time.monotonic() - t0, local=local)
    for cmd, data in zip(commands, replies[1:]):
        if cmd == "hostname":
            a.hostname = data
        elif cmd == "clientip":
            a.clientip = data
        elif cmd == "version":
            a.version = data
    return a


def udp_mtu(factory: SocketFactory, ip: str, port: int, token: str, size: int, timeout: float) -> tuple[Answer, str]:
    """Send one datagram whose IP packet is exactly ``size`` bytes with DF set (answered: echoed),
    then one byte more, which the sender's kernel must refuse (EMSGSIZE) instead of fragmenting."""
    s = factory(socket.SOCK_DGRAM)
    t0 = time.monotonic()
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        s.settimeout(timeout)
        s.connect((ip, port))
        payload = (token + "-" * size)[: size - 28].encode()
        s.send(payload)
        data = s.recv(65536)
        ans = Answer("answered" if data == payload else "error", time.monotonic() - t0, local=s.getsockname(),
                     detail="" if data == payload else f"echo of {len(data)} bytes")
        for cmd in ("hostname", "clientip"):  # same socket, same flow, same backend
            s.send(cmd.encode())
            setattr(ans, cmd, s.recv(65536).decode(errors="replace"))
        try:
            s.send(payload + b"+")
            over = "a datagram one byte over the MTU was sent"
        except OSError as exc:
            over = "EMSGSIZE" if exc.errno == errno.EMSGSIZE else str(exc)
        return ans, over
    except OSError as exc:
        return Answer(classify(exc), time.monotonic() - t0, detail=str(exc)), "-"
    finally:
        s.close()
