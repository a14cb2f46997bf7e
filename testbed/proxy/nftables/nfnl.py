"""Run nftables transactions as nfnetlink batches written directly (no nft, no nft cache).

``NetlinkRunner.run`` compiles the transaction text (``compile``) into nf_tables messages and
sends them as one batch (``NFNL_MSG_BATCH_BEGIN`` ... ``END``) in one ``sendmsg`` on a
NETLINK_NETFILTER socket: one kernel transaction, all of it or nothing. nft would first fetch
every chain and set of the table to evaluate the same text (its cache), which is what made a
partial sync at 10k Services cost hundreds of milliseconds. Text the compiler does not know
goes through the fallback runner (libnftables or ``nft -f``), as do the listings.

The kernel handles a batch synchronously inside ``sendmsg``: when it returns, every error
(and the acknowledgement asked for on the last message) is already queued on the socket.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import struct
import threading

from testbed.netlink import NETLINK_CAP_ACK, NETLINK_EXT_ACK, NLMSG_DONE, NLMSG_ERROR, SOL_NETLINK, _ext_ack_msg
from testbed.netlink import _attr as attr
from testbed.proxy.nftables import names
from testbed.proxy.nftables.compile import Unsupported, compile_transaction
from testbed.proxy.nftables.names import TABLE
from testbed.proxy.nftables.runner import Existing, NftRunner, RunError

log = logging.getLogger("testbed.proxy")

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETSET = 1, 4, 10
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
_BATCH_GEN = struct.pack("!BBH", socket.AF_UNSPEC, 0, NFNL_SUBSYS_NFTABLES)
_IP_GEN = struct.pack("!BBH", socket.AF_INET, 0, 0)
_HDR = struct.Struct("=IHHII")


def encode_batch(messages: list[tuple[int, int, bytes]], seq: int) -> bytes:
    """BEGIN, the messages (seq+1 ...), END; only the last message asks for an ack."""
    parts = [_HDR.pack(20, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0), _BATCH_GEN]
    last = len(messages) - 1
    pack, sub = _HDR.pack, NFNL_SUBSYS_NFTABLES << 8
    for i, (mtype, flags, body) in enumerate(messages):
        flags |= NLM_F_REQUEST | (NLM_F_ACK if i == last else 0)
        parts.append(pack(20 + len(body), sub | mtype, flags, seq + 1 + i, 0))
        parts.append(_IP_GEN)
        parts.append(body)
    parts += [_HDR.pack(20, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + len(messages) + 1, 0), _BATCH_GEN]
    return b"".join(parts)


def _string_attr(data: bytes, off: int, end: int, kind: int) -> str | None:
    """The string attribute ``kind`` among the attributes in ``data[off:end]``."""
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4:
            return None
        if atype & 0x3FFF == kind:
            return data[off + 4:off + alen].split(b"\0", 1)[0].decode()
        off += (alen + 3) & ~3
    return None


def open_socket() -> socket.socket:
    """A NETLINK_NETFILTER socket in the calling thread's network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    sock.bind((0, 0))
    return sock


