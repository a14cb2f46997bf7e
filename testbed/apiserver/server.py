"""A Kubernetes-style REST API over HTTP/1.1 on a unix socket, backed by a :class:`Store`.

Path-based unix sockets are reachable from every network namespace, so processes in node
and pod namespaces can all talk to the one server. Requests are served by one thread per
connection (``socketserver.ThreadingMixIn``, keep-alive supported); all watch streams are
written by one multiplexing thread (:class:`~.watchmux.WatchMux`), so a change is encoded once and
fanned out without waking a thread per watcher.

Paths (``<prefix>`` is ``/api/v1`` or ``/apis/<group>/<version>``, see ``kinds.py``)::

    <prefix>/<plural>                              list (all namespaces) / watch; POST for
                                                   cluster-scoped kinds
    <prefix>/<plural>/<name>[/status]              cluster-scoped item
    <prefix>/namespaces/<ns>/<plural>              list / watch / POST
    <prefix>/namespaces/<ns>/<plural>/<name>       GET / PUT / PATCH / DELETE
    <prefix>/namespaces/<ns>/<plural>/<name>/status  GET / PUT / PATCH
    /api/v1/namespaces/<ns>/pods/<name>/log|exec|portforward   (podlogs.py, podexec.py, portforward.py)
    /api/v1/namespaces/<ns>/pods/<name>/binding    POST a Binding: spec.nodeName + PodScheduled, one write
    /api, /apis, <prefix>                          discovery (minimal)
    /healthz, /readyz, /livez, /version

Query parameters: ``labelSelector``, ``fieldSelector`` (see ``labels.py``), ``watch=true``
with ``resourceVersion`` and ``timeoutSeconds`` (and ``allowWatchBookmarks``,
``sendInitialEvents``, ``resourceVersionMatch``: ``watchlist.py``), ``gracePeriodSeconds`` on DELETE (or a
``DeleteOptions`` body with ``gracePeriodSeconds`` and ``preconditions``). PATCH accepts
``application/merge-patch+json`` (and plain ``application/json``, treated the same),
strategic merge and JSON patches (``patch.py``) and server-side apply (``serverapply.py``,
which also records every write's managedFields). Protobuf bodies of the kinds kubectl's
``create`` generators send are decoded (``protobody.py``), answers are JSON. ``/openapi/v2``
and ``/openapi/v3[/<group-version>]`` come from ``openapi.py``. ``dryRun=All`` (query, or
``DeleteOptions.dryRun``) validates and admits a write without storing it.
``Accept: ...;as=Table;g=meta.k8s.io`` gets a Table (``tables.py``).
The same handler serves HTTPS with client certificates (``https.py``).

A watch answers ``200`` with ``Transfer-Encoding: chunked`` and one JSON event per line
(``{"type": ..., "object": ...}``) until the client disconnects, ``timeoutSeconds`` passes
or the server closes. A too old resourceVersion gives a single ``ERROR`` event whose object
is a 410 ``Status``, as the real API server does. Errors are ``Status`` objects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import socketserver
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from .. import jsoncodec
from . import errors, httphead, openapi_pb, podexec, podlogs, portforward, protobody, serverapply
from .errors import BadRequest, MethodNotAllowed, NotFound, UnsupportedMediaType
from .discovery import discovery
from .kinds import KindInfo, by_resource
from .patch import JSON_PATCH, STRATEGIC, json_patch, strategic_merge
from .scale import SCALE_KINDS, to_scale, with_replicas
from .store import ERROR, Store, clone, dry_run, merge_patch
from .tables import table, wants_table
from .watchlist import BookmarkTimer, watch_options
from .watchmux import WatchMux
from .tls import peer_user

log = logging.getLogger(__name__)

_JSON = "application/json"


class _Route:
    __slots__ = ("info", "namespace", "name", "subresource")

    def __init__(self, info: KindInfo, namespace: str | None, name: str | None, subresource: str | None):
        self.info, self.namespace, self.name, self.subresource = info, namespace, name, subresource


def _not_found_path(path: str) -> NotFound:
    return NotFound("the server could not find the requested resource", details={"causes": [
        {"reason": "UnexpectedServerResponse", "message": f"404 page not found: {path}"}]})


def parse_route(path: str) -> _Route | None:
    """The resource addressed by *path*; None for non-resource paths (discovery)."""
    segs = [s for s in path.split("/") if s]
    if len(segs) >= 2 and segs[0] == "api":
        group, version, rest = "", segs[1], segs[2:]
    elif len(segs) >= 3 and segs[0] == "apis":
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] != "status":
        namespace, rest = rest[1], rest[2:]
    info = by_resource(group, version, rest[0])
    if info is None or len(rest) > 3 or (namespace is not None and not info.namespaced):
        raise _not_found_path(path)
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and not ((sub == "status" and info.status_subresource)
                                or (sub == "scale" and info.kind in SCALE_KINDS)
                                or (sub in ("log", "exec", "portforward", "binding") and info.kind == "Pod")):
        raise _not_found_path(path)
    if name is not None and info.namespaced and namespace is None:
        raise _not_found_path(path)
    return _Route(info, namespace, name, sub)


def _one(query: dict, key: str, default: str | None = None) -> str | None:
    v = query.get(key)
    return v[-1] if v else default


def _int_param(query: dict, key: str) -> int | None:
    v = _one(query, key)
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        raise BadRequest(f'invalid value for {key}: "{v}"') from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "testbed-apiserver/0.1"
    server: "ServerMixin"

    # -- plumbing ---------------------------------------------------------------------------
    def parse_request(self) -> bool:
        return httphead.parse_request(self)

    def setup(self) -> None:
        super().setup()
        self.server._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server._track(self.connection, False)

    def address_string(self) -> str:  # client_address is "" for AF_UNIX
        return "unix"

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, content_type: str = _JSON) -> None:
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
        head = (f"HTTP/1.1 {code} {phrase}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n")
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    def _send_obj(self, code: int, obj) -> None:
        self._send(code, jsoncodec.dumpb(obj))

    def _send_error(self, exc: BaseException) -> None:
        status = errors.status_from_exception(exc)
        if status["code"] >= 500 and not errors.is_api_error(exc):
            log.exception("internal error serving %s %s", self.command, self.path, exc_info=exc)
        code = status["code"] if 100 <= status["code"] <= 599 else 500
        self._send_obj(code, status)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise errors.ApiError("chunked request bodies are not supported", code=411, reason="LengthRequired")
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _json_body(self, body: bytes):
        if not body:
            raise BadRequest("the request body is empty")
        try:
            return jsoncodec.loads(body)
        except ValueError as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- requests ---------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            if isinstance(self.connection, ssl.SSLSocket) and peer_user(self.connection.getpeercert()) is None:
                # TCP clients must prove who they are; the unix socket is for the cluster's own processes
                raise errors.Unauthorized("Unauthorized")
            if url.path in ("/healthz", "/readyz", "/livez"):
                self._send(200, b"ok", "text/plain")
                return
            route = parse_route(url.path)
            if route is None and method == "GET" and url.path.startswith("/openapi/"):
                found = openapi_pb.answer(url.path, self.headers.get("Accept"))
                if found is None:
                    raise _not_found_path(url.path)
                self._send(200, *found)
                return
            if route is None:
                doc = discovery(url.path) if method == "GET" else None
                if doc is None:
                    raise _not_found_path(url.path)
                self._send_obj(200, doc)
                return
            if body and "protobuf" in (self.headers.get("Content-Type") or ""):
                if self.headers.get("Content-Type").split(";")[0].strip() != protobody.MEDIA_TYPE:
                    raise UnsupportedMediaType(
                        f"the body of the request was in an unknown format - accepted media types include: "
                        f"application/json, application/yaml (got {self.headers.get('Content-Type')})")
                body = json.dumps(protobody.decode(body)).encode()  # answered in JSON, which it accepts
            dry = query.get("dryRun", [])
            if method == "DELETE" and body:  # kubectl sends DeleteOptions.dryRun in the body
                opts = self._json_body(body)
                dry = dry + (opts.get("dryRun") or [] if isinstance(opts, dict) else [])
            if any(v != "All" for v in dry):
                raise BadRequest(f'invalid value for dryRun: "{dry}": supported values: "All"')
            if dry and method in ("POST", "PUT", "PATCH", "DELETE"):
                with dry_run():
                    self._handle(method, route, query, body)
            else:
                self._handle(method, route, query, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - every error becomes a Status
            try:
                self._send_error(exc)
            except OSError:
                self.close_connection = True

    def _handle(self, method: str, r: _Route, query: dict, body: bytes) -> None:
        store: Store = self.server.store
        info = r.info
        if r.subresource == "scale":
            self._scale(method, r, body, query)
            return
        if r.subresource == "log":
            self._log(method, r, query)
            return
        if r.subresource == "binding":
            self._bind(method, r, body)
            return
        if r.subresource in ("exec", "portforward"):
            if method not in ("GET", "POST"):
                raise MethodNotAllowed(f"{method} is not supported on pods/{r.subresource}")
            pod = store.get("Pod", r.namespace, r.name)
            if r.subresource == "exec":
                podexec.serve(self, pod, query, self.server.pod_exec)
            else:
                portforward.serve(self, pod, query, self.server.pod_dial)
            return
        if r.name is None:
            if method == "GET":
                if _one(query, "watch", "").lower() in ("true", "1"):
                    self._watch(r, query)
                    return
                # encoded, never changed: no copy of every object
                items, rv = store.list(info.kind, r.namespace, _one(query, "labelSelector"),
                                       _one(query, "fieldSelector"), copy=False)
                if wants_table(self.headers.get("Accept")):
                    self._send_table(info, items, rv, query)
                    return
                self._send_obj(200, {"kind": f"{info.kind}List", "apiVersion": info.api_version,
                                     "metadata": {"resourceVersion": rv}, "items": items})
                return
            if method == "POST":
                if info.namespaced and r.namespace is None:
                    raise MethodNotAllowed(f"POST is not supported on {info.plural} without a namespace")
                obj = self._check_body(self._json_body(body), r)
                serverapply.track(query, self.headers, info, None, obj)
                self._send_obj(201, store.create(obj))
                return
            raise MethodNotAllowed(f"{method} is not supported on {info.plural}")
        if method == "GET":
            obj = store.get(info.kind, r.namespace, r.name)
            if wants_table(self.headers.get("Accept")) and r.subresource is None:
                self._send_table(info, [obj], obj["metadata"].get("resourceVersion"), query)
            else:
                self._send_obj(200, obj)
        elif method == "PUT":
            obj = self._check_body(self._json_body(body), r)
            if serverapply.manager(query, self.headers):
                serverapply.track(query, self.headers, info, store.get(info.kind, r.namespace, r.name), obj,
                                  r.subresource or "")
            if r.subresource == "status":
                self._send_obj(200, store.update_status(obj))
            else:
                self._send_obj(200, store.update(obj))
        elif method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype == serverapply.APPLY_PATCH and r.subresource is None:
                self._send_obj(*serverapply.apply(store, info, r.namespace, r.name, body, query, self.headers))
                return
            if ctype not in ("application/merge-patch+json", "application/json", "", JSON_PATCH, STRATEGIC):
                raise UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{JSON_PATCH}, application/merge-patch+json, {STRATEGIC}, {serverapply.APPLY_PATCH} "
                    f"(got {ctype})")
            patch = self._json_body(body)
            if ctype in (JSON_PATCH, STRATEGIC) or serverapply.manager(query, self.headers):
                self._send_obj(200, self._patch_by_update(r, patch, ctype, query))
            else:
                self._send_obj(200, store.patch(info.kind, r.namespace, r.name, patch, r.subresource))
        elif method == "DELETE":
            if r.subresource:
                raise MethodNotAllowed("DELETE is not supported on a subresource")
            opts = self._json_body(body) if body else {}
            if not isinstance(opts, dict):
                raise BadRequest("DeleteOptions must be a JSON object")
            grace = _int_param(query, "gracePeriodSeconds")
            if grace is None and opts.get("gracePeriodSeconds") is not None:
                grace = int(opts["gracePeriodSeconds"])
            pre = opts.get("preconditions") or {}
            self._send_obj(200, store.delete(info.kind, r.namespace, r.name, grace_seconds=grace,
                                             resource_version=pre.get("resourceVersion"), uid=pre.get("uid")))
        else:
            raise MethodNotAllowed(f"{method} is not supported on {info.plural}/{r.name}")

    def _bind(self, method: str, r: _Route, body: bytes) -> None:
        """``pods/binding``: a Binding (``target``: the node) assigns the pod in one write."""
        if method != "POST":
            raise MethodNotAllowed(f"{method} is not supported on pods/binding")
        b = self._json_body(body)
        if not isinstance(b, dict) or b.get("kind", "Binding") != "Binding":
            raise BadRequest("the request body must be a Binding")
        meta = b.get("metadata") if isinstance(b.get("metadata"), dict) else {}
        target = b.get("target") if isinstance(b.get("target"), dict) else {}
        if meta.get("name") not in (None, "", r.name):
            raise BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL ({r.name})")
        if target.get("kind") not in (None, "", "Node"):
            raise errors.Invalid(f'Binding "{r.name}" is invalid: target.kind: Unsupported value: '
                                 f'"{target["kind"]}": supported values: "Node"',
                                 details={"kind": "Binding", "name": r.name})
        self.server.store.bind(r.namespace, r.name, target.get("name") or "", uid=meta.get("uid"),
                               resource_version=meta.get("resourceVersion"), annotations=meta.get("annotations"))
        self._send_obj(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "code": 201})

    def _log(self, method: str, r: _Route, query: dict) -> None:
        if method != "GET":
            raise MethodNotAllowed(f"{method} is not supported on pods/log")
        log_path = self.server.log_path
        pod = self.server.store.get("Pod", r.namespace, r.name)
        container = podlogs.container_of(pod, _one(query, "container"))
        previous = _one(query, "previous", "").lower() in ("true", "1")
        if log_path is None:
            raise podlogs.previous_not_found(pod, container)
        path = log_path(r.namespace, r.name, container)
        lines = _int_param(query, "tailLines")
        if previous:
            self._send(200, podlogs.read_previous(pod, container, path, lines), "text/plain")
            return
        if _one(query, "follow", "").lower() not in ("true", "1"):
            self._send(200, podlogs.read(path, lines), "text/plain")
            return
        self.close_connection = True
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n")
        try:
            for data in podlogs.follow(path, lines, self.connection, lambda: self.server.closing):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

    def _scale(self, method: str, r: _Route, body: bytes, query: dict) -> None:
        store: Store = self.server.store
        if method == "GET":
            self._send_obj(200, to_scale(store.get(r.info.kind, r.namespace, r.name)))
            return
        if method not in ("PUT", "PATCH"):
            raise MethodNotAllowed(f"{method} is not supported on {r.info.plural}/scale")
        doc = self._json_body(body)
        for _ in range(5):
            obj = store.get(r.info.kind, r.namespace, r.name)
            scale = to_scale(obj)
            if method == "PUT":
                new = doc
            else:
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                new = (json_patch(scale, doc) if ctype == JSON_PATCH else strategic_merge("Scale", scale, doc)
                       if ctype == STRATEGIC else merge_patch(scale, doc))
            try:
                updated = with_replicas(obj, new)
                serverapply.track(query, self.headers, r.info, obj, updated, "scale")
                self._send_obj(200, to_scale(store.update(updated)))
                return
            except errors.Conflict:
                if method == "PUT" or (new.get("metadata") or {}).get("resourceVersion") != \
                        obj["metadata"].get("resourceVersion"):
                    raise
        raise errors.Conflict(f'Operation cannot be fulfilled on {r.info.plural} "{r.name}": try again')

    def _patch_by_update(self, r: _Route, patch, ctype: str, query: dict) -> dict:
        """Read, patch, write back with the read's resourceVersion; a concurrent write in
        between is retried (as the real API server's patcher does) unless the patch itself
        names a resourceVersion."""
        store: Store = self.server.store
        for _ in range(5):
            old = store.get(r.info.kind, r.namespace, r.name)
            if ctype == JSON_PATCH:
                new = json_patch(old, patch)
            elif ctype == STRATEGIC:
                new = strategic_merge(r.info.kind, old, patch)
            else:
                new = merge_patch(clone(old), patch)
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise BadRequest("the patched object must be a JSON object with metadata")
            pinned = new["metadata"].get("resourceVersion") != old["metadata"].get("resourceVersion")
            new["metadata"].setdefault("resourceVersion", old["metadata"].get("resourceVersion"))
            self._check_body(new, r)
            serverapply.track(query, self.headers, r.info, old, new, r.subresource or "")
            try:
                return store.update_status(new) if r.subresource == "status" else store.update(new)
            except errors.Conflict:
                if pinned:
                    raise
        raise errors.Conflict(f'Operation cannot be fulfilled on {r.info.plural} "{r.name}": '
                              "the object kept changing while it was patched; try again")

    def _send_table(self, info: KindInfo, items: list, rv: str | None, query: dict) -> None:
        include = _one(query, "includeObject", "Metadata")
        if include not in ("None", "Metadata", "Object"):
            raise BadRequest(f'invalid value for includeObject: "{include}" (allowed: None, Metadata, Object)')
        self._send_obj(200, table(info.kind, items, rv, include_object=include))

    @staticmethod
    def _check_body(obj, r: _Route) -> dict:
        if not isinstance(obj, dict):
            raise BadRequest("the request body must be a JSON object")
        info = r.info
        kind = obj.setdefault("kind", info.kind)
        if kind != info.kind:
            raise BadRequest(f'the kind of the provided object ({kind}) does not match the resource '
                             f'({info.plural}, kind {info.kind})')
        obj.setdefault("apiVersion", info.api_version)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be a JSON object")
        if info.namespaced:
            ns = meta.get("namespace")
            if ns and ns != r.namespace:
                raise BadRequest("the namespace of the provided object does not match the namespace "
                                 "sent on the request")
            meta["namespace"] = r.namespace
        if r.name is not None:
            if meta.get("name") and meta["name"] != r.name:
                raise BadRequest(f"the name of the object ({meta['name']}) does not match the name on "
                                 f"the URL ({r.name})")
            meta["name"] = r.name
        return obj

    def _watch(self, r: _Route, query: dict) -> None:
        store: Store = self.server.store
        timeout = _int_param(query, "timeoutSeconds")
        deadline = time.monotonic() + timeout if timeout and timeout > 0 else None
        opts = watch_options(query)
        try:
            w = store.watch(r.info.kind, r.namespace, opts.resource_version, _one(query, "labelSelector"),
                            _one(query, "fieldSelector"), copy=False,
                            send_initial_events=opts.send_initial_events, bookmarks=opts.allow_bookmarks)
        except errors.Gone as exc:
            w, gone = None, exc
        self.close_connection = True  # one watch per connection, closed when it ends
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Cache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n"
                             b"Connection: close\r\n\r\n")
        except BaseException:
            if w is not None:
                w.stop()
            raise
        if w is None:
            line = json.dumps({"type": ERROR, "object": errors.status_from_exception(gone)}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(line), line))
            return
        if isinstance(self.connection, ssl.SSLSocket):
            self._watch_blocking(w, deadline, opts.allow_bookmarks)
            return
        done = self.server.mux.add(w, self.connection, deadline, opts.allow_bookmarks)
        done.wait()

    def _watch_blocking(self, w, deadline: float | None, bookmarks: bool) -> None:
        """A watch on a TLS connection, written by this thread (the mux's non-blocking writes
        and peeks do not apply to TLS records). It sleeps in select() on the client's socket
        (readable: the client left, it sends nothing while it watches; or the server shut the
        connection) and a socketpair the watch's listener writes to when events arrive."""
        wake_rd, wake_wr = socket.socketpair()
        wake_rd.setblocking(False)
        wake_wr.setblocking(False)

        def wake(_w) -> None:
            with contextlib.suppress(OSError):
                wake_wr.send(b"x")

        marker = BookmarkTimer(w, deadline, time.monotonic()) if bookmarks else None
        try:
            w.set_listener(wake)
            while True:
                batch = w.get_raw_batch(0, 4096)
                if marker is not None:
                    batch += marker.due(time.monotonic())
                if batch:
                    data = b"".join(ev.encoded() for ev in batch)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    continue
                now = time.monotonic()
                left = None if deadline is None else deadline - now
                if w.closed or (left is not None and left <= 0):
                    break
                if marker is not None and marker.at is not None:
                    left = min(x for x in (left, max(0.0, marker.at - now)) if x is not None)
                ready, _, _ = select.select([self.connection, wake_rd], [], [], left)
                if self.connection in ready:
                    return
                with contextlib.suppress(OSError):
                    while wake_rd.recv(4096):
                        pass
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            w.stop()
            wake_rd.close()
            wake_wr.close()


class ServerMixin:
    """What the unix-socket and the HTTPS listeners share: the store, the watch mux, the
    open connections (so that closing ends them all)."""
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512

    def _setup(self, store: Store, max_watch_buffer: int, log_path: podlogs.LogPath | None = None,
               pod_exec: podexec.Runner | None = None, pod_dial: portforward.Dialer | None = None) -> None:
        self.store = store
        self.log_path = log_path
        self.pod_exec, self.pod_dial = pod_exec, pod_dial
        self._conns: set[socket.socket] = set()
        self._mu = threading.Lock()
        self.mux = WatchMux(max_watch_buffer)
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._mu:
            if add:
                self._conns.add(conn)
                closing = self._closing
            else:
                self._conns.discard(conn)
                return
        if closing:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def accept_loop(self) -> None:
        """Blocking accept loop (no polling); ends when the listening socket is shut down."""
        while True:
            try:
                conn, addr = self.socket.accept()
            except OSError:
                with self._mu:
                    if self._closing:
                        return
                time.sleep(0.01)  # e.g. EMFILE: do not spin
                continue
            try:
                self.process_request(conn, addr)
            except Exception:  # noqa: BLE001
                self.handle_error(conn, addr)
                self.shutdown_request(conn)

    def handle_error(self, request, client_address) -> None:
        log.exception("error on an API server connection")

    def shut_all(self) -> None:
        with self._mu:
            self._closing = True
        self.mux.close()  # ends every watch stream
        with self._mu:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(ServerMixin, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    def __init__(self, path: str, store: Store, max_watch_buffer: int, log_path: podlogs.LogPath | None,
                 pod_exec: podexec.Runner | None, pod_dial: portforward.Dialer | None):
        self._setup(store, max_watch_buffer, log_path, pod_exec, pod_dial)
        super().__init__(path, Handler)


class ServerHandle:
    """A running server; :meth:`close` stops it (and ends every watch and connection)."""

    def __init__(self, server: ServerMixin, thread: threading.Thread, socket_path: str | None):
        self._server = server
        self.thread = thread
        self.socket_path = socket_path
        self.store = server.store
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shut_all()
        try:
            self._server.socket.shutdown(socket.SHUT_RDWR)  # wakes the blocking accept()
        except OSError:
            pass
        self._server.server_close()
        self.thread.join(timeout=10)
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(store: Store, socket_path: str | os.PathLike, *, max_watch_buffer: int = 64 << 20,
          log_path: podlogs.LogPath | None = None, pod_exec: podexec.Runner | None = None,
          pod_dial: portforward.Dialer | None = None) -> ServerHandle:
    """Serve *store* on a unix socket at *socket_path* from background threads; returns a
    handle with ``close()``. A stale socket file at the path is replaced. A watch client
    that falls more than ``max_watch_buffer`` bytes behind is disconnected. ``log_path``
    locates a container's log file for ``pods/log``; ``pod_exec`` makes the command line of a
    ``pods/exec`` (``podexec.py``), ``pod_dial`` connects a ``pods/portforward`` (``portforward.py``)."""
    path = os.fspath(socket_path)
    if len(path.encode()) > 107:
        raise ValueError(f"unix socket path too long ({len(path)} > 107): {path}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = _Server(path, store, max_watch_buffer, log_path, pod_exec, pod_dial)
    thread = threading.Thread(target=server.accept_loop,
                              name=f"apiserver:{os.path.basename(path)}", daemon=True)
    thread.start()
    return ServerHandle(server, thread, path)
