"""SPDY/3.1 framing, the server's half, as much as ``portforward.k8s.io`` needs (kubectl 1.31+
tunnels it in WebSocket binary messages, ``SPDY/3.1+portforward.k8s.io``; its client is
moby/spdystream): SYN_STREAM in, SYN_REPLY out, DATA both ways with FIN, RST_STREAM, PING
echoed, GOAWAY; SETTINGS and WINDOW_UPDATE are read and ignored (spdystream does not do flow
control). Header blocks are zlib streams over the whole connection, one per direction, primed
with the dictionary of the SPDY/3 specification (section 2.6.10.1). Pure: bytes in, frames out."""

from __future__ import annotations

import struct
import zlib
from typing import Callable

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_CANCEL, RST_INTERNAL_ERROR = 5, 6
MAX_FRAME = 1 << 24

# The SPDY/3 header dictionary, built as the specification lays it out: length-prefixed words,
# then a run of status codes, reason phrases, dates and media types.
_WORDS = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
          "accept-ranges age allow authorization cache-control connection content-base content-encoding "
          "content-language content-length content-location content-md5 content-range content-type date etag "
          "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
          "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
          "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate "
          "method get status").split() + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
         "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
         "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
         "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
         "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
         "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def _dictionary() -> bytes:
    return b"".join(struct.pack("!I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    pass


class Frame:
    __slots__ = ("control", "type", "flags", "stream_id", "data")

    def __init__(self, control: bool, typ: int, flags: int, stream_id: int, data: bytes):
        self.control, self.type, self.flags, self.stream_id, self.data = control, typ, flags, stream_id, data

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


def read_frame(read: Callable[[int], bytes]) -> Frame | None:
    """The next frame from ``read(n)`` (fewer bytes only at the end); None at a clean end."""
    head = read(8)
    if not head:
        return None
    if len(head) < 8:
        raise ProtocolError("the stream ended inside a frame header")
    first, flags_len = struct.unpack("!II", head)
    flags, length = flags_len >> 24, flags_len & 0xFFFFFF
    data = read(length) if length else b""
    if len(data) != length:
        raise ProtocolError("the stream ended inside a frame")
    if first & 0x80000000:
        version, typ = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} (this server speaks {VERSION})")
        sid = struct.unpack("!I", data[:4])[0] & 0x7FFFFFFF if typ in (SYN_STREAM, SYN_REPLY, RST_STREAM,
                                                                        HEADERS, WINDOW_UPDATE) and len(data) >= 4 else 0
        return Frame(True, typ, flags, sid, data)
    return Frame(False, 0, flags, first & 0x7FFFFFFF, data)


def control(typ: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack("!HHI", 0x8000 | VERSION, typ, (flags << 24) | len(data)) + data


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    return struct.pack("!II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def rst_stream(stream_id: int, status: int) -> bytes:
    return control(RST_STREAM, struct.pack("!II", stream_id, status))


def ping(data: bytes) -> bytes:
    return control(PING, data[:4])


def goaway(last_stream: int, status: int = 0) -> bytes:
    return control(GOAWAY, struct.pack("!II", last_stream, status))


class HeaderCodec:
    """The connection's two header compression contexts."""

    def __init__(self):
        self._in = zlib.decompressobj(zdict=DICTIONARY)
        self._out = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)

    def decode(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._in.decompress(block)
        except zlib.error as exc:
            raise ProtocolError(f"header block: {exc}") from None
        headers: dict[str, list[str]] = {}
        try:
            (n,), pos = struct.unpack_from("!I", raw), 4
            for _ in range(n):
                (kl,) = struct.unpack_from("!I", raw, pos)
                key = raw[pos + 4:pos + 4 + kl].decode("latin-1").lower()
                pos += 4 + kl
                (vl,) = struct.unpack_from("!I", raw, pos)
                value = raw[pos + 4:pos + 4 + vl].decode("latin-1")
                pos += 4 + vl
                headers.setdefault(key, []).extend(value.split("\0"))
        except struct.error:
            raise ProtocolError("header block: truncated") from None
        return headers

    def encode(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack("!I", len(headers)) + b"".join(
            struct.pack("!I", len(k)) + k.lower().encode() + struct.pack("!I", len(v)) + v.encode()
            for k, v in headers.items())
        return self._out.compress(raw) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None) -> bytes:
        return control(SYN_REPLY, struct.pack("!I", stream_id) + self.encode(headers or {}))


def syn_stream_headers(codec: HeaderCodec, frame: Frame) -> dict[str, list[str]]:
    """The headers of a SYN_STREAM (after stream id, associated id, priority and slot)."""
    return codec.decode(frame.data[10:])