class NetlinkRunner(NftRunner):
    kind = "netlink"

    def __init__(self, fallback: NftRunner):
        self.fallback = fallback
        self.sock = open_socket()
        self._sndbuf = 0
        self._seq = 1
        # Anonymous set names unique to this process: a predecessor's maps may still be in
        # the kernel until this process's first full sync replaces their rules.
        self._token = secrets.token_hex(3)
        self._anon = 0
        self.fallbacks = 0
        self._lock = threading.Lock()

    def _anon_name(self, kind: str) -> str:
        self._anon += 1
        return f"__{kind}k{self._token}{self._anon}"

    def run(self, text: str) -> None:
        if not text:
            return
        try:
            compiled = compile_transaction(text, self._anon_name)
        except Unsupported as exc:
            self.fallbacks += 1
            log.info("nftables: line outside the netlink compiler's grammar, using %s: %s",
                     self.fallback.kind, exc)
            self.fallback.run(text)
            return
        if not compiled.messages:
            return
        with self._lock:
            self._drain()
            self._send(compiled.messages, compiled.lines)

    def _drain(self) -> None:
        """Drop replies a failed batch may have left behind, so that none is taken for this
        batch's."""
        while True:
            try:
                self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return

    def _next_seq(self, count: int) -> int:
        """``count`` sequence numbers (32 bits on the wire: wrap long before that)."""
        if self._seq + count >= 1 << 31:
            self._seq = 1
        seq = self._seq
        self._seq += count
        return seq

    def _send(self, messages: list[tuple[int, int, bytes]], lines: list[int]) -> None:
        seq = self._next_seq(len(messages) + 2)
        batch = encode_batch(messages, seq)
        if len(batch) + 4096 > self._sndbuf:
            self._sndbuf = max(len(batch) + 65536, 1 << 20)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, self._sndbuf)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
        try:
            self.sock.send(batch)
        except OSError as exc:
            raise RunError(f"netlink batch of {len(messages)} messages: {exc.strerror}") from None
        last = seq + len(messages)
        failure: tuple[int, str, int] | None = None
        acked = False
        while not acked:
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            off = 0
            while off + 20 <= len(data):
                length, mtype, _flags, rseq, _pid = _HDR.unpack_from(data, off)
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    if err and failure is None:
                        failure = (-err, _ext_ack_msg(data[off:off + length]), rseq)
                    if rseq in (last, seq):
                        acked = True
                off += (length + 3) & ~3 if length else len(data)
        if failure is not None:
            err, msg, rseq = failure
            line = lines[rseq - seq - 1] if seq < rseq <= last else None
            detail = f": {msg}" if msg else ""
            raise RunError(f"Could not process rule: {os.strerror(err)}{detail}", line)
        if not acked:
            raise RunError(f"netlink batch of {len(messages)} messages: no acknowledgement from the kernel")

    def list(self, command: str) -> str | None:
        return self.fallback.list(command)

    def _dump(self, mtype: int, name_attr: int, table_attr: int) -> list[str]:
        """Names of our table's chains or sets: a dump filtered by table in the kernel, each
        reply read for its name only (nft would fetch and parse every rule or element)."""
        seq = self._next_seq(1)
        body = _IP_GEN + attr(table_attr, TABLE.encode() + b"\0")
        self.sock.send(_HDR.pack(16 + len(body), NFNL_SUBSYS_NFTABLES << 8 | mtype,
                                 NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        found: list[str] = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, rtype, _flags, rseq, _pid = _HDR.unpack_from(data, off)
                if rseq == seq:
                    if rtype == NLMSG_DONE:
                        return found
                    if rtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, off + 16)
                        if err == -errno.ENOENT:
                            return []
                        raise RunError(f"netlink dump of {TABLE}: {os.strerror(-err)}")
                    name = _string_attr(data, off + 20, off + length, name_attr)
                    if name is not None:
                        found.append(name)
                off += (length + 3) & ~3 if length else len(data)

    def existing(self, family: str = "ip") -> Existing:
        if family != "ip":
            return self.fallback.existing(family)
        with self._lock:
            self._drain()
            chains = self._dump(NFT_MSG_GETCHAIN, 3, 1)
            sets = self._dump(NFT_MSG_GETSET, 2, 1)
        return Existing(frozenset(c for c in chains if names.is_service_chain(c)),
                        frozenset(x for x in sets if names.is_affinity_set(x)))

    def table_exists(self, family: str = "ip") -> bool:
        if family != "ip":
            return self.fallback.table_exists(family)
        with self._lock:
            self._drain()
            seq = self._next_seq(1)
            body = _IP_GEN + attr(1, TABLE.encode() + b"\0")
            self.sock.send(_HDR.pack(16 + len(body), NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETTABLE,
                                     NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body)
            found, err = False, 0
            while True:
                data = self.sock.recv(1 << 16)
                off = 0
                while off + 16 <= len(data):
                    length, rtype, _flags, rseq, _pid = _HDR.unpack_from(data, off)
                    if rseq == seq and rtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, off + 16)
                        if err == -errno.ENOENT:
                            return False
                        if err:
                            raise RunError(f"netlink get table {TABLE}: {os.strerror(-err)}")
                        return found
                    found = found or rseq == seq
                    off += (length + 3) & ~3 if length else len(data)

    def close(self) -> None:
        self.sock.close()
        self.fallback.close()
