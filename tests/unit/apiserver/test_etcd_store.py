"""What only the etcd store has: upstream's keys, revisions, compaction, transactions."""

import itertools
import json
import subprocess

import pytest

from testbed.apiserver import errors
from testbed.apiserver.etcd import EtcdStore, etcdctl_argv
from testbed.apiserver.etcd.client import EtcdClient
from testbed.apiserver.etcd.keys import collection_key, object_key
from testbed.apiserver.kinds import kind_info
from testbed.apiserver.store import NoopAdmission

from .conftest import svc

_prefixes = itertools.count(1)


@pytest.fixture
def prefix():
    return f"/etcdonly{next(_prefixes)}/registry"


@pytest.fixture
def estore(etcd_endpoint, prefix):
    s = EtcdStore(etcd_endpoint, prefix=prefix)
    yield s
    s.close()


def etcdctl(endpoint, *args):
    argv, env = etcdctl_argv(endpoint, list(args))
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout


def test_upstream_key_layout():
    assert object_key("/registry", kind_info("Service"), "default", "web") == "/registry/services/specs/default/web"
    assert object_key("/registry", kind_info("Endpoints"), "default", "web") == "/registry/services/endpoints/default/web"
    assert object_key("/registry", kind_info("Node"), "", "n1") == "/registry/minions/n1"
    assert object_key("/registry", kind_info("Namespace"), "", "kube-system") == "/registry/namespaces/kube-system"
    assert object_key("/registry", kind_info("Pod"), "ns", "p") == "/registry/pods/ns/p"
    assert object_key("/registry", kind_info("EndpointSlice"), "default", "web-abc") \
        == "/registry/endpointslices/default/web-abc"
    assert object_key("/registry", kind_info("Deployment"), "default", "d") == "/registry/deployments/default/d"
    assert collection_key("/registry", kind_info("Pod")) == "/registry/pods/"
    assert collection_key("/registry", kind_info("Pod"), "ns") == "/registry/pods/ns/"
    assert collection_key("/registry", kind_info("Node"), "ns") == "/registry/minions/"


def test_etcdctl_argv():
    argv, env = etcdctl_argv("http://127.0.0.1:2379", ["get", "/registry/services/specs/default/web"])
    assert argv == ["etcdctl", "--endpoints", "http://127.0.0.1:2379", "get", "/registry/services/specs/default/web"]
    assert env["ETCDCTL_API"] == "3"


def test_objects_visible_with_etcdctl_under_upstream_keys(estore, etcd_endpoint, prefix):
    estore.create(svc("web"))
    estore.create({"kind": "Node", "metadata": {"name": "n1"}})
    estore.create({"kind": "Pod", "metadata": {"name": "p", "namespace": "demo"}, "spec": {}})
    keys = etcdctl(etcd_endpoint, "get", prefix + "/", "--prefix", "--keys-only").split()
    assert keys == [f"{prefix}/minions/n1", f"{prefix}/pods/demo/p", f"{prefix}/services/specs/default/web"]
    out = etcdctl(etcd_endpoint, "get", f"{prefix}/services/specs/default/web", "--print-value-only")
    stored = json.loads(out)
    # JSON as with --storage-media-type=application/json; the resourceVersion is not stored
    assert stored["kind"] == "Service" and stored["spec"] == {"ports": [{"port": 80}]}
    assert "resourceVersion" not in stored["metadata"]


def test_resource_version_is_the_mod_revision(estore, etcd_endpoint, prefix):
    o = estore.create(svc("web"))
    u = estore.patch("Service", "default", "web", {"metadata": {"labels": {"a": "b"}}})
    out = json.loads(etcdctl(etcd_endpoint, "get", f"{prefix}/services/specs/default/web", "-w", "json"))
    kv = out["kvs"][0]
    assert str(kv["mod_revision"]) == u["metadata"]["resourceVersion"]
    assert str(kv["create_revision"]) == o["metadata"]["resourceVersion"]
    items, list_rv = estore.list("Service")
    assert list_rv == str(out["header"]["revision"]) and items[0]["metadata"]["resourceVersion"] == u["metadata"]["resourceVersion"]
    # a write by someone else moves the revision; the list's resourceVersion follows it
    etcdctl(etcd_endpoint, "put", f"{prefix}/configmaps/default/x", '{"kind":"ConfigMap","metadata":{"name":"x","namespace":"default"}}')
    items, list_rv2 = estore.list("ConfigMap")
    assert int(list_rv2) == int(list_rv) + 1 and items[0]["metadata"]["resourceVersion"] == list_rv2


