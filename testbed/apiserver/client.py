"""Client for the API server on a unix socket.

:class:`ApiClient` has the same methods and signatures as
:class:`~testbed.apiserver.store.Store` (``get(kind, namespace, name)``, ``list`` returning
``(items, resourceVersion)``, ...), so controllers can be handed either one, plus
:meth:`ApiClient.apply` and :meth:`ApiClient.list_and_watch`. Kinds are named by ``kind``
(``"Service"``, ``"EndpointSlice"``, ...) and mapped to paths with ``kinds.KINDS``.

Error ``Status`` responses are raised as :mod:`testbed.apiserver.errors` exceptions
carrying the server's message, code and reason (``NotFound``, ``Conflict``, ``Gone``...).
Failures to reach the server are raised as ``OSError`` (e.g. ``ConnectionRefusedError``,
``FileNotFoundError``).

Thread safety: each thread uses its own keep-alive connection; every watch has a dedicated
connection.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlencode

from .. import jsoncodec
from . import errors
from .errors import AlreadyExists, Conflict, Gone, NotFound
from .kinds import KindInfo, kind_info
from .watch import ADDED, DELETED, ERROR, MODIFIED, clone

log = logging.getLogger(__name__)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path
        self.used = False

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s
        self.used = False


def _selector_string(sel: Any) -> str | None:
    if sel is None or sel == "":
        return None
    if isinstance(sel, str):
        return sel
    if isinstance(sel, dict):
        return ",".join(f"{k}={v}" for k, v in sel.items())
    raise TypeError("over HTTP a selector must be a string or a {key: value} dict")


def _raise_for(status_code: int, data: bytes) -> None:
    try:
        doc = jsoncodec.loads(data) if data else {}
    except ValueError:
        doc = {}
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        raise errors.exception_from_status(doc, status_code)
    text = data.decode("utf-8", "replace").strip() or http.client.responses.get(status_code, "")
    raise errors.exception_from_status({"code": status_code, "message": text}, status_code)


def _read_response(rfile) -> tuple[int, str, bool, bytes]:
    """One response of a pipelined connection: status, Content-Type, whether the server closes
    the connection after it, body (the server sends a Content-Length with every answer)."""
    line = rfile.readline(65537)
    if not line:
        raise http.client.RemoteDisconnected("the API server closed the connection")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise http.client.BadStatusLine(line.decode("latin-1", "replace"))
    length, ctype, close = 0, "", False
    while True:
        h = rfile.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        k, v = k.strip().lower(), v.strip()
        if k == "content-length":
            length = int(v)
        elif k == "content-type":
            ctype = v
        elif k == "connection":
            close = v.lower() == "close"
    data = rfile.read(length) if length else b""
    if len(data) < length:
        raise http.client.IncompleteRead(data, length - len(data))
    return int(parts[1]), ctype, close, data


class ApiClient:
    """A client for one API server socket; see the module docstring."""

    def __init__(self, socket_path: str, timeout: float | None = 30.0):
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self._local = threading.local()
        self._mu = threading.Lock()
        self._conns: set[_UnixConnection] = set()
        self._watches: set[WatchStream] = set()

    # -- transport --------------------------------------------------------------------------
    def _conn(self) -> _UnixConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _UnixConnection(self.socket_path, self.timeout)
            self._local.conn = conn
            with self._mu:
                self._conns.add(conn)
        return conn

    def request(self, method: str, path: str, body: Any = None, *, query: dict | None = None,
                content_type: str = "application/json") -> Any:
        """One request; returns the decoded JSON response or raises the mapped error."""
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                path = f"{path}?{urlencode(q)}"
        payload = None if body is None else jsoncodec.dumpb(body)
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        conn = self._conn()
        for attempt in (0, 1):
            reused = conn.used and conn.sock is not None
            try:
                conn.request(method, path, payload, headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                conn.close()
                if attempt == 0 and reused:
                    continue  # an idle keep-alive connection the server had closed
                raise
            except BaseException:
                conn.close()
                raise
            conn.used = True
            if resp.will_close:
                conn.close()
            break
        if resp.status >= 300:
            _raise_for(resp.status, data)
        ctype = resp.getheader("Content-Type", "")
        if not data:
            return None
        if "json" not in ctype:
            return data.decode("utf-8", "replace")
        return jsoncodec.loads(data)

    def close(self) -> None:
        """Close every connection and stop every watch of this client."""
        with self._mu:
            conns, watches = list(self._conns), list(self._watches)
            self._conns.clear()
        for w in watches:
            w.stop()
            w._close()
        for c in conns:
            c.close()
        self._local = threading.local()

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- paths ------------------------------------------------------------------------------
    @staticmethod
    def _ns(info: KindInfo, namespace: str | None) -> str | None:
        return (namespace or "default") if info.namespaced else None

    def _item_path(self, info: KindInfo, namespace: str | None, name: str, sub: str | None = None) -> str:
        if not name:
            raise ValueError("a name is required")
        path = info.item_path(self._ns(info, namespace), quote(name, safe=""))
        return f"{path}/{sub}" if sub else path

    @staticmethod
    def _obj_parts(obj: dict) -> tuple[KindInfo, str | None, str | None]:
        if not isinstance(obj, dict) or not obj.get("kind"):
            raise ValueError("the object needs a kind")
        info = kind_info(obj["kind"])
        meta = obj.get("metadata") or {}
        return info, meta.get("namespace"), meta.get("name")

    # -- the Store interface ----------------------------------------------------------------
    def create(self, obj: dict) -> dict:
        info, ns, _ = self._obj_parts(obj)
        return self.request("POST", info.collection_path(self._ns(info, ns)), obj)

    def create_pipelined(self, objs: list[dict], window: int = 32) -> Iterator[dict | errors.ApiError]:
        """Create *objs* over one connection with HTTP/1.1 pipelining, yielding, in order, each
        created object or the API error that refused it. Up to *window* requests are in flight:
        a long list costs one round trip per window instead of one per object, which on a loaded
        host is a scheduler wake-up of each side per object. The server reads a connection's
        requests one after the other, so the writes happen in the list's order, as with
        :meth:`create`. Objects left unanswered when the server closes the connection are
        created one by one (one already stored is then refused as AlreadyExists)."""
        reqs = []
        for obj in objs:
            info, ns, _ = self._obj_parts(obj)
            reqs.append(("POST", info.collection_path(self._ns(info, ns)), obj, "application/json"))
        return self._pipelined(reqs, window)

    def patch_pipelined(self, patches: list[tuple[str, str | None, str, dict, str | None]],
                        window: int = 32) -> Iterator[dict | errors.ApiError]:
        """Merge patches ``(kind, namespace, name, patch, subresource)`` pipelined as
        :meth:`create_pipelined` creates (a patch left unanswered is sent again on its own)."""
        return self._pipelined([("PATCH", self._item_path(kind_info(kind), ns, name, sub), patch,
                                 "application/merge-patch+json") for kind, ns, name, patch, sub in patches], window)

    def _pipelined(self, reqs: list[tuple[str, str, Any, str]], window: int) -> Iterator[dict | errors.ApiError]:
        raw = []
        for method, path, body, ctype in reqs:
            payload = jsoncodec.dumpb(body)
            raw.append(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
                       f"Accept: application/json\r\nContent-Type: {ctype}\r\n"
                       f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        done = 0
        try:
            s.settimeout(self.timeout)
            s.connect(self.socket_path)
            rfile = s.makefile("rb")
            sent = 0
            while done < len(raw):
                if sent < len(raw) and sent - done <= window // 2:  # top the window up
                    n = min(len(raw), done + window)
                    s.sendall(b"".join(raw[sent:n]))
                    sent = n
                status, ctype, will_close, data = _read_response(rfile)
                done += 1
                if status >= 300:
                    try:
                        _raise_for(status, data)
                    except errors.ApiError as e:
                        yield e
                else:
                    yield jsoncodec.loads(data) if "json" in ctype else data
                if will_close:
                    break
        except (ConnectionError, http.client.HTTPException):
            pass  # the rest one by one, below
        finally:
            s.close()
        for method, path, body, ctype in reqs[done:]:
            try:
                yield self.request(method, path, body, content_type=ctype)
            except errors.ApiError as e:
                yield e

    def get(self, kind: str, namespace: str | None, name: str) -> dict:
        return self.request("GET", self._item_path(kind_info(kind), namespace, name))

    def list(self, kind: str, namespace: str | None = None, label_selector=None,
             field_selector=None) -> tuple[list[dict], str]:
        info = kind_info(kind)
        doc = self.request("GET", info.collection_path(namespace if info.namespaced else None), query={
            "labelSelector": _selector_string(label_selector),
            "fieldSelector": _selector_string(field_selector)})
        return doc.get("items") or [], (doc.get("metadata") or {}).get("resourceVersion", "")

    def update(self, obj: dict) -> dict:
        info, ns, name = self._obj_parts(obj)
        return self.request("PUT", self._item_path(info, ns, name), obj)

    def update_status(self, obj: dict) -> dict:
        info, ns, name = self._obj_parts(obj)
        return self.request("PUT", self._item_path(info, ns, name, "status"), obj)

    def patch(self, kind: str, namespace: str | None, name: str, patch: dict,
              subresource: str | None = None) -> dict:
        return self.request("PATCH", self._item_path(kind_info(kind), namespace, name, subresource), patch,
                            content_type="application/merge-patch+json")

    def bind(self, namespace: str | None, name: str, node: str, *, uid: str | None = None,
             resource_version: str | None = None, annotations: dict | None = None) -> dict:
        """``pods/binding`` (see ``Store.bind``); the server answers a ``Status``, not the pod."""
        meta = {k: v for k, v in (("name", name), ("uid", uid), ("resourceVersion", resource_version),
                                  ("annotations", annotations)) if v}
        return self.request("POST", self._item_path(kind_info("Pod"), namespace, name, "binding"),
                            {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                             "target": {"kind": "Node", "name": node}})

    def delete(self, kind: str, namespace: str | None, name: str, *, grace_seconds: int | None = None,
               resource_version: str | None = None, uid: str | None = None) -> dict:
        opts: dict = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_seconds is not None:
            opts["gracePeriodSeconds"] = grace_seconds
        pre = {k: v for k, v in (("resourceVersion", resource_version), ("uid", uid)) if v}
        if pre:
            opts["preconditions"] = pre
        return self.request("DELETE", self._item_path(kind_info(kind), namespace, name), opts)

    def watch(self, kind: str, namespace: str | None = None, resource_version: str | None = None,
              label_selector=None, field_selector=None, *, timeout_seconds: int | None = None) -> "WatchStream":
        """Open a watch (see :class:`WatchStream`). HTTP errors (404, 400) are raised here;
        a too old resourceVersion is raised as :class:`Gone` by the iteration."""
        info = kind_info(kind)
        query = {"watch": "true", "resourceVersion": resource_version or None,
                 "labelSelector": _selector_string(label_selector),
                 "fieldSelector": _selector_string(field_selector),
                 "timeoutSeconds": timeout_seconds}
        path = info.collection_path(namespace if info.namespaced else None)
        path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        return WatchStream(self, path)

    # -- helpers ----------------------------------------------------------------------------
    def apply(self, obj: dict, *, retries: int = 5) -> dict:
        """Create *obj*, or replace the live object of that name with it (kubectl-apply-ish).

        Fields the server allocated are kept when *obj* omits them: a Service's
        ``spec.clusterIP``/``clusterIPs``/``ipFamilies``, each port's ``nodePort`` (ports matched by
        name, else by port+protocol) and ``healthCheckNodePort``; and ``metadata.finalizers`` /
        ``ownerReferences``. Conflicts are retried."""
        info, ns, name = self._obj_parts(obj)
        if not name:
            return self.create(obj)
        last: Exception | None = None
        for _ in range(max(1, retries)):
            try:
                live = self.get(info.kind, ns, name)
            except NotFound:
                try:
                    return self.create(obj)
                except AlreadyExists as e:
                    last = e
                    continue
            desired = clone(obj)
            meta = desired.setdefault("metadata", {})
            meta["resourceVersion"] = live["metadata"]["resourceVersion"]
            for k in ("finalizers", "ownerReferences"):
                if k not in meta and k in live["metadata"]:
                    meta[k] = clone(live["metadata"][k])
            if info.kind == "Service":
                _keep_service_allocations(desired, live)
            try:
                return self.update(desired)
            except Conflict as e:
                last = e
        assert last is not None
        raise last

    def server_apply(self, obj: dict, manager: str, *, force: bool = True) -> dict:
        """Server-side apply of *obj* as *manager* (creates it when missing): the fields it sets
        become the manager's, fields it stops setting are removed when nobody else owns them, and
        what others wrote (a controller's annotations, allocated addresses) stays. ``force`` takes
        over fields another manager owns instead of answering 409."""
        info, ns, name = self._obj_parts(obj)
        return self.request("PATCH", self._item_path(info, ns, name, None), obj,
                            query={"fieldManager": manager, "force": "true" if force else None},
                            content_type="application/apply-patch+yaml")

    def list_and_watch(self, kind: str, namespace: str | None = None, label_selector=None,
                       field_selector=None) -> "ListWatch":
        """An informer-like event source; see :class:`ListWatch`."""
        return ListWatch(self, kind, namespace, label_selector, field_selector)


def _keep_service_allocations(desired: dict, live: dict) -> None:
    spec = desired.setdefault("spec", {})
    lspec = live.get("spec") or {}
    for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "healthCheckNodePort"):
        if k not in spec and k in lspec:
            spec[k] = clone(lspec[k])
    lports = lspec.get("ports") or []
    for p in spec.get("ports") or []:
        if "nodePort" in p or not isinstance(p, dict):
            continue
        match = None
        for lp in lports:
            if p.get("name") and lp.get("name") == p.get("name"):
                match = lp
                break
        if match is None:
            for lp in lports:
                if lp.get("port") == p.get("port") and lp.get("protocol", "TCP") == p.get("protocol", "TCP"):
                    match = lp
                    break
        if match is not None and "nodePort" in match:
            p["nodePort"] = match["nodePort"]


class WatchStream:
    """Events from one watch request: iterate to get ``{"type", "object"}`` dicts.

    Iteration ends when :meth:`stop` is called (from any thread) or the server ends the
    stream (timeout, server shutdown). An ERROR event is raised as the mapped exception
    (``Gone`` for a too old resourceVersion). ``resource_version`` is the resourceVersion
    of the last event received."""

    def __init__(self, client: ApiClient, path: str):
        self._client = client
        self._stopped = False
        self.resource_version: str | None = None
        self._buf = b""
        self._conn = _UnixConnection(client.socket_path, None)
        with client._mu:
            client._watches.add(self)
        try:
            self._conn.connect()
            # http.client forgets the socket of a "Connection: close" response; keep it for stop()
            self._sock = self._conn.sock
            self._conn.request("GET", path, headers={"Accept": "application/json"})
            self._resp = self._conn.getresponse()
            if self._resp.status != 200:
                data = self._resp.read()
                _raise_for(self._resp.status, data)
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        with self._client._mu:
            self._client._watches.discard(self)
        for c in (self._conn, getattr(self, "_resp", None), getattr(self, "_sock", None)):
            try:
                if c is not None:
                    c.close()
            except OSError:
                pass

    def stop(self) -> None:
        self._stopped = True
        sock = getattr(self, "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def stopped(self) -> bool:
        return self._stopped

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1:]
                if not line.strip():
                    continue
                ev = jsoncodec.loads(line)
                if ev.get("type") == ERROR:
                    self._close()
                    raise errors.exception_from_status(ev.get("object") or {})
                rv = ((ev.get("object") or {}).get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = rv
                return ev
            if self._stopped:
                self._close()
                raise StopIteration
            try:
                chunk = self._resp.read1(65536)
            except Exception:  # noqa: BLE001 - closed under us (stop/close from another thread)
                chunk = b""
            if not chunk:
                self._close()
                raise StopIteration
            self._buf += chunk

    def __enter__(self) -> "WatchStream":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._close()


class ListWatch:
    """Informer-like loop: list, then watch from the list's resourceVersion; on a closed
    stream re-watch from the last seen resourceVersion; on 410 Gone relist; on connection
    errors retry with backoff (so it survives an API server restart).

    Iterating yields ``{"type": ADDED|MODIFIED|DELETED, "object": ...}``: the first list
    yields ADDED for every object; a relist yields the difference to :attr:`cache` (so a
    consumer sees deletions it missed). :attr:`cache` maps (namespace, name) to the latest
    object (``keep``: to what ``keep(object)`` returns, e.g. just its metadata, for a consumer
    that keeps its own digest of the objects); :attr:`synced` is set after the first list.
    :meth:`stop` works from any thread.
    """

    def __init__(self, client: ApiClient, kind: str, namespace: str | None = None, label_selector=None,
                 field_selector=None, *, min_backoff: float = 0.05, max_backoff: float = 2.0,
                 keep: Callable[[dict], dict] | None = None):
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[tuple[str, str], dict] = {}
        self.synced = threading.Event()
        self.resource_version: str | None = None
        self._stop = threading.Event()
        self._watch: WatchStream | None = None
        self._mu = threading.Lock()
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self.relists = 0
        self._keep = keep if keep is not None else (lambda obj: obj)

    @staticmethod
    def _key(obj: dict) -> tuple[str, str]:
        m = obj.get("metadata") or {}
        return m.get("namespace") or "", m.get("name") or ""

    def _replace(self, items: list[dict]) -> list[dict]:
        out, seen = [], set()
        for obj in items:
            k = self._key(obj)
            seen.add(k)
            old = self.cache.get(k)
            if old is None:
                out.append({"type": ADDED, "object": obj})
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                out.append({"type": MODIFIED, "object": obj})
            self.cache[k] = self._keep(obj)
        for k in [k for k in self.cache if k not in seen]:
            out.append({"type": DELETED, "object": self.cache.pop(k)})
        return out

    def stop(self) -> None:
        self._stop.set()
        with self._mu:
            w = self._watch
        if w is not None:
            w.stop()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[dict]:
        backoff = self._min_backoff
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    items, rv = self.client.list(self.kind, self.namespace, self.label_selector,
                                                 self.field_selector)
                    if self.synced.is_set():
                        self.relists += 1
                    evs = self._replace(items)
                    self.resource_version = rv
                    self.synced.set()
                    yield from evs
                w = self.client.watch(self.kind, self.namespace, self.resource_version,
                                      self.label_selector, self.field_selector)
                with self._mu:
                    self._watch = w
                if self._stop.is_set():
                    w.stop()
                for ev in w:
                    obj = ev["object"]
                    if ev["type"] == DELETED:
                        self.cache.pop(self._key(obj), None)
                    else:
                        self.cache[self._key(obj)] = self._keep(obj)
                    self.resource_version = w.resource_version
                    backoff = self._min_backoff
                    yield ev
            except Gone:
                self.resource_version = None  # relist
            except (OSError, http.client.HTTPException, errors.ApiError) as e:
                log.debug("list/watch %s: %s; retrying in %.2fs", self.kind, e, backoff)
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self._max_backoff)
            finally:
                with self._mu:
                    self._watch = None

    def run(self, handler: Callable[[dict], Any], *, name: str | None = None) -> threading.Thread:
        """Call *handler(event)* for every event from a daemon thread; returns the thread."""
        def loop() -> None:
            for ev in self:
                try:
                    handler(ev)
                except Exception:  # noqa: BLE001
                    log.exception("list/watch handler for %s failed", self.kind)
        t = threading.Thread(target=loop, name=name or f"listwatch:{self.kind}", daemon=True)
        t.start()
        return t
