import json
import os

import pytest

from testbed.apiserver import errors
from testbed.apiserver.persistence import SNAPSHOT, WAL, WAL_OLD
from testbed.apiserver.memory import MemoryStore

from .conftest import svc


def names(store, kind="Service"):
    return sorted(o["metadata"]["name"] for o in store.list(kind)[0])


def test_restart_keeps_objects_and_resource_version(tmp_path):
    d = tmp_path / "state"
    s = MemoryStore(d)
    a = s.create(svc("a"))
    s.create(svc("b"))
    s.create({"kind": "Node", "metadata": {"name": "n1"}})
    s.patch("Service", "default", "a", {"metadata": {"labels": {"x": "y"}}})
    s.delete("Service", "default", "b")
    rv = s.resource_version
    s.close()

    s2 = MemoryStore(d)
    assert s2.resource_version == rv == "5"
    assert names(s2) == ["a"] and names(s2, "Node") == ["n1"]
    a2 = s2.get("Service", "default", "a")
    assert a2["metadata"]["uid"] == a["metadata"]["uid"]
    assert a2["metadata"]["labels"] == {"x": "y"} and a2["metadata"]["resourceVersion"] == "4"
    assert s2.create(svc("c"))["metadata"]["resourceVersion"] == "6"
    with pytest.raises(errors.Conflict):
        s2.update(a)  # stale resourceVersion 1 still conflicts after the restart
    s2.close()


def test_torn_last_wal_line_is_ignored_and_cut(tmp_path):
    d = tmp_path / "state"
    s = MemoryStore(d)
    s.create(svc("a"))
    s.create(svc("b"))
    s.close()
    with open(d / WAL, "ab") as f:
        f.write(b'{"rv":3,"type":"ADDED","object":{"kind":"Service","meta')  # crash mid-append
    s2 = MemoryStore(d)
    assert names(s2) == ["a", "b"] and s2.resource_version == "2"
    s2.create(svc("c"))
    s2.close()
    lines = (d / WAL).read_bytes().splitlines()
    assert [json.loads(x)["rv"] for x in lines] == [1, 2, 3]  # the torn line was cut off
    s3 = MemoryStore(d)
    assert names(s3) == ["a", "b", "c"] and s3.resource_version == "3"
    s3.close()


def test_compaction_into_snapshot(tmp_path):
    d = tmp_path / "state"
    s = MemoryStore(d, compact_bytes=2000)
    for i in range(50):
        s.create(svc(f"s{i}"))
    for i in range(0, 50, 2):
        s.delete("Service", "default", f"s{i}")
    assert (d / SNAPSHOT).exists()
    assert len((d / WAL).read_bytes().splitlines()) < 75  # earlier records were folded in
    assert not (d / WAL_OLD).exists()
    rv = s.resource_version
    s.close()
    s2 = MemoryStore(d, compact_bytes=2000)
    assert s2.resource_version == rv == "75"
    assert names(s2) == sorted(f"s{i}" for i in range(1, 50, 2))
    s2.close()


def test_explicit_compact_and_interrupted_compaction(tmp_path):
    d = tmp_path / "state"
    s = MemoryStore(d)
    s.create(svc("a"))
    s.compact()
    s.create(svc("b"))
    s.close()
    # simulate a crash after rotating the log but before the new snapshot was written
    os.replace(d / WAL, d / WAL_OLD)
    (d / WAL).write_bytes(b"")
    s2 = MemoryStore(d)
    assert names(s2) == ["a", "b"] and s2.resource_version == "2"
    assert not (d / WAL_OLD).exists()  # compacted on start
    s2.close()
    s3 = MemoryStore(d)
    assert names(s3) == ["a", "b"]
    s3.close()


def test_watch_history_survives_restart(tmp_path):
    d = tmp_path / "state"
    s = MemoryStore(d)
    s.create(svc("a"))
    s.create(svc("b"))
    s.delete("Service", "default", "a")
    s.close()
    s2 = MemoryStore(d)
    w = s2.watch("Service", resource_version="1")
    evs = [w.get(1), w.get(1)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "b"), ("DELETED", "a")]
    s2.compact()
    s2.close()
    s3 = MemoryStore(d)
    with pytest.raises(errors.Gone):  # history before the snapshot is gone
        s3.watch("Service", resource_version="1")
    s3.watch("Service", resource_version="3").stop()
    s3.close()


class Rebuilder:
    def __init__(self):
        self.rebuilt = None

    def admit_create(self, obj):
        return obj

    def admit_update(self, new, old):
        return new

    def admit_delete(self, obj):
        pass

    def rebuild(self, objects):
        self.rebuilt = sorted(o["metadata"]["name"] for o in objects)


def test_admission_rebuilt_after_load(tmp_path):
    d = tmp_path / "state"
    s = MemoryStore(d)
    s.create(svc("a"))
    s.create({"kind": "Pod", "metadata": {"name": "p"}})
    s.close()
    adm = Rebuilder()
    MemoryStore(d, admission=adm).close()
    assert adm.rebuilt == ["a", "p"]


def test_ten_thousand_objects_restart(tmp_path):
    d = tmp_path / "state"
    s = MemoryStore(d)
    for i in range(10000):
        s.create({"kind": "Pod", "metadata": {"name": f"p{i}", "labels": {"i": str(i % 10)}}, "spec": {}})
    s.close()
    s2 = MemoryStore(d)
    assert len(s2) == 10000 and s2.resource_version == "10000"
    assert len(s2.list("Pod", label_selector="i=3")[0]) == 1000
    s2.close()


def test_store_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        d = tmp_path / "state"
        (d / WAL).parent.mkdir()
        (d / WAL).write_bytes(b"")  # left by an older run, world-readable
        os.chmod(d / WAL, 0o644)
        s = MemoryStore(d, compact_bytes=2000)
        for i in range(40):
            s.create(svc(f"s{i}"))
        s.close()
        s2 = MemoryStore(tmp_path / "fresh")
        s2.create(svc("a"))
        s2.close()
    finally:
        os.umask(old)
    assert (d / SNAPSHOT).exists()
    for p in [d / SNAPSHOT, d / WAL, tmp_path / "fresh" / WAL]:
        assert oct(p.stat().st_mode & 0o777) == oct(0o600), p
    assert oct((tmp_path / "fresh").stat().st_mode & 0o777) == oct(0o700)