def test_compacted_revision_answers_gone(estore, etcd_endpoint, prefix):
    first = estore.create(svc("a"))["metadata"]["resourceVersion"]
    w = estore.watch("Service", resource_version=first)  # still complete: follows from here
    for name in ("b", "c", "d"):
        last = estore.create(svc(name))["metadata"]["resourceVersion"]
    assert [e["object"]["metadata"]["name"] for e in (w.get(5), w.get(5), w.get(5))] == ["b", "c", "d"]
    etcdctl(etcd_endpoint, "compact", last)
    # this store's shared watch still holds those events (like the API server's watch
    # cache); another API server on the same etcd has only etcd to ask
    again = estore.watch("Service", resource_version=first)
    assert again.get(5)["object"]["metadata"]["name"] == "b"
    other = EtcdStore(etcd_endpoint, prefix=prefix)
    with pytest.raises(errors.Gone) as ei:
        other.watch("Service", resource_version=first)
    assert ei.value.code == 410 and ei.value.reason == "Expired"
    assert str(ei.value) == f"too old resource version: {first} ({int(last) - 1})"
    w2 = other.watch("Service", resource_version=str(int(last) - 1))  # the oldest still there
    assert w2.get(5)["object"]["metadata"]["name"] == "d"
    for x in (w, again, w2):
        x.stop()
    other.close()


def test_history_compacts_etcd_and_the_shared_watch(etcd_endpoint, prefix):
    s = EtcdStore(etcd_endpoint, prefix=prefix, history=5)
    w = s.watch("Service")  # the shared watch of Services has seen every change from here
    first = s.create(svc("s0"))["metadata"]["resourceVersion"]
    for i in range(1, 10):
        last = int(s.create(svc(f"s{i}"))["metadata"]["resourceVersion"])
    with pytest.raises(errors.Gone, match=rf"^too old resource version: {first} \({last - 5}\)$"):
        s.watch("Service", resource_version=first)
    recent = s.watch("Service", resource_version=str(last - 5))
    assert [recent.get(5)["object"]["metadata"]["name"] for _ in range(5)] == [f"s{i}" for i in range(5, 10)]
    assert len([w.get(5) for _ in range(10)]) == 10
    w.stop()
    recent.stop()
    s.close()


class Interloper:
    """Admission that lets another API server (a second store on the same etcd) write the
    object while this one is in the middle of updating it."""

    def __init__(self, other):
        self.other, self.armed = other, 0

    def admit_create(self, obj):
        return obj

    def admit_update(self, new, old):
        if self.armed:
            self.armed -= 1
            self.other.patch("Service", "default", "web", {"metadata": {"labels": {"by": "other"}}})
        return new

    def admit_delete(self, obj):
        pass

    def rebuild(self, objects):
        pass


def test_concurrent_update_conflicts_through_the_transaction(etcd_endpoint, prefix):
    other = EtcdStore(etcd_endpoint, prefix=prefix)
    adm = Interloper(other)
    s = EtcdStore(etcd_endpoint, prefix=prefix, admission=adm)
    o = s.create(svc("web"))
    # with a resourceVersion: the txn's compare fails and the re-read shows a newer object
    adm.armed = 1
    with pytest.raises(errors.Conflict):
        s.update(dict(o, spec={"ports": [{"port": 81}]}))
    assert s.get("Service", "default", "web")["metadata"]["labels"] == {"by": "other"}
    # without one: the update is redone on the new state and keeps the other writer's change
    adm.armed = 1
    fresh = s.get("Service", "default", "web")
    del fresh["metadata"]["resourceVersion"]
    fresh["metadata"]["labels"] = {"by": "other", "mine": "yes"}
    u = s.update(fresh)
    assert u["metadata"]["labels"] == {"by": "other", "mine": "yes"}
    assert int(u["metadata"]["resourceVersion"]) == int(s.resource_version)
    s.close()
    other.close()


def test_create_races_to_already_exists(etcd_endpoint, prefix):
    other = EtcdStore(etcd_endpoint, prefix=prefix)
    released = []

    class CreateRace:
        def admit_create(self, obj):
            if obj["metadata"]["name"] == "web" and not released:
                other.create(svc("web"))  # the other API server wins the race
            return obj

        def admit_update(self, new, old):
            return new

        def admit_delete(self, obj):
            released.append(obj["metadata"]["name"])

        def rebuild(self, objects):
            pass

    s = EtcdStore(etcd_endpoint, prefix=prefix, admission=CreateRace())
    with pytest.raises(errors.AlreadyExists):
        s.create(svc("web"))
    assert released == ["web"]  # the allocation of the lost attempt was given back
    s.close()
    other.close()


