"""Handing freed heap memory back to the kernel.

CPython frees large objects to glibc's malloc, which keeps the pages for reuse: a process that
held 100k endpoints and dropped them keeps its peak RSS. ``malloc_trim(0)`` returns the free
pages of every arena (a few milliseconds); elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import ctypes

# the C library the interpreter is linked with (no ctypes.util.find_library: it forks
# ldconfig, and importing it costs a kube-proxy 13 ms of its start)
_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)


def give_back() -> None:
    if _trim is not None:
        _trim(0)
