"""JSON on the hot paths: API request and response bodies, watch streams, the store's log and
etcd's gateway.

orjson encodes an EndpointSlice of 200 endpoints ~15x and decodes it ~1.8x faster than the
standard library (measured: 18 against 277 us, 88 against 157 us), and the control plane and
every kube-proxy spend much of their CPU there when endpoints churn. The output is what
``json.dumps(obj, separators=(",", ":"))`` writes, except that characters beyond ASCII are
written as UTF-8 rather than ``\\u`` escapes (the same JSON). What orjson refuses (keys that
are not strings, integers beyond 64 bits) goes through the standard library instead. Decoding
errors are ``json.JSONDecodeError`` (orjson's is a subclass), so callers keep catching that.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumpb(obj: Any, *, sort_keys: bool = False, default=None, indent: bool = False) -> bytes:
    """Compact JSON of *obj* (indented by two spaces with *indent*), as UTF-8 bytes."""
    option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    try:
        return orjson.dumps(obj, default=default, option=option or None)
    except TypeError:
        return json.dumps(obj, separators=None if indent else (",", ":"), indent=2 if indent else None,
                          sort_keys=sort_keys, default=default, ensure_ascii=False).encode()


def dumps(obj: Any, *, sort_keys: bool = False, default=None) -> str:
    """Compact JSON of *obj*, as a string."""
    return dumpb(obj, sort_keys=sort_keys, default=default).decode()


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """The value *data* encodes; ``json.JSONDecodeError`` (a ``ValueError``) if it is not JSON."""
    return orjson.loads(data)
