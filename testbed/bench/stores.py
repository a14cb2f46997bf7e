"""The store a control-plane benchmark runs on: the embedded store or a fresh etcd member."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from ..apiserver.memory import MemoryStore
from ..apiserver.store import Store

STORES = ("embedded", "etcd")
SHM = "/dev/shm"


@contextlib.contextmanager
def bench_store(kind: str, state_dir: str, admission) -> Iterator[Store]:
    """A store of *kind* with its state under *state_dir*; an etcd member is started for it
    (named after the benchmark's process) and stopped afterwards."""
    if kind == "embedded":
        store = MemoryStore(os.path.join(state_dir, "store"), admission=admission)
        try:
            yield store
        finally:
            store.close()
        return
    if kind != "etcd":
        raise ValueError(f"store {kind!r}: expected one of {', '.join(STORES)}")
    from ..apiserver import etcd
    # on tmpfs when there is one, like the embedded store's log (flushed, never fsynced):
    # etcd fsyncs its WAL on every commit, which on a disk shared with others can take seconds
    member_dir = tempfile.mkdtemp(prefix="tb-bench-etcd-", dir=SHM if os.path.isdir(SHM) else state_dir)
    server = etcd.start(f"bench-{os.getpid()}", member_dir)
    try:
        store = etcd.EtcdStore(server.client_url, admission=admission, one_member=True)
        try:
            yield store
        finally:
            store.close()
    finally:
        server.stop()
        shutil.rmtree(member_dir, ignore_errors=True)
