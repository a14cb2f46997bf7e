"""The API store on etcd: the semantics of :class:`~testbed.apiserver.store.StoreCore`, the
objects in etcd under upstream's key layout, as JSON (like ``--storage-media-type=
application/json``).

As in the real API server, the stored value carries no resourceVersion: it is the key's
``mod_revision``, put back into ``metadata.resourceVersion`` on every read; a list's
resourceVersion is the response header's revision. A write is one transaction that compares
the key's ``mod_revision`` with the one read (``create_revision == 0`` for a create), so a
concurrent writer makes it :class:`~testbed.apiserver.store.Stale` and the operation is
redone from a fresh read. Watches are etcd watches starting after the given revision, with
``prev_kv`` for DELETED events' last state; a compacted revision answers 410 Gone (reason
Expired). The store compacts etcd itself so that about ``history`` revisions stay
watchable (the API server's periodic compaction, by count instead of time). Every kind
has one etcd watch shared by the store's watchers (see :mod:`.hub`).

A write starts, as upstream's, from the object the kind's shared watch last saw (or the store
itself wrote) instead of reading etcd first: one round trip instead of two. The transaction
still compares the mod revision; when it fails, its other branch reads the key, and the write
is redone from there. An API error (Conflict, NotFound, Invalid, ...) found on that guessed
state is checked once more on etcd's own before it is answered. A GET or LIST reads etcd.
"""

from __future__ import annotations

import logging
import threading

from ... import jsoncodec
from .. import errors
from ..errors import ServiceUnavailable
from ..kinds import KindInfo, kind_info
from ..labels import combine, field_predicate, label_predicate
from ..store import ADDED, DELETED, MODIFIED, Stale, StoreCore, Watch, check_not_newer, parse_watch_rv
from ..watch import Event
from ..watchlist import bookmark
from .client import TLS, EtcdClient, EtcdError, WatchStream, b64, unb64
from .hub import KindHub, OwnWrite, OwnWrites
from .keys import DEFAULT_PREFIX, collection_key, object_key

log = logging.getLogger(__name__)

# revisions kept watchable (older ones are compacted away; None: never compact), and the
# events per kind a new watch can replay from the shared watch without an etcd watch of its own
DEFAULT_HISTORY = 10000
KEY_LOCKS = 64


def _encode(obj: dict) -> str:
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return b64(jsoncodec.dumpb(dict(obj, metadata=meta)))


def _decode(kv: dict) -> dict:
    obj = jsoncodec.loads(unb64(kv["value"]))
    obj["metadata"]["resourceVersion"] = kv["mod_revision"]
    return obj


