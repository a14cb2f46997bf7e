"""Host access for iptables mode: ``iptables-save``, and ``iptables-restore`` fed as a stream.

Every command is a child of this process, so it acts on this process's network namespace
(the node's, for the proxy process).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import tempfile
import threading
from typing import Protocol

from testbed import exec as ex
from testbed.proxy.iptables.apply import CANARY_CHAIN

RESTORE_ARGS = ("iptables-restore", "-w", "5", "-W", "100000", "--noflush", "--counters")


class Iptables(Protocol):
    def save(self) -> str: ...
    def restore(self, text: str) -> tuple[int, str]: ...
    def has_canary(self) -> bool: ...
    # optional: ``open_restore(noflush) -> RestoreStream`` (else a ``BufferedRestore`` is used)


F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# iptables-nft-restore spends a tenth of its time in glibc's free-list upkeep (malloc_consolidate,
# unlink_chunk) at 10k Services; a large tcache and no fastbins cut its user time by ~25 %.
RESTORE_ENV = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=65000:glibc.malloc.mxfast=0:"
                                 "glibc.malloc.top_pad=268435456:glibc.malloc.trim_threshold=268435456"}


class RestoreStream:
    """One ``iptables-restore`` fed while its input is still being produced: ``write()`` pieces
    as they are rendered (the child parses them meanwhile, on the other core), ``close()`` for
    (exit status, stderr). ``text`` is everything written (error lines refer to it).

    ``deadline`` (seconds from the start): past it the child is killed, before it committed
    anything, and ``close()`` reports the failure (``timed_out``)."""

    def __init__(self, noflush: bool = True, deadline: float | None = None):
        args = list(RESTORE_ARGS) if noflush else [a for a in RESTORE_ARGS if a != "--noflush"]
        self._err = tempfile.TemporaryFile()
        # a killed proxy must not leave a restore running on, orphaned, for minutes of CPU; the
        # proxy starts restores from its long-lived sync thread
        self._proc = ex.popen(args, stdin=ex.PIPE, stdout=ex.DEVNULL, stderr=self._err,
                              env={**os.environ, **RESTORE_ENV}, new_session=False,
                              pdeathsig=signal.SIGKILL)
        self.deadline = deadline
        self.timed_out = False
        self._timer = None
        if deadline is not None:
            # a timer, not a timeout on wait(): the writer itself blocks on a full pipe while a
            # slow child parses, so the kill must come from elsewhere
            self._timer = threading.Timer(deadline, self._expire)
            self._timer.daemon = True
            self._timer.start()
        try:   # a 1 MiB pipe: the renderer runs ahead instead of waking the child every 64 KiB
            fcntl.fcntl(self._proc.stdin.fileno(), F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        self._parts: list[str] = []
        self._broken = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _expire(self) -> None:
        if self._proc.poll() is None:
            self.timed_out = True
            self._proc.kill()

    def write(self, piece: str) -> None:
        self._parts.append(piece)
        if not self._broken:
            try:
                self._proc.stdin.write(piece.encode())
            except BrokenPipeError:   # the child gave up (a parse error) or was killed at its
                self._broken = True   # deadline: close() reports it

    @property
    def text(self) -> str:
        if len(self._parts) > 1:   # joined once: the pieces and the whole are not both kept
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def abort(self) -> None:
        """Kill the child before it saw ``COMMIT``: nothing is committed."""
        if self._timer is not None:
            self._timer.cancel()
        self._proc.kill()
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()
        self._err.close()

    def close(self) -> tuple[int, str]:
        try:
            self._proc.stdin.close()
        except BrokenPipeError:   # the child is gone: a parse error, or killed at its deadline
            pass
        rc = self._proc.wait()
        if self._timer is not None:
            self._timer.cancel()
        self._err.seek(0)
        err = self._err.read().decode(errors="replace")
        self._err.close()
        if self.timed_out:
            err = (f"iptables-restore exceeded its deadline of {self.deadline:g} s and was killed "
                   f"(nothing committed)\n{err}")
        return rc, err


class BufferedRestore:
    """``RestoreStream``'s interface over an ``Iptables`` without one (test doubles): the input
    is collected and restored in one call at ``close()``."""

    def __init__(self, iptables: Iptables, noflush: bool = True):
        self._ipt, self._noflush, self._parts = iptables, noflush, []

    def write(self, piece: str) -> None:
        self._parts.append(piece)

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def abort(self) -> None:
        self._parts = []

    def close(self) -> tuple[int, str]:
        text = self.text
        return self._ipt.restore(text) if self._noflush else self._ipt.restore(text, noflush=False)


class HostIptables:
    """The real thing: children of this process, so they act on this process's netns."""

    def save(self) -> str:
        r = ex.run(["iptables-save"], check=False)
        if r.returncode != 0:
            raise OSError(f"iptables-save failed: {r.stderr.strip()}")
        return r.stdout

    def restore(self, text: str, noflush: bool = True, deadline: float | None = None) -> tuple[int, str]:
        stream = self.open_restore(noflush, deadline)
        stream.write(text)
        return stream.close()

    @staticmethod
    def open_restore(noflush: bool = True, deadline: float | None = None) -> RestoreStream:
        return RestoreStream(noflush, deadline)

    def has_canary(self) -> bool:
        r = ex.run(["iptables", "-w", "5", "-t", "mangle", "-S", CANARY_CHAIN], check=False)
        return r.returncode == 0

    @staticmethod
    def random_fully() -> bool:
        """``HasRandomFully``: iptables >= 1.6.2."""
        try:
            out = ex.run(["iptables", "--version"], check=False).stdout
        except ex.CommandError:
            return False
        m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
        return bool(m) and tuple(int(x) for x in m.groups()) >= (1, 6, 2)
