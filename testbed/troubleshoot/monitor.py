"""``nft monitor`` inside a namespace, read by a thread, with a handshake instead of a sleep.

A monitor only reports what happens after it subscribed, and it says nothing when it has. So
after starting it, a marker element is added to the trace table's set until the monitor prints
it: from then on every trace event of that namespace reaches it. Stopping works the same way:
the trace table is deleted and the monitor's own "delete table" line proves every trace event
before it has been read (one netlink socket delivers events in order).
"""

from __future__ import annotations

import os
import threading
import time

from testbed import exec as ex
from testbed.errors import TestbedError

from . import nftrace


class Monitor:
    def __init__(self, cluster: str, netns: str, trace_id: str):
        self.netns = netns
        self.trace_id = trace_id
        self.lines: list[str] = []
        self._cond = threading.Condition()
        # the cluster's name in its environment, as every process a cluster starts
        self._proc = ex.popen(["nft", "monitor"], netns=netns, stdout=ex.PIPE, stderr=ex.STDOUT,
                              env={**os.environ, "TESTBED_CLUSTER": cluster})
        self._reader = threading.Thread(target=self._read, name=f"nft-monitor {netns}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait_line(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(needle in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    return False
                self._cond.wait(left)
            return True

    def handshake(self, timeout: float = 5.0) -> None:
        """Return once this monitor provably receives the namespace's events."""
        table = nftrace.table_name(self.trace_id)
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            n += 1
            marker = f"127.0.{n // 256}.{n % 256} . 9 . 127.0.0.1 . 9"
            ex.run(["nft", "add", "element", "ip", table, "replies", f"{{ {marker} timeout 1s }}"], netns=self.netns)
            if self._wait_line(f"127.0.{n // 256}.{n % 256} . 9", 0.2):
                return
        raise TestbedError(f"nft monitor in {self.netns} did not report the trace table's events within {timeout:g}s")

    def wait_deleted(self, timeout: float = 5.0) -> bool:
        return self._wait_line(f"delete table ip {nftrace.table_name(self.trace_id)}", timeout)

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def stop(self) -> None:
        ex.stop(self._proc, 5)
        self._reader.join(timeout=5)