class EtcdStore(StoreCore):
    """A :class:`~testbed.apiserver.store.Store` kept in the etcd at *endpoint*
    (``http://127.0.0.1:PORT``, or several client URLs separated by commas, HTTPS with
    *tls*) under *prefix*."""

    _write_refuses_existing = True  # the create's txn compares create_revision == 0

    def __init__(self, endpoint: str, admission=None, *, prefix: str = DEFAULT_PREFIX,
                 history: int | None = DEFAULT_HISTORY, watch_queue_limit: int = 100000, timeout: float = 10.0,
                 tls: TLS | None = None, one_member: bool = False):
        super().__init__(admission, watch_queue_limit=watch_queue_limit)
        self._admission_lock = threading.RLock()
        # a write is one compare-and-swap txn, so writes of different objects may overlap;
        # the same object's writes still queue here rather than retrying against each other
        self._key_locks = [threading.RLock() for _ in range(KEY_LOCKS)]
        self.prefix = prefix.rstrip("/")
        # the testbed's own member is the whole cluster: its reads need no ReadIndex
        self._client = EtcdClient(endpoint, timeout=timeout, tls=tls, serializable=one_member)
        self._history = history
        self._compacted = 0     # the revision this store last compacted etcd to
        self._last_rev = 0      # etcd's revision after this store's last write
        self._streams: dict[Watch, WatchStream] = {}   # watches older than their kind's hub
        self._hubs: dict[str, KindHub] = {}
        self._own = OwnWrites()  # the writes' events, for the hubs to deliver without waiting
        self._hub_history = history or DEFAULT_HISTORY
        self._streams_lock = threading.Lock()
        # per thread: whether the current write attempt started from a hub's object, and
        # whether it must read etcd instead (redoing an error found on a guess)
        self._local = threading.local()
        existing = self._call(self._client.range, self.prefix + "/", prefix=True).get("kvs") or []
        if existing:  # objects written by an earlier run: let admission re-learn its allocations
            problems = self._admission.rebuild([_decode(kv) for kv in existing])
            for p in problems or ():
                log.warning("admission rebuild: %s", p)

    @property
    def endpoint(self) -> str:
        return self._client.endpoint

    def _call(self, fn, *args, **kwargs) -> dict:
        try:
            return fn(*args, **kwargs)
        except EtcdError as e:
            raise ServiceUnavailable(f"etcd: {e}") from None

    # -- backend ----------------------------------------------------------------------------
    def _write_lock(self, info: KindInfo, ns: str, name: str):
        return self._key_locks[hash((info.kind, ns, name)) % KEY_LOCKS]

    def _fetch(self, info: KindInfo, ns: str, name: str) -> dict | None:
        kvs = self._call(self._client.range, object_key(self.prefix, info, ns, name)).get("kvs")
        return _decode(kvs[0]) if kvs else None

    def _lookup(self, info: KindInfo, ns: str, name: str) -> dict | None:
        """The state a write starts from: the kind's hub's if it keeps one (a guess the
        write's compare checks), else etcd's."""
        if not getattr(self._local, "fresh", False):
            hub = self._hubs.get(info.kind)
            if hub is not None:
                known, obj = hub.cached(b64(object_key(self.prefix, info, ns, name)))
                if known:
                    self._local.guessed = True
                    return obj
        return self._fetch(info, ns, name)

    def _locked_write(self, lock, fn, *args):
        def attempt(*a):
            self._local.guessed = False
            try:
                return fn(*a)
            except (Stale, ServiceUnavailable):
                raise
            except Exception as e:
                if getattr(e, "code", None) is None or not self._local.guessed:
                    raise
            # an API error found on a guessed state: what etcd's own state says is the answer
            self._local.fresh = True
            return fn(*a)

        try:
            return super()._locked_write(lock, attempt, *args)
        finally:
            self._local.fresh = False

    def _write(self, typ: str, info: KindInfo, ns: str, name: str, obj: dict, old: dict | None) -> None:
        key = b64(object_key(self.prefix, info, ns, name))
        if old is None:
            compare = {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        else:
            compare = {"key": key, "target": "MOD", "result": "EQUAL",
                       "mod_revision": old["metadata"]["resourceVersion"]}
        if typ == DELETED:
            op = {"request_delete_range": {"key": key}}
        else:
            op = {"request_put": {"key": key, "value": _encode(obj)}}
        # when the compare fails, what is there now (the redo starts from it)
        resp = self._call(self._client.txn, [compare], [op], [{"request_range": {"key": key}}])
        hub = self._hubs.get(info.kind)
        if not resp.get("succeeded"):
            if hub is not None:
                kvs = ((resp.get("responses") or [{}])[0].get("response_range") or {}).get("kvs")
                if kvs:
                    hub.committed(key, _decode(kvs[0]), int(kvs[0]["mod_revision"]))
                else:  # deleted: no later put has a revision below the answer's
                    hub.committed(key, None, int(resp["header"]["revision"]))
            if old is None:
                raise errors.already_exists(info.plural, name, info.group)
            raise Stale(key)
        rev = int(resp["header"]["revision"])
        self._last_rev = max(self._last_rev, rev)
        obj["metadata"]["resourceVersion"] = str(rev)
        if hub is not None:
            hub.committed(key, None if typ == DELETED else obj, rev)
        # the event the stream will bring, as _event makes it from etcd's kv and prev_kv
        if typ == DELETED:
            ev = Event(DELETED, dict(old, metadata=dict(old["metadata"], resourceVersion=str(rev))), old, rev)
        else:
            ev = Event(ADDED, obj, None, rev) if old is None else Event(MODIFIED, obj, old, rev)
        self._own.add(rev, OwnWrite(info.kind, key, ev))
        hubs = list(self._hubs.values())  # not under _streams_lock: a hub being started holds it for seconds
        for h in hubs:
            h.advance()
        if hubs:
            self._own.forget_through(min(h.through for h in hubs))

    def _after_write(self) -> None:
        if not self._history:
            return
        target = self._last_rev - self._history + 1
        if target > self._compacted + self._history // 100:
            try:
                self._client.compact(target)
            except EtcdError as e:  # someone compacted further already: nothing to do
                log.debug("etcd compaction to %d: %s", target, e)
            self._compacted = target
            with self._streams_lock:
                hubs = list(self._hubs.values())
            for hub in hubs:
                hub.forget_through(target - 1)

    @property
    def resource_version(self) -> str:
        hdr = self._call(self._client.range, self.prefix + "/", count_only=True)["header"]
        return hdr["revision"]

    # -- reads ------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str | None, name: str) -> dict:
        info = kind_info(kind)
        obj = self._fetch(info, self._ns(info, namespace), name)  # decoded afresh: private
        if obj is None:
            raise errors.not_found(info.plural, name, info.group)
        return obj

    def list(self, kind: str, namespace: str | None = None, label_selector=None,
             field_selector=None, *, copy: bool = True) -> tuple[list[dict], str]:
        info = kind_info(kind)
        pred = combine(label_predicate(label_selector), field_predicate(field_selector))
        resp = self._call(self._client.range, collection_key(self.prefix, info, namespace), prefix=True)
        items = [_decode(kv) for kv in resp.get("kvs") or ()]
        if pred is not None:
            items = [o for o in items if pred(o)]
        return items, resp["header"]["revision"]

    # -- watch ------------------------------------------------------------------------------
    def watch(self, kind: str, namespace: str | None = None, resource_version: str | None = None,
              label_selector=None, field_selector=None, *, copy: bool = True,
              send_initial_events: bool | None = None, bookmarks: bool = False) -> Watch:
        info = kind_info(kind)
        pred = combine(label_predicate(label_selector), field_predicate(field_selector))
        if namespace is not None and not info.namespaced:
            namespace = None
        start = parse_watch_rv(resource_version)
        self._check_open()
        initial: list[Event] = []
        if send_initial_events is False and start is None:
            start = int(self.resource_version)  # no initial state: the changes from now on
        if start is None or send_initial_events:
            items, rv = self.list(kind, namespace)
            check_not_newer(start, int(rv))
            initial = [Event(ADDED, o, None, int(o["metadata"]["resourceVersion"]))
                       for o in items if pred is None or pred(o)]
            start = int(rv)
            if send_initial_events and bookmarks:
                initial.append(bookmark(info, start, initial_events_end=True))
        w = Watch(self, info.kind, namespace, pred, initial, self._watch_queue_limit, copy, after=start,
                  since=start)
        hub = self._hub(info, start)
        if hub is not None and hub.add(w, start):
            return w
        # older than the shared watch's history: a watch of its own from that revision
        stream = self._open_stream(collection_key(self.prefix, info, namespace), start)
        with self._streams_lock:
            self._streams[w] = stream
        stream.set_timeout(None)
        threading.Thread(target=self._follow, args=(w, stream, start), daemon=True,
                         name=f"etcd-watch-{info.plural}").start()
        return w

    def _hub(self, info: KindInfo, start: int) -> KindHub | None:
        """The shared watch of *info*'s kind, started now (from *start* or etcd's current
        revision, whichever is older) if there is none; None when *start* is compacted."""
        with self._streams_lock:
            hub = self._hubs.get(info.kind)
            if hub is not None and not hub.closed:
                return hub
            since = min(start, int(self.resource_version))
            try:
                stream = self._open_stream(collection_key(self.prefix, info), since)
            except errors.Gone:
                return None
            hub = self._hubs[info.kind] = KindHub(info.plural, stream, since, self._hub_history,
                                                  self._event, self._hub_ended,
                                                  self._snapshot(collection_key(self.prefix, info), since),
                                                  own=self._own, api_kind=info.kind)
        hub.advance()  # writes committed since *since* are in the ledger already
        return hub

    def _snapshot(self, key: str, revision: int) -> dict[str, dict] | None:
        """The objects under *key* at *revision* by (base64) key, None if that is compacted."""
        try:
            resp = self._client.range(key, prefix=True, revision=revision)
        except EtcdError as e:
            log.debug("no snapshot of %s at %d: %s", key, revision, e)
            return None
        return {kv["key"]: _decode(kv) for kv in resp.get("kvs") or ()}

    def _hub_ended(self, hub: KindHub) -> None:
        with self._streams_lock:
            for kind, h in list(self._hubs.items()):
                if h is hub:
                    del self._hubs[kind]

    def _open_stream(self, key: str, start: int) -> WatchStream:
        """An etcd watch of the keys under *key* for the changes after revision *start*."""
        stream, created = self._call(self._client.watch, key, prefix=True, start_revision=start + 1)
        try:
            if start < int(created["header"]["revision"]):
                self._check_not_compacted(key, start, stream)
        except BaseException:
            stream.close()
            raise
        return stream

    def _check_not_compacted(self, key: str, start: int, stream: WatchStream) -> None:
        """Raise Gone now, rather than as the stream's first event, when the revisions after
        *start* are compacted away. A range at ``start + 1`` fails exactly then; etcd names
        the compaction revision only on the watch stream, which cancels itself shortly."""
        try:
            self._client.range(key, revision=start + 1, count_only=True)
            return
        except EtcdError as e:
            if "compacted" not in str(e):
                raise ServiceUnavailable(f"etcd: {e}") from None
        while True:
            msg = stream.next()
            if msg is None:
                raise errors.Gone(f"too old resource version: {start}")
            if msg.get("compact_revision"):
                raise errors.too_old(start, int(msg["compact_revision"]) - 1)

    def _follow(self, w: Watch, stream: WatchStream, start: int) -> None:
        """Feed *w* from its etcd stream until either ends (runs on its own thread)."""
        ends_with_error = False
        try:
            while True:
                msg = stream.next()
                if msg is None or msg.get("canceled") and not msg.get("compact_revision"):
                    break
                if msg.get("compact_revision"):
                    w.fail(errors.too_old(start, int(msg["compact_revision"]) - 1))
                    ends_with_error = True
                    break
                for e in msg.get("events") or ():
                    ev = self._event(e)
                    if ev is not None and not w.deliver(ev):
                        ends_with_error = True  # overflowed: the watch ends after its ERROR
                        return
        except EtcdError as e:
            log.warning("etcd watch on %s: %s", w.kind, e)
        finally:
            if not ends_with_error:
                # stopped by the watcher, or the stream ended under it (etcd stopped): the
                # client watches again from its last resourceVersion
                w.stop()

    @staticmethod
    def _event(e: dict) -> Event | None:
        kv = e["kv"]
        rev = int(kv["mod_revision"])
        prev = _decode(e["prev_kv"]) if e.get("prev_kv") else None
        if e.get("type") == "DELETE":
            if prev is None:
                log.warning("etcd DELETE event at %d without its previous value; dropped", rev)
                return None
            obj = dict(prev, metadata=dict(prev["metadata"], resourceVersion=str(rev)))
            return Event(DELETED, obj, prev, rev)
        obj = _decode(kv)
        if kv.get("create_revision") == kv["mod_revision"]:
            return Event(ADDED, obj, None, rev)
        return Event(MODIFIED, obj, prev, rev)

    def _unregister(self, w: Watch) -> None:
        with self._streams_lock:
            stream = self._streams.pop(w, None)
            hub = self._hubs.get(w.kind)
        if stream is not None:
            stream.close()
        elif hub is not None:
            hub.remove(w)

    def close(self) -> None:
        """Stop all watches; later writes raise ServiceUnavailable. etcd keeps the data."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._streams_lock:
            watches = list(self._streams)
            hubs = list(self._hubs.values())
        for w in watches:
            w.stop()
        for hub in hubs:  # its thread stops the hub's watchers
            hub.close()
        self._client.close()

    def __enter__(self) -> "EtcdStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
