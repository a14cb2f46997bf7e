"""Handing freed heap memory back to the kernel.

CPython frees large objects to glibc's malloc, which keeps the pages for reuse: a process that
held 100k endpoints and dropped them keeps its peak RSS. ``malloc_trim(0)`` returns the free
pages of every arena (a few milliseconds); elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import ctypes
import gc

# the C library the interpreter is linked with (no ctypes.util.find_library: it forks
# ldconfig, and importing it costs a kube-proxy 13 ms of its start)
_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)


def give_back() -> None:
    if _trim is not None:
        _trim(0)


def tune_gc() -> None:
    """For a long-running process, once its start-up is done: what exists now (modules, the
    plan, caches) is frozen out of every collection, and young collections run a tenth as often.
    The objects these processes churn through (decoded JSON: dicts and lists without cycles) are
    freed by reference counting; the collector's scans were 2-5 % of their CPU bringing up
    1,000 pods."""
    gc.freeze()
    gc.set_threshold(7000, 10, 10)
