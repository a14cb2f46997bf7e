"""On-disk state of a :class:`~testbed.apiserver.memory.MemoryStore`: snapshot + write-ahead log.

Files in ``state_dir``:

``snapshot.json``
    ``{"resourceVersion": N, "objects": [...]}``, written to a temporary file and renamed
    into place, so it is always complete.
``wal.jsonl``
    one JSON line per write, appended and flushed (not fsynced: the state directory is on
    tmpfs and only has to survive the death of the process, not of the machine):
    ``{"rv": N, "type": "ADDED|MODIFIED|DELETED", "object": {...}}``.
``wal.old.jsonl``
    the log being folded into a new snapshot (exists only during a compaction).

Loading reads the snapshot, then ``wal.old.jsonl`` and ``wal.jsonl``, skipping records with
``rv <=`` the snapshot's. A torn (partial) last line, which is what a crash in the middle of
an append leaves, is ignored and cut off so later appends start on a clean line; anything
after the first unreadable line is treated the same way.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from .. import jsoncodec, state

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot.json"
WAL = "wal.jsonl"
WAL_OLD = "wal.old.jsonl"


@dataclass
class Loaded:
    objects: dict = field(default_factory=dict)   # (kind, ns, name) -> object
    resource_version: int = 0
    snapshot_rv: int = 0
    records: list = field(default_factory=list)   # (rv, type, object, old) after the snapshot
    needs_compaction: bool = False


def _key(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", "")


class StateLog:
    def __init__(self, state_dir: str | os.PathLike, compact_bytes: int = 16 << 20):
        self.dir = os.fspath(state_dir)
        os.makedirs(self.dir, mode=state.DIR_MODE, exist_ok=True)
        self.compact_bytes = compact_bytes
        self._threshold = compact_bytes
        self._wal = None
        self._wal_size = 0

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> Loaded:
        st = Loaded()
        snap = self._path(SNAPSHOT)
        if os.path.exists(snap):
            with open(snap, "rb") as f:
                data = json.load(f)
            st.snapshot_rv = st.resource_version = int(data["resourceVersion"])
            for obj in data.get("objects", []):
                st.objects[_key(obj)] = obj
            self._threshold = max(self.compact_bytes, os.path.getsize(snap))
        old = self._path(WAL_OLD)
        if os.path.exists(old):
            self._replay(old, st, truncate=False)
            st.needs_compaction = True
        self._wal_size = self._replay(self._path(WAL), st, truncate=True)
        if self._wal_size > self._threshold:
            st.needs_compaction = True
        return st

    def _replay(self, path: str, st: Loaded, truncate: bool) -> int:
        """Apply the records of one log file to *st*; returns the good length in bytes."""
        if not os.path.exists(path):
            return 0
        good = 0
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    log.warning("%s: ignoring a torn last record (%d bytes)", path, len(line))
                    break
                try:
                    rec = jsoncodec.loads(line)
                    rv, typ, obj = int(rec["rv"]), rec["type"], rec["object"]
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: unreadable record at byte %d; ignoring the rest", path, good)
                    break
                good += len(line)
                if rv <= st.snapshot_rv:
                    continue
                key = _key(obj)
                prev = st.objects.get(key)
                if typ == "DELETED":
                    st.objects.pop(key, None)
                else:
                    st.objects[key] = obj
                st.resource_version = max(st.resource_version, rv)
                st.records.append((rv, typ, obj, prev))
            size = f.seek(0, os.SEEK_END)
        if truncate and good != size:
            with open(path, "r+b") as f:
                f.truncate(good)
        return good

    # -- writing ----------------------------------------------------------------------------
    def open(self) -> None:
        self._wal = state.open_private(self._path(WAL), "ab")
        self._wal_size = self._wal.tell()

    def append(self, line: bytes) -> None:
        """Append one record (already encoded, ending in a newline) and flush it."""
        self._wal.write(line)
        self._wal.flush()
        self._wal_size += len(line)

    def should_compact(self) -> bool:
        return self._wal is not None and self._wal_size > self._threshold

    def rotate(self) -> None:
        """Start a new log; the current one becomes ``wal.old.jsonl``. Call with writes
        excluded, then call :meth:`write_snapshot` with the state as of this moment."""
        self._wal.close()
        os.replace(self._path(WAL), self._path(WAL_OLD))
        self.open()

    def write_snapshot(self, resource_version: int, objects: list) -> None:
        tmp = self._path(SNAPSHOT + ".tmp")
        with state.open_private(tmp, "w") as f:
            f.write('{"resourceVersion": %d, "objects": [\n' % resource_version)
            for i, obj in enumerate(objects):
                if i:
                    f.write(",\n")
                f.write(jsoncodec.dumps(obj))
            f.write("\n]}\n")
        size = os.path.getsize(tmp)
        os.replace(tmp, self._path(SNAPSHOT))
        try:
            os.unlink(self._path(WAL_OLD))
        except FileNotFoundError:
            pass
        self._threshold = max(self.compact_bytes, size)

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()
            self._wal = None
