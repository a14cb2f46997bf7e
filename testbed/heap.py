"""Handing freed heap memory back to the kernel.

CPython frees large objects to glibc's malloc, which keeps the pages for reuse: a process that
held 100k endpoints and dropped them keeps its peak RSS. ``malloc_trim(0)`` returns the free
pages of every arena (a few milliseconds); elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_name) if _name else None
_trim = getattr(_libc, "malloc_trim", None)


def give_back() -> None:
    if _trim is not None:
        _trim(0)