def test_failed_commit_releases_admission(estore, monkeypatch):
    released = []
    estore._admission.admit_delete = lambda obj: released.append(obj["metadata"]["name"])

    def down(*a, **kw):
        raise errors.ServiceUnavailable("etcd: unreachable")
    monkeypatch.setattr(estore._client, "txn", down)
    with pytest.raises(errors.ServiceUnavailable):
        estore.create(svc("web"))
    assert released == ["web"]


def test_unreachable_etcd_is_service_unavailable():
    client_url = "http://127.0.0.1:9"  # discard port: nothing listens on loopback
    with pytest.raises(errors.ServiceUnavailable, match="etcd at http://127.0.0.1:9 is unreachable"):
        EtcdStore(client_url)


def test_rebuild_sees_existing_objects(etcd_endpoint, prefix):
    first = EtcdStore(etcd_endpoint, prefix=prefix)
    first.create(svc("web"))
    first.close()
    seen = []

    class Recorder(NoopAdmission):
        def rebuild(self, objects):
            seen.extend((o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in objects)

    again = EtcdStore(etcd_endpoint, prefix=prefix, admission=Recorder())
    assert seen == [("web", again.get("Service", "default", "web")["metadata"]["resourceVersion"])]
    again.close()


def test_client_rejects_other_schemes():
    with pytest.raises(ValueError, match="expected http://HOST:PORT"):
        EtcdClient("unix:///tmp/x")


def test_dry_run_on_etcd_stores_nothing_and_still_refuses_an_existing_name(estore):
    from testbed.apiserver import errors as api_errors
    from testbed.apiserver.store import dry_run

    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}
    with dry_run():
        estore.create(dict(obj))
    with pytest.raises(api_errors.NotFound):
        estore.get("ConfigMap", "default", "c")
    estore.create(dict(obj))
    with dry_run():
        with pytest.raises(api_errors.AlreadyExists):
            estore.create(dict(obj))
        estore.delete("ConfigMap", "default", "c")
    assert estore.get("ConfigMap", "default", "c")


def test_a_write_starts_from_the_shared_watchs_object_and_a_stale_one_is_redone(etcd_endpoint, prefix, monkeypatch):
    from testbed.apiserver.etcd.client import b64

    other = EtcdStore(etcd_endpoint, prefix=prefix)  # another API server on the same etcd
    s = EtcdStore(etcd_endpoint, prefix=prefix)
    w = s.watch("Service", "default")  # the kind's shared watch keeps its objects from now on
    try:
        o = s.create(svc("web"))
        reads = []
        real_range = s._client.range
        monkeypatch.setattr(s._client, "range", lambda *a, **k: reads.append(a) or real_range(*a, **k))
        # the store's own write is known at once: the next one reads nothing from etcd
        u = s.patch("Service", "default", "web", {"metadata": {"labels": {"a": "1"}}})
        assert reads == [] and int(u["metadata"]["resourceVersion"]) > int(o["metadata"]["resourceVersion"])
        hub = s._hubs["Service"]
        key = b64(object_key(prefix, kind_info("Service"), "default", "web"))
        stale = hub._objects[key]
        # the other API server writes; this one's guess is older: the compare fails, the
        # txn's other branch brings the current object, and the patch applies to that
        theirs = other.patch("Service", "default", "web", {"metadata": {"labels": {"b": "2"}}})
        hub._objects[key] = stale
        mine = s.patch("Service", "default", "web", {"metadata": {"labels": {"c": "3"}}})
        assert mine["metadata"]["labels"] == {"a": "1", "b": "2", "c": "3"}
        # a resourceVersion newer than the guess is no Conflict: etcd's own state decides
        theirs = other.patch("Service", "default", "web", {"metadata": {"labels": {"d": "4"}}})
        hub._objects[key] = stale
        ok = s.update(dict(theirs, spec={"ports": [{"port": 81}]}))
        assert ok["spec"]["ports"][0]["port"] == 81 and ok["metadata"]["labels"]["d"] == "4"
        with pytest.raises(errors.Conflict):  # and one that is really old still is
            s.update(dict(theirs, spec={"ports": [{"port": 82}]}))
        # an object the guess does not know yet is no NotFound either
        other.create(svc("new"))
        hub._objects.pop(b64(object_key(prefix, kind_info("Service"), "default", "new")), None)
        new = s.patch("Service", "default", "new", {"metadata": {"labels": {"e": "5"}}})
        assert new["metadata"]["labels"] == {"e": "5"}
        # a GET always reads etcd
        reads.clear()
        assert s.get("Service", "default", "web")["metadata"]["labels"]["d"] == "4" and len(reads) == 1
    finally:
        w.stop()
        s.close()
        other.close()


