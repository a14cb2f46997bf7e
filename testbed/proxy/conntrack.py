"""UDP conntrack cleanup through conntrack netlink (pyroute2), in the calling netns.

Per cleanup: one conntrack dump per filter, narrowed by the kernel to the filter's protocol,
original destination and port (or, with many filters, one dump of all UDP entries); the exact
matching (reply source = DNAT target) in Python (``apply.select_entries``); one netlink delete
per stale entry. No ``conntrack`` CLI fork per entry. The socket is opened by the first cleanup
that has an entry to delete, in the proxy's network namespace (the whole process lives in its
node's): pyroute2 costs ~0.1 CPU-s to import, and most cleanups find nothing, so a small table
(``nf_conntrack_count``, per namespace) is first read as text from ``/proc/net/nf_conntrack``
and the library is used only when an entry there matches.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from testbed.proxy.apply import ConntrackFilter, select_entries

log = logging.getLogger(__name__)

PROC_TABLE = "/proc/net/nf_conntrack"
PROC_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
# the text is ~150 bytes an entry: past this many, the kernel's filtered dumps (not measured
# against each other; the bound only keeps a large table from being read as text)
PROC_SCAN_MAX = 4096


def proc_rows(text: str) -> list[tuple]:
    """``(proto, orig_dst, orig_dport, reply_src, None)`` per entry of ``/proc/net/nf_conntrack``
    (pure). A line: ``ipv4 2 udp 17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=C dst=A ...``:
    the first ``dst``/``dport`` are the original tuple's, the second ``src`` the reply's."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6 or not f[3].isdigit():
            continue
        seen: dict[str, list[str]] = {}
        for field in f[5:]:
            k, eq, v = field.partition("=")
            if eq:
                seen.setdefault(k, []).append(v)
        dst, src = seen.get("dst", []), seen.get("src", [])
        if not dst or len(src) < 2:
            continue
        dport = seen.get("dport")
        rows.append((int(f[3]), _addr(dst[0]), int(dport[0]) if dport else None, _addr(src[1]), None))
    return rows


def _addr(text: str) -> str:
    # IPv6 is written in full there (``fd00:0000:...``); the filters hold the compressed form
    return ipaddress.ip_address(text).compressed if ":" in text else text


def _small_table() -> str | None:
    """The namespace's conntrack table as text, or None when it is large or not readable."""
    try:
        with open(PROC_COUNT) as f:
            if int(f.read()) > PROC_SCAN_MAX:
                return None
        with open(PROC_TABLE) as f:
            return f.read()
    except (OSError, ValueError):
        return None


class ConntrackCleaner:
    max_filtered_dumps = 16

    def __init__(self) -> None:
        self._ct = None

    def _sock(self):
        if self._ct is None:
            from pyroute2 import Conntrack  # imported late: heavy, and only needed here
            self._ct = Conntrack()
        return self._ct

    def close(self) -> None:
        if self._ct is not None:
            try:
                self._ct.close()
            except Exception:  # noqa: BLE001
                pass
            self._ct = None

    def clear(self, filters: list[ConntrackFilter]) -> int:
        """Delete every UDP entry a filter matches; returns how many were deleted."""
        if not filters:
            return 0
        text = _small_table()
        if text is not None and not select_entries(filters, proc_rows(text)):
            return 0
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
        # Few filters: one dump per filter, narrowed in the kernel (CTA_FILTER on the original
        # tuple: ~10 ms each however big the table). Many: one dump of every UDP entry.
        if len(filters) <= self.max_filtered_dumps:
            queries = [NFCTAttrTuple(proto=f.proto, daddr=f.orig_dst, dport=f.orig_dport) for f in filters]
        else:
            queries = [NFCTAttrTuple(proto=socket.IPPROTO_UDP)]
        try:
            ct = self._sock()
            rows, seen = [], set()
            for q in queries:
                for e in ct.dump_entries(tuple_orig=q):
                    o, r = e.tuple_orig, e.tuple_reply
                    key = (o.proto, o.saddr, o.sport, o.daddr, o.dport)
                    if key not in seen:
                        seen.add(key)
                        rows.append((o.proto, o.daddr, o.dport, r.saddr, e))
        except Exception:
            self.close()   # a broken socket is reopened next time
            raise
        deleted = 0
        for row in select_entries(filters, rows):
            try:
                ct.delete(row[4])
                deleted += 1
            except OSError as exc:  # gone meanwhile (timed out / deleted by someone else)
                if exc.errno != errno.ENOENT:
                    raise
            except Exception as exc:  # noqa: BLE001 - pyroute2 raises NetlinkError (an OSError) mostly
                if getattr(exc, "code", None) != errno.ENOENT:
                    raise
        if deleted:
            log.info("conntrack: deleted %d UDP entries (%s)", deleted,
                     "; ".join(f.describe() for f in filters[:5]) + (" ..." if len(filters) > 5 else ""))
        return deleted
