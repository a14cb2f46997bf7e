"""The server side of WebSocket (RFC 6455), as much as the API's streaming subresources need:
the upgrade handshake with subprotocol negotiation, binary messages (fragmented ones
reassembled), pings answered with pongs, and the closing handshake. No extensions (no
compression): client-go's gorilla dialer asks for none.

The framing functions are pure (bytes in, bytes out) so they are tested without sockets;
:class:`Conn` runs them over a connection's buffered reader and a write function."""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
from typing import Callable

from .errors import BadRequest

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL_CLOSURE, PROTOCOL_ERROR, TOO_BIG = 1000, 1002, 1009
MAX_MESSAGE = 16 << 20  # a stdin chunk or a resize; far above what kubectl sends at once


class ProtocolError(Exception):
    """The peer broke RFC 6455; the connection is closed with 1002."""


def is_upgrade(headers) -> bool:
    return ("websocket" in (headers.get("Upgrade") or "").lower()
            and "upgrade" in (headers.get("Connection") or "").lower())


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def handshake(headers, supported: tuple[str, ...]) -> tuple[bytes, str]:
    """The ``101 Switching Protocols`` answer to an upgrade request and the subprotocol chosen:
    the first of the client's (in its order of preference) that *supported* has. Without a
    common one the upgrade is refused, as upstream refuses it (the client may then fall back)."""
    key = (headers.get("Sec-WebSocket-Key") or "").strip()
    try:
        nonce = base64.b64decode(key, validate=True)
    except ValueError:
        nonce = b""
    if headers.get("Sec-WebSocket-Version") != "13" or len(nonce) != 16:
        raise BadRequest("the WebSocket upgrade needs Sec-WebSocket-Version 13 and a Sec-WebSocket-Key")
    offered = [p.strip() for h in headers.get_all("Sec-WebSocket-Protocol") or [] for p in h.split(",")]
    chosen = next((p for p in offered if p in supported), None)
    if chosen is None:
        raise BadRequest(f"unable to upgrade: none of the requested subprotocols {offered} is supported "
                         f"(supported: {', '.join(supported)})")
    head = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: {chosen}\r\n\r\n")
    return head.encode("latin-1"), chosen


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One unmasked frame (a server never masks)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 126, n)
    else:
        head = struct.pack("!BBQ", first, 127, n)
    return head + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()[:120]


def read_frame(read: Callable[[int], bytes]) -> tuple[bool, int, bytes] | None:
    """(fin, opcode, unmasked payload) of the next frame, read with ``read(n)`` (which returns
    fewer bytes only at the end of the stream); None at a clean end between frames."""
    head = read(2)
    if not head:
        return None
    if len(head) < 2:
        raise ProtocolError("the connection ended inside a frame header")
    b0, b1 = head
    if b0 & 0x70:
        raise ProtocolError("reserved bits set without a negotiated extension")
    if not b1 & 0x80:
        raise ProtocolError("a client frame must be masked")
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _exact(read, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _exact(read, 8))[0]
    opcode = b0 & 0x0F
    if opcode >= 0x8 and (n > 125 or not b0 & 0x80):
        raise ProtocolError("a control frame must be final and at most 125 bytes")
    if n > MAX_MESSAGE:
        raise ProtocolError(f"a frame of {n} bytes is more than {MAX_MESSAGE}")
    mask = _exact(read, 4)
    return bool(b0 & 0x80), opcode, unmask(_exact(read, n), mask)


def unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    key = int.from_bytes((mask * (len(data) // 4 + 1))[:len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


def _exact(read: Callable[[int], bytes], n: int) -> bytes:
    data = read(n) if n else b""
    if len(data) != n:
        raise ProtocolError("the connection ended inside a frame")
    return data


class Conn:
    """A WebSocket after the handshake: one reader (:meth:`recv`), any number of writers
    (:meth:`send`, serialised here)."""

    def __init__(self, read: Callable[[int], bytes], write: Callable[[bytes], None]):
        self._read, self._write = read, write
        self._wlock = threading.Lock()
        self.closed = False  # a close frame was sent

    def send(self, payload: bytes, opcode: int = BINARY) -> None:
        with self._wlock:
            if not self.closed:
                self._write(frame(opcode, payload))

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        with self._wlock:
            if not self.closed:
                self.closed = True
                self._write(frame(CLOSE, close_payload(code, reason)))

    def recv(self) -> bytes | None:
        """The next data message (text or binary); pings are answered on the way. None when
        the peer closed (its close is answered) or the stream ended."""
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                got = read_frame(self._read)
            except ProtocolError as exc:
                self.close(PROTOCOL_ERROR, str(exc))
                return None
            if got is None:
                return None
            fin, opcode, payload = got
            if opcode == PING:
                self.send(payload, PONG)
            elif opcode == PONG:
                continue
            elif opcode == CLOSE:
                self.close(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else NORMAL_CLOSURE)
                return None
            elif opcode in (TEXT, BINARY, CONT):
                if (opcode == CONT) != bool(parts):
                    self.close(PROTOCOL_ERROR, "unexpected continuation")
                    return None
                parts.append(payload)
                size += len(payload)
                if size > MAX_MESSAGE:
                    self.close(TOO_BIG, "message too big")
                    return None
                if fin:
                    return b"".join(parts)
            else:
                self.close(PROTOCOL_ERROR, f"unknown opcode {opcode}")
                return None
