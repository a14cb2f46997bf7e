"""Packet capture inside a namespace, without forking tcpdump.

An AF_PACKET socket is opened by a thread that has entered the namespace, so it stays bound
there; frames are read by a background thread and can be decoded with scapy (``Ether(raw)``:
decoding needs none of scapy's interface tables) and written as a pcap that opens in Wireshark.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import exec, netns

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26


@functools.lru_cache(maxsize=256)
def compile_bpf(expr: str, linktype: str = "EN10MB") -> tuple[tuple[int, int, int, int], ...]:
    """Compile a tcpdump/pcap filter expression to classic BPF (``tcpdump -dd``; no capture,
    no interface is opened). Cached: checks repeat the same few filters, and each compile
    costs a fork."""
    p = exec.run(["tcpdump", "-dd", "-y", linktype, expr], check=False)
    if p.returncode != 0:
        msg = p.stderr.strip().splitlines()
        raise ValueError(f"bad capture filter {expr!r}: {msg[-1] if msg else 'tcpdump failed'}")
    prog = [tuple(int(x, 0) for x in m) for m in re.findall(r"\{\s*(\w+),\s*(\w+),\s*(\w+),\s*(\w+)\s*\}", p.stdout)]
    if not prog:
        raise ValueError(f"bad capture filter {expr!r}: tcpdump produced no program")
    return tuple(prog)  # type: ignore[return-value]


def attach_bpf(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: the kernel runs the filter, unmatched frames never reach Python."""
    insns = b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in prog)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


@dataclass
class Frame:
    ts: float
    data: bytes
    outgoing: bool


class Capture:
    """``with Capture(netns_name, "eth0") as cap: ...; frames = cap.frames``"""

    def __init__(self, netns_name: str, iface: str, match: Callable[[bytes], bool] | None = None,
                 snaplen: int = 65535, bpf: str | list | None = None, count: int | None = None):
        self.netns_name = netns_name
        self.iface = iface
        self.match = match
        self.snaplen = snaplen
        self.bpf = compile_bpf(bpf) if isinstance(bpf, str) else bpf
        self.count = count  # stop keeping frames after this many
        self.done = threading.Event()  # set when ``count`` frames were kept
        self.frames: list[Frame] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._reading = threading.Lock()  # a frame taken off the socket is in ``frames`` before it is released
        self._wake_r, self._wake_w = os.pipe()

    def _open(self) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        if self.bpf:
            attach_bpf(s, self.bpf)
        s.bind((self.iface, 0))
        if self.bpf:  # frames queued between socket() and the filter: drop them
            while True:
                try:
                    s.recv(65535, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
        return s

    def start(self) -> Capture:
        self._sock = netns.run_in(self.netns_name, self._open)
        self._thread = threading.Thread(target=self._loop, name=f"capture:{self.iface}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            ready, _, _ = select.select([sock, self._wake_r], [], [])
            if sock in ready:
                self._drain(sock)
            if self._wake_r in ready:
                return

    def _drain(self, sock: socket.socket) -> None:
        """Take every frame queued to the socket now, without blocking."""
        with self._reading:
            self._drain_locked(sock)

    def sync(self) -> list[Frame]:
        """Every frame the kernel queued to this capture before the call is in ``frames`` when
        it returns (taken here if the capture thread has not taken it yet)."""
        if self._sock is not None and self._wake_w >= 0:
            self._drain(self._sock)
        return self.frames

    def _drain_locked(self, sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(self.snaplen, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                # bound while the interface was down: the kernel reports that once, then
                # delivers the frames it sees once the interface is up
                if exc.errno != errno.ENETDOWN:
                    raise
                continue
            if self.count is not None and len(self.frames) >= self.count:
                continue
            if self.match is None or self.match(data):
                with self._cond:
                    self.frames.append(Frame(time.time(), data, addr[2] == PACKET_OUTGOING))
                    if self.count is not None and len(self.frames) >= self.count:
                        self.done.set()
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Frame]], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(frames)`` holds (woken by each captured frame) or the timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.frames):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self) -> list[Frame]:
        if self._wake_w < 0:
            return self.frames
        os.write(self._wake_w, b"x")
        if self._thread:
            self._thread.join()
        if self._sock:
            # Frames can be queued after the thread's last read and before the wake-up; the
            # kernel handed them to this capture, so they are part of what it saw.
            self._drain(self._sock)
            self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1
        return self.frames

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_pcap(self, path: str) -> None:
        write_pcap(path, self.frames)


def write_pcap(path: str, frames: list[Frame], linktype: int = 1) -> None:
    """Classic libpcap format (microsecond timestamps, Ethernet link type)."""
    with open(path, "wb") as f:
        f.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for fr in frames:
            sec = int(fr.ts)
            usec = int((fr.ts - sec) * 1_000_000)
            f.write(struct.pack("=IIII", sec, usec, len(fr.data), len(fr.data)))
            f.write(fr.data)


def capture_point(cluster, target: str, iface: str | None = None) -> tuple[str, str]:
    """``(netns, interface)`` where ``testbed capture TARGET`` listens on a running *cluster*:
    a pod is captured on its host-side veth (in the node's namespace) so that what the pod
    sends and receives is seen before any rule of the node touches it."""
    kind, _, rest = target.partition("/")
    if kind in ("pod", "po", "pods") and iface is None:
        cluster.netns_of(target)  # a pod that is not there (or is ambiguous): exec's one-line error
        ns, _, name = rest.rpartition("/")
        p = cluster.pod(name, ns or None)
        node = next(n for n in cluster.plan.nodes if n.name == p.node)
        return node.netns, p.host_veth
    if kind == "underlay":
        return cluster.plan.underlay.netns, iface or "underlay"
    return cluster.netns_of(target), iface or "eth0"