class GatedStream:
    """An etcd watch stream that passes nothing on until the test opens its gate: etcd's
    watch running late."""

    def __init__(self, stream):
        import threading
        self.stream, self.gate = stream, threading.Event()

    def next(self):
        self.gate.wait()
        return self.stream.next()

    def set_timeout(self, seconds):
        self.stream.set_timeout(seconds)

    def close(self):
        self.gate.set()
        self.stream.close()


def gated_store(etcd_endpoint, prefix, monkeypatch):
    s = EtcdStore(etcd_endpoint, prefix=prefix)
    streams = []
    real_open = s._open_stream
    monkeypatch.setattr(s, "_open_stream", lambda *a: streams.append(GatedStream(real_open(*a))) or streams[-1])
    return s, streams


def names(w, timeout=0.3):
    out = []
    while (ev := w.get(timeout=timeout)) is not None:
        out.append((ev["type"], ev["object"]["metadata"]["name"]))
    return out


def wait_until(cond, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_own_writes_reach_watchers_before_etcds_watch_and_once(etcd_endpoint, prefix, monkeypatch):
    s, streams = gated_store(etcd_endpoint, prefix, monkeypatch)
    w = s.watch("Service", "default", s.resource_version)
    try:
        a = s.create(svc("a"))
        # a write of another kind in between: its revision is known, so it holds nothing up
        s.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": "default"}})
        s.patch("Service", "default", "a", {"metadata": {"labels": {"x": "1"}}})
        s.delete("Service", "default", "a")
        # etcd's watch has passed nothing on yet: the store's own writes are known as they commit
        got = []
        for _ in range(3):
            ev = w.get(timeout=5)
            got.append((ev["type"], ev["object"]["metadata"]["name"], ev["object"]["metadata"].get("labels")))
        assert got == [("ADDED", "a", None), ("MODIFIED", "a", {"x": "1"}), ("DELETED", "a", {"x": "1"})]
        hub = s._hubs["Service"]
        assert hub._early and int(a["metadata"]["resourceVersion"]) in hub._early
        # when the stream brings the same revisions, they are not delivered again
        streams[0].gate.set()
        wait_until(lambda: not hub._early)
        assert names(w) == []
    finally:
        w.stop()
        s.close()


def test_a_revision_the_store_did_not_write_holds_its_later_writes_until_the_stream_has_it(
        etcd_endpoint, prefix, monkeypatch):
    other = EtcdStore(etcd_endpoint, prefix=prefix)  # another API server on the same etcd
    s, streams = gated_store(etcd_endpoint, prefix, monkeypatch)
    w = s.watch("Service", "default", s.resource_version)
    try:
        s.create(svc("a"))
        other.create(svc("b"))
        s.create(svc("c"))
        # b's revision is unknown to this store: c waits, so events stay in revision order
        assert names(w) == [("ADDED", "a")]
        streams[0].gate.set()
        assert names(w, timeout=5) == [("ADDED", "b"), ("ADDED", "c")]
    finally:
        w.stop()
        s.close()
        other.close()


def test_a_one_member_store_reads_serializably_and_still_sees_its_writes_at_once(etcd_endpoint, prefix, monkeypatch):
    s = EtcdStore(etcd_endpoint, prefix=prefix, one_member=True)
    bodies = []
    real_call = s._client.call
    monkeypatch.setattr(s._client, "call", lambda path, body: bodies.append((path, body)) or real_call(path, body))
    try:
        for i in range(20):
            o = s.create(svc(f"s{i}"))
            got = s.get("Service", "default", f"s{i}")
            assert got["metadata"]["resourceVersion"] == o["metadata"]["resourceVersion"]
            assert int(s.list("Service")[1]) >= int(o["metadata"]["resourceVersion"])
        ranges = [b for p, b in bodies if p == "kv/range"]
        assert ranges and all(b.get("serializable") is True for b in ranges)
    finally:
        s.close()
    # an etcd given by its endpoints may have several members: linearizable reads there
    other = EtcdStore(etcd_endpoint, prefix=prefix)
    try:
        assert not other._client.serializable
    finally:
        other.close()
