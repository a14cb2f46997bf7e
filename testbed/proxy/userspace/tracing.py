"""The userspace proxy's account of the connections a ``testbed trace`` marked.

The kernel can follow a traced packet up to the proxy's listener and from the proxy's own
upstream socket on, but not across the proxy: it is a new connection. So the proxy says itself
which client connection it accepted and which upstream connection it opened to which endpoint.

The marker is the trace's DSCP, which the probe's socket sets. The listeners have
``IP_RECVTOS`` on, so an accepted TCP socket can say (``IP_PKTOPTIONS``) with which TOS its
handshake arrived, and a datagram carries it as ancillary data. Only while a trace subscribes
for a DSCP does the proxy look: it then copies that DSCP to the upstream socket (so the
kernel's trace rules follow the second leg too) and reports each step as one JSON line to the
subscriber. Without subscribers the data path is unchanged: one attribute test per accept.

Protocol, on the unix socket ``<state dir>/proxy-NODE.trace.sock``: the client sends
``{"dscp": N}\\n`` and gets ``{"subscribed": N}\\n`` once it is registered; then one line per
event: ``accept`` (client, original destination from ``SO_ORIGINAL_DST``, service port,
listener), ``connect`` (endpoint, the upstream socket's local address), ``dial-failed``
(endpoint, error), ``no-endpoints``, ``closed``. Closing the socket unsubscribes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct

log = logging.getLogger(__name__)

IP_PKTOPTIONS = 9          # linux/in.h: the received packet's cmsgs of a TCP socket
SO_ORIGINAL_DST = 80       # linux/netfilter_ipv4.h: the destination before REDIRECT/DNAT
_CMSG_SPACE = socket.CMSG_SPACE(4)


def tos_from_cmsgs(cmsgs) -> int | None:
    """The IP_TOS value among ``(level, type, data)`` ancillary items (``recvmsg``'s)."""
    for level, kind, data in cmsgs:
        if level == socket.IPPROTO_IP and kind == socket.IP_TOS and data:
            return data[0]
    return None


def parse_cmsg_buffer(buf: bytes) -> list[tuple[int, int, bytes]]:
    """A raw ``struct cmsghdr`` sequence (``IP_PKTOPTIONS``'s answer) -> [(level, type, data)]."""
    out = []
    head = struct.calcsize("@Nii")
    align = struct.calcsize("@N")
    i = 0
    while i + head <= len(buf):
        length, level, kind = struct.unpack_from("@Nii", buf, i)
        if length < head:
            break
        out.append((level, kind, buf[i + head:i + length]))
        i += (length + align - 1) // align * align
    return out


def accepted_dscp(conn: socket.socket) -> int | None:
    """The DSCP an accepted TCP connection's handshake carried (the listener has IP_RECVTOS)."""
    try:
        buf = conn.getsockopt(socket.IPPROTO_IP, IP_PKTOPTIONS, 64)
    except OSError:
        return None
    tos = tos_from_cmsgs(parse_cmsg_buffer(buf))
    return None if tos is None else tos >> 2


def original_dst(conn: socket.socket) -> str | None:
    """``ip:port`` the client connected to, before the portal rule rewrote it."""
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port = struct.unpack_from("!H", raw, 2)[0]
    return f"{socket.inet_ntoa(raw[4:8])}:{port}"


def addr(a) -> str:
    return f"{a[0]}:{a[1]}"


class TraceHub:
    """Subscribers by DSCP, served on the proxier's event loop."""

    def __init__(self) -> None:
        self._subs: dict[int, list[asyncio.StreamWriter]] = {}
        self._server: asyncio.AbstractServer | None = None
        self.path: str | None = None

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def wants(self, dscp: int | None) -> bool:
        return dscp is not None and dscp in self._subs

    async def serve(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self._server = await asyncio.start_unix_server(self._client, path)
        os.chmod(path, 0o600)
        self.path = path

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dscp = None
        try:
            line = await reader.readline()
            try:
                dscp = int(json.loads(line)["dscp"])
            except (ValueError, KeyError, TypeError):
                writer.write(b'{"error": "send {\\"dscp\\": N} (N: 1..63)"}\n')
                return
            self._subs.setdefault(dscp, []).append(writer)
            writer.write(json.dumps({"subscribed": dscp}).encode() + b"\n")
            await writer.drain()
            await reader.read()           # until the trace closes its end
        except (ConnectionError, OSError):
            pass
        finally:
            subs = self._subs.get(dscp, [])
            if writer in subs:
                subs.remove(writer)
                if not subs:
                    del self._subs[dscp]
            writer.close()

    def emit(self, dscp: int, event: str, **fields) -> None:
        line = json.dumps({"event": event, **fields}).encode() + b"\n"
        for w in self._subs.get(dscp, []):
            if not w.is_closing():
                w.write(line)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for subs in self._subs.values():
            for w in subs:
                w.close()
        self._subs.clear()
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
