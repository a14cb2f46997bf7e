"""The protocol buffers wire format (varints and length-delimited fields), the only part of
protobuf the API server needs: it writes one document kubectl insists on reading as
protobuf (``openapi_pb.py``) and reads the request bodies newer kubectls send as protobuf
(``protobody.py``). Both walk tables of upstream's field numbers; no generated code."""

from __future__ import annotations

from typing import Iterator

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class WireError(ValueError):
    """A truncated or malformed protobuf message."""


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 on the wire: two's complement in ten bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num: int, value) -> bytes:
    """One field: an int or bool as a varint, str/bytes as length-delimited; None, "", 0,
    False are proto3 defaults and are not written."""
    if value is None or value == "" or value is False or (type(value) is int and value == 0):
        return b""
    if isinstance(value, bool):
        return varint(num << 3 | VARINT) + b"\x01"
    if isinstance(value, int):
        return varint(num << 3 | VARINT) + varint(value)
    data = value.encode() if isinstance(value, str) else bytes(value)
    return varint(num << 3 | LEN) + varint(len(data)) + data


def message(num: int, body: bytes) -> bytes:
    """An embedded message, written even when empty (its presence means something)."""
    return varint(num << 3 | LEN) + varint(len(body)) + body


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf):
            raise WireError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of one message, in order."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == VARINT:
            v, i = _read_varint(buf, i)
        elif wt == LEN:
            n, i = _read_varint(buf, i)
            if i + n > len(buf):
                raise WireError(f"field {num}: length {n} runs past the end of the message")
            v, i = buf[i:i + n], i + n
        elif wt == I64:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == I32:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise WireError(f"field {num}: unsupported wire type {wt}")
        if i > len(buf):
            raise WireError("truncated field")
        yield num, wt, v


def signed(n: int) -> int:
    """An int64/int32 varint as the signed value it encodes."""
    return n - (1 << 64) if n >= 1 << 63 else n
