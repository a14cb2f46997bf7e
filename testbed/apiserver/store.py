"""The object store behind the API server: CRUD, resourceVersions, watch, persistence.

The semantics below live in :class:`StoreCore`, once for every backend; a backend supplies
storage (look up, write with a compare on the old resourceVersion, list, watch).
:class:`testbed.apiserver.memory.MemoryStore` keeps objects in dicts with a write-ahead log (the
embedded default);
:class:`testbed.apiserver.etcd.EtcdStore` keeps them in etcd under upstream's key layout.

Error contract
--------------
Every operation reports API errors by raising an exception that has

* ``code``: ``int``, the HTTP status (404, 409, 410, 422, ...),
* ``reason``: ``str``, the Kubernetes ``StatusReason`` (``NotFound``, ``AlreadyExists``,
  ``Conflict``, ``Expired``, ``Invalid``, ...),
* ``str(exc)``: the message, worded like the real API server's,
* optionally ``details``: a dict (or a method returning one) copied into ``Status.details``,
* optionally ``to_status()``: returns the complete ``Status`` dict (used when present).

The server turns any such exception into a ``Status`` object with that code
(:func:`testbed.apiserver.errors.status_from_exception`) and the client turns the
``Status`` back into an exception (:func:`~testbed.apiserver.errors.exception_from_status`).
The store's own errors are in :mod:`testbed.apiserver.errors`; an admission plugin may
raise its own classes (e.g. ``testbed.k8s.errors.Invalid``) as long as they follow the
contract. Any other exception is an internal error (500).

Admission
---------
``admission`` is any object with ``admit_create(obj) -> obj``, ``admit_update(new, old) ->
obj``, ``admit_delete(obj)`` and ``rebuild(objects)`` (see :class:`NoopAdmission`). If
``admit_update`` accepts a ``subresource`` keyword it gets ``subresource="status"`` for status
writes. If committing an admitted create fails, ``admit_delete`` is called on it. The hooks
are called one at a time (under the store's admission lock), after the store's own checks
(existence, resourceVersion preconditions) and before the change is committed; in the memory
store an allocation made by admission is never followed by a failed commit, in etcd a commit
can still lose a race against another writer (then a create's allocation is released). The objects they receive are private copies
and may be modified and returned. ``rebuild`` is called once after loading persisted state.

Semantics (a small subset of the Kubernetes API machinery)
----------------------------------------------------------
* Objects are keyed by (kind, namespace, name); Namespace and Node (see ``kinds.py``) are
  cluster-scoped and have no ``metadata.namespace``. A namespaced object without a namespace
  goes to ``default``. ``metadata.generateName`` is honoured.
* One counter (etcd's revision, or the memory store's own) provides every ``resourceVersion``
  (a decimal string). ``list`` returns the counter's value at the time of the list.
* ``create`` sets uid, creationTimestamp (RFC 3339, ``...Z``), generation 1 and
  resourceVersion; a resourceVersion in the input is ignored.
* ``update`` is a full replacement with optimistic concurrency: a ``metadata.resourceVersion``
  that is set and differs from the stored one raises Conflict (if unset the update is
  unconditional). uid, creationTimestamp and deletion fields cannot be changed. For kinds with
  a status subresource the ``status`` in an update is ignored and ``update_status`` changes
  only ``status``. ``generation`` increases when anything outside metadata/status changes.
  An update that changes nothing is not written (no new resourceVersion, no event).
* ``patch`` applies an RFC 7386 JSON merge patch to the stored object and then updates; a
  ``metadata.resourceVersion`` in the patch is a precondition.
* ``delete`` removes the object (DELETED event carrying the last state, with the deletion's
  resourceVersion). Graceful deletion: with ``grace_seconds > 0`` the object is only marked
  (``metadata.deletionTimestamp`` = now + grace, ``deletionGracePeriodSeconds``; a MODIFIED
  event) and whoever plays the kubelet deletes it for good with ``grace_seconds=0`` (or None).
  An object with ``metadata.finalizers`` is only marked; it is removed by the update that
  empties its finalizers. A delete without a grace period uses, for a Pod bound to a node
  and not terminal, the Pod's ``spec.terminationGracePeriodSeconds`` (as the real API
  server does; the kubelet then stops it and deletes it with grace 0); an unscheduled or
  terminal Pod and every other kind are removed at once.
* ``watch`` streams ``{"type": ADDED|MODIFIED|DELETED|ERROR, "object": ...}``. Without a
  resourceVersion (or with "0") it starts with a synthetic ADDED per existing object, then
  follows changes. With resourceVersion N it replays every change after N from the bounded
  history (memory: in-memory events surviving a restart as far as the write-ahead log goes;
  etcd: the revisions not yet compacted); if N is older than the history it raises Gone (410, reason Expired,
  ``too old resource version: N (M)``); a future N waits for changes after N. With label/field selectors an object that starts or
  stops matching is reported as ADDED/DELETED. A watcher that falls more than
  ``watch_queue_limit`` events behind gets an ERROR event (410) and is closed, like a real
  watch, so the client relists; :meth:`Watch.get` and iteration raise it as :class:`Gone`
  (the HTTP server sends it as ``{"type": "ERROR", "object": <Status>}``).
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import inspect
import logging
import random
import string
import threading
import time
import uuid
from typing import Any, Iterable

from ..k8s.conditions import scheduled

from . import errors
from .errors import BadRequest, Invalid, NotFound, ServiceUnavailable
from .kinds import KindInfo, kind_info
from .watch import ADDED, DELETED, ERROR, MODIFIED, Watch, clone

__all__ = ["ADDED", "DELETED", "ERROR", "MODIFIED", "NoopAdmission", "Stale",
           "Store", "StoreCore", "Watch", "clone", "default_grace_seconds", "merge_patch",
           "now_rfc3339"]

log = logging.getLogger(__name__)

# how often a write that lost a race against another writer of the same backend is retried
WRITE_ATTEMPTS = 5


_DRY_RUN = contextvars.ContextVar("testbed_store_dry_run", default=False)


@contextlib.contextmanager
def dry_run():
    """Writes in this block (this thread or task) are validated and admitted as usual but not
    stored, and what admission allocated is given back: ``dryRun=All``."""
    token = _DRY_RUN.set(True)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)


def now_rfc3339(offset_seconds: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_seconds))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (returns the result; *target* may be modified)."""
    if not isinstance(patch, dict):
        return clone(patch)
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def default_grace_seconds(obj: dict) -> int | None:
    """The grace period of a delete that names none: a Pod's own
    ``spec.terminationGracePeriodSeconds`` when a kubelet runs it (bound to a node and not
    terminal), as the real API server does; None (immediate) for everything else."""
    if obj.get("kind") != "Pod":
        return None
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    grace = spec.get("terminationGracePeriodSeconds")
    return int(grace) if isinstance(grace, int) and not isinstance(grace, bool) and grace > 0 else None


class NoopAdmission:
    """Admission that accepts everything unchanged."""

    def admit_create(self, obj: dict) -> dict:
        return obj

    def admit_update(self, new: dict, old: dict) -> dict:
        return new

    def admit_delete(self, obj: dict) -> None:
        return None

    def rebuild(self, objects: Iterable[dict]) -> None:
        return None


class Stale(Exception):
    """A backend's write found the stored object changed since it was read (another writer
    of the same etcd won the race); the operation is redone from a fresh read."""


class Store(abc.ABC):
    """The interface the API server needs.

    ``namespace`` arguments are ignored for cluster-scoped kinds. All methods return private
    copies of objects. Errors follow the contract in this module's docstring."""

    @abc.abstractmethod
    def create(self, obj: dict) -> dict: ...

    @abc.abstractmethod
    def get(self, kind: str, namespace: str | None, name: str) -> dict: ...

    @abc.abstractmethod
    def list(self, kind: str, namespace: str | None = None, label_selector=None,
             field_selector=None, *, copy: bool = True) -> tuple[list[dict], str]:
        """The objects and the store's resourceVersion; ``copy=False``: the stored objects
        themselves, for a caller that only reads them (the API server encoding a LIST)."""

    @abc.abstractmethod
    def update(self, obj: dict) -> dict: ...

    @abc.abstractmethod
    def update_status(self, obj: dict) -> dict: ...

    @abc.abstractmethod
    def patch(self, kind: str, namespace: str | None, name: str, patch: dict,
              subresource: str | None = None) -> dict: ...

    @abc.abstractmethod
    def delete(self, kind: str, namespace: str | None, name: str, *,
               grace_seconds: int | None = None, resource_version: str | None = None,
               uid: str | None = None) -> dict: ...

    @abc.abstractmethod
    def watch(self, kind: str, namespace: str | None = None, resource_version: str | None = None,
              label_selector=None, field_selector=None, *, copy: bool = True,
              send_initial_events: bool | None = None, bookmarks: bool = False) -> Watch:
        """A :class:`Watch` (the HTTP server uses ``Watch.get_raw_batch`` and the events'
        ``encoded()``, so every store returns that class). *send_initial_events* and
        *bookmarks* are watch-list's (``watchlist.py``)."""

    @property
    @abc.abstractmethod
    def resource_version(self) -> str: ...

    def close(self) -> None:
        pass


def parse_watch_rv(resource_version: str | None) -> int | None:
    """The revision a watch starts after, or None for "current state first"."""
    if resource_version in (None, "", "0"):
        return None
    try:
        start = int(resource_version)
        if start < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise BadRequest(f'invalid resourceVersion "{resource_version}"') from None
    return start


def check_not_newer(start: int | None, current: int) -> None:
    """Refuse a "not older than" read of a resourceVersion the store has not reached, as
    upstream does once its watch cache gives up waiting for it (504 Timeout)."""
    if start is not None and start > current:
        raise errors.ApiError(f"Too large resource version: {start}, current: {current}", code=504,
                              reason="Timeout", details={"retryAfterSeconds": 1, "causes": [
                                  {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]})


class StoreCore(Store):
    """The API semantics (server-set fields, preconditions, generation, status subresource,
    merge patch, graceful deletion, finalizers, admission) over a storage backend.

    A backend implements :meth:`_lookup` (the stored object with its resourceVersion, or
    None) and :meth:`_write` (commit one change; sets the new resourceVersion on the object;
    raises :class:`Stale` when *old* is no longer what is stored), plus the reads, watch and
    close. A write runs under the lock :meth:`_write_lock` names (the whole store's by
    default; a backend whose writes are compare-and-swaps may lock per object, so writes of
    different objects overlap), admission calls under ``_admission_lock``, and
    :meth:`_after_write` after the write lock is released.
    A backend whose ADDED write itself raises AlreadyExists for an existing object sets
    ``_write_refuses_existing`` and saves the read before every create (admission's
    allocation is then released by ``admit_delete`` when the write refuses)."""

    _write_refuses_existing = False

    def __init__(self, admission=None, *, watch_queue_limit: int = 100000):
        self._lock = threading.RLock()
        self._admission_lock = self._lock  # admission keeps allocations: one call at a time
        self._admission = admission if admission is not None else NoopAdmission()
        try:
            params = inspect.signature(self._admission.admit_update).parameters
            self._admit_update_takes_subresource = "subresource" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            self._admit_update_takes_subresource = False
        self._watch_queue_limit = watch_queue_limit
        self._closed = False

    # -- backend ----------------------------------------------------------------------------
    @abc.abstractmethod
    def _lookup(self, info: KindInfo, ns: str, name: str) -> dict | None: ...

    @abc.abstractmethod
    def _write(self, typ: str, info: KindInfo, ns: str, name: str, obj: dict, old: dict | None) -> None: ...

    def _after_write(self) -> None:
        return None

    def _commit(self, typ: str, info: KindInfo, ns: str, name: str, obj: dict, old: dict | None) -> None:
        if not _DRY_RUN.get():
            self._write(typ, info, ns, name, obj, old)
        elif typ == ADDED:
            with self._admission_lock:
                self._admission.admit_delete(clone(obj))  # the object is not kept: nor is its allocation

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _ns(info: KindInfo, namespace: str | None) -> str:
        return (namespace or "default") if info.namespaced else ""

    def _require(self, info: KindInfo, ns: str, name: str) -> dict:
        obj = self._lookup(info, ns, name)
        if obj is None:
            raise errors.not_found(info.plural, name, info.group)
        return obj

    def _check_open(self) -> None:
        if self._closed:
            raise ServiceUnavailable("the store is closed")

    @staticmethod
    def _meta(obj: Any) -> dict:
        if not isinstance(obj, dict):
            raise BadRequest("the object must be a JSON object")
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be a JSON object")
        return meta

    def _info_of(self, obj: dict) -> KindInfo:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if not kind or not isinstance(kind, str):
            raise BadRequest("Object 'Kind' is missing in the object")
        return kind_info(kind)

    def _write_lock(self, info: KindInfo, ns: str, name: str):
        """The lock a write of this object runs under: one for the whole store here (the
        memory backend's reads and writes are not atomic otherwise)."""
        return self._lock

    def _locked_write(self, lock, fn, *args):
        """Run ``fn(*args)`` under *lock*, redoing it when the backend reports
        :class:`Stale`; returns a private copy of its result."""
        with lock:
            self._check_open()
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    result = fn(*args)
                    break
                except Stale:
                    if attempt == WRITE_ATTEMPTS - 1:
                        raise ServiceUnavailable("too many concurrent writers; try again") from None
        self._after_write()
        return clone(result)

    # -- writes -----------------------------------------------------------------------------
    def create(self, obj: dict) -> dict:
        info = self._info_of(obj)
        self._meta(obj)
        # a private copy with the usual key order: apiVersion, kind, metadata, ...
        obj = clone({"apiVersion": obj.get("apiVersion") or info.api_version, "kind": info.kind,
                     "metadata": obj["metadata"], **obj})
        meta = obj["metadata"]
        if info.namespaced:
            meta["namespace"] = ns = meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
            ns = ""
        for k in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        name = meta.get("name")
        if not name and not meta.get("generateName"):
            raise Invalid(f'{info.kind} "" is invalid: metadata.name: Required value: '
                          "name or generateName is required",
                          details={"kind": info.kind, "name": ""})
        if name and not isinstance(name, str):
            raise BadRequest("metadata.name must be a string")
        return self._locked_write(self._write_lock(info, ns, name or ""), self._create_locked, info, ns, obj)

    def _create_locked(self, info: KindInfo, ns: str, src: dict) -> dict:
        obj = clone(src)  # a Stale retry starts again from the caller's object
        meta = obj["metadata"]
        name = meta.get("name")
        if not name:
            prefix = meta["generateName"]
            while True:
                name = prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                if self._lookup(info, ns, name) is None:
                    break
            meta["name"] = name
        # a dry run writes nothing, so it cannot rely on the backend refusing an existing key
        if (not self._write_refuses_existing or _DRY_RUN.get()) and self._lookup(info, ns, name) is not None:
            raise errors.already_exists(info.plural, name, info.group)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        with self._admission_lock:
            obj = self._admission.admit_create(obj) or obj
        self._meta(obj)
        try:
            self._commit(ADDED, info, ns, name, obj, None)
        except BaseException:
            with self._admission_lock:
                self._admission.admit_delete(clone(obj))  # release what admission allocated
            raise
        return obj

    def update(self, obj: dict) -> dict:
        return self._update(obj, status_only=False)

    def update_status(self, obj: dict) -> dict:
        return self._update(obj, status_only=True)

    def _update(self, obj: dict, status_only: bool) -> dict:
        info = self._info_of(obj)
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise BadRequest("metadata must be a JSON object")
        meta = meta or {}
        ns = self._ns(info, meta.get("namespace"))
        name = meta.get("name")
        if not name:
            raise Invalid(f'{info.kind} "" is invalid: metadata.name: Required value: name is required')
        return self._locked_write(self._write_lock(info, ns, name),
                                  lambda: self._update_locked(info, ns, name, clone(obj), status_only))

    def _update_locked(self, info: KindInfo, ns: str, name: str, obj: dict, status_only: bool,
                       binding: bool = False) -> dict:
        old = self._require(info, ns, name)
        old_meta = old["metadata"]
        meta = self._meta(obj)
        want_rv = meta.get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != old_meta.get("resourceVersion"):
            raise errors.conflict(info.plural, name, info.group)
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise errors.precondition_failed(info.plural, name, "UID", meta["uid"],
                                             old_meta.get("uid", ""), info.group)
        if status_only:
            new = clone(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            new["kind"] = info.kind
            new.setdefault("apiVersion", old.get("apiVersion", info.api_version))
            if info.status_subresource and not binding:  # a binding sets spec and status
                if "status" in old:
                    new["status"] = clone(old["status"])
                else:
                    new.pop("status", None)
            meta["name"] = name
            if info.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if k in old_meta:
                    meta[k] = old_meta[k]
                else:
                    meta.pop(k, None)
        new_meta = new["metadata"]
        new_meta["resourceVersion"] = old_meta.get("resourceVersion")
        with self._admission_lock:
            if (status_only or binding) and self._admit_update_takes_subresource:
                new = self._admission.admit_update(new, clone(old),
                                                   subresource="status" if status_only else "binding") or new
            else:
                new = self._admission.admit_update(new, clone(old)) or new
        new_meta = self._meta(new)
        new_meta["resourceVersion"] = old_meta.get("resourceVersion")
        if not status_only:  # after admission's defaulting: an apply of the same spec is a no-op
            gen = old_meta.get("generation", 1)
            if any(new.get(k) != old.get(k) for k in set(new) | set(old)
                   if k not in ("metadata", "status", "kind", "apiVersion")):
                gen += 1
            new_meta["generation"] = gen
        if new == old:
            return old  # no-op update: nothing written, no event
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers") \
                and not new_meta.get("deletionGracePeriodSeconds"):
            return self._remove(info, ns, name, new, old)
        self._commit(MODIFIED, info, ns, name, new, old)
        return new

    def patch(self, kind: str, namespace: str | None, name: str, patch: dict,
              subresource: str | None = None) -> dict:
        info = kind_info(kind)
        ns = self._ns(info, namespace)
        if not isinstance(patch, dict):
            raise BadRequest("a merge patch must be a JSON object")
        if subresource not in (None, "", "status"):
            raise NotFound(f'the server could not find the requested resource (patch {info.plural} {name}/{subresource})')
        return self._locked_write(self._write_lock(info, ns, name), self._patch_locked,
                                  info, ns, name, patch, subresource == "status")

    def _patch_locked(self, info: KindInfo, ns: str, name: str, patch: dict, status_only: bool) -> dict:
        old = self._require(info, ns, name)
        merged = merge_patch(clone(old), patch)
        if not isinstance(merged.get("metadata"), dict):
            merged["metadata"] = {}
        pmeta = patch.get("metadata") if isinstance(patch.get("metadata"), dict) else {}
        if not pmeta.get("resourceVersion"):
            merged["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        merged["kind"] = info.kind
        merged["metadata"]["name"] = name
        if info.namespaced:
            merged["metadata"]["namespace"] = ns
        return self._update_locked(info, ns, name, merged, status_only)

    def bind(self, namespace: str | None, name: str, node: str, *, uid: str | None = None,
             resource_version: str | None = None, annotations: dict | None = None) -> dict:
        """``pods/binding``: one write that sets the pod's ``spec.nodeName`` (and merges the
        binding's annotations) and its ``PodScheduled=True`` condition, as upstream's BindingREST
        does; *uid* and *resource_version* are preconditions. Returns the bound pod."""
        info = kind_info("Pod")
        if not node:
            raise Invalid(f'Binding "{name}" is invalid: target.name: Required value',
                          details={"kind": "Binding", "name": name})
        ns = self._ns(info, namespace)
        return self._locked_write(self._write_lock(info, ns, name), self._bind_locked,
                                  info, ns, name, node, uid, resource_version, annotations or {})

    def _bind_locked(self, info: KindInfo, ns: str, name: str, node: str, uid: str | None,
                     resource_version: str | None, annotations: dict) -> dict:
        old = self._require(info, ns, name)
        refused = f'Operation cannot be fulfilled on pods/binding "{name}": '
        if old["metadata"].get("deletionTimestamp"):
            raise errors.Conflict(refused + f"pod {name} is being deleted, cannot be assigned to a host",
                                  details=errors._details("pods/binding", name))
        have = (old.get("spec") or {}).get("nodeName")
        if have:
            raise errors.Conflict(refused + f'pod {name} is already assigned to node "{have}"',
                                  details=errors._details("pods/binding", name))
        new = clone(old)
        meta = new["metadata"]
        if uid:
            meta["uid"] = uid  # preconditions, checked by _update_locked
        if resource_version:
            meta["resourceVersion"] = resource_version
        if annotations:
            meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        new["spec"] = {**(new.get("spec") or {}), "nodeName": node}
        new["status"] = scheduled(new.get("status"), now_rfc3339())
        return self._update_locked(info, ns, name, new, False, binding=True)

    def delete(self, kind: str, namespace: str | None, name: str, *,
               grace_seconds: int | None = None, resource_version: str | None = None,
               uid: str | None = None) -> dict:
        info = kind_info(kind)
        ns = self._ns(info, namespace)
        return self._locked_write(self._write_lock(info, ns, name), self._delete_locked,
                                  info, ns, name, grace_seconds, resource_version, uid)

    def _delete_locked(self, info: KindInfo, ns: str, name: str, grace_seconds: int | None,
                       resource_version: str | None, uid: str | None) -> dict:
        old = self._require(info, ns, name)
        meta = old["metadata"]
        if resource_version and str(resource_version) != meta.get("resourceVersion"):
            raise errors.precondition_failed(info.plural, name, "ResourceVersion", str(resource_version),
                                             meta.get("resourceVersion", ""), info.group)
        if uid and uid != meta.get("uid"):
            raise errors.precondition_failed(info.plural, name, "UID", uid, meta.get("uid", ""), info.group)
        if grace_seconds is None:
            grace_seconds = default_grace_seconds(old)
        if not (meta.get("finalizers") or (grace_seconds and grace_seconds > 0)):
            return self._remove(info, ns, name, old, old)
        if meta.get("deletionTimestamp"):
            return old  # already terminating
        new = clone(old)
        nm = new["metadata"]
        grace = grace_seconds if (grace_seconds and grace_seconds > 0) else 0
        if meta.get("finalizers"):
            grace = 0
        nm["deletionTimestamp"] = now_rfc3339(grace)
        nm["deletionGracePeriodSeconds"] = grace
        self._commit(MODIFIED, info, ns, name, new, old)
        return new

    def _remove(self, info: KindInfo, ns: str, name: str, last: dict, old: dict) -> dict:
        """Delete *name* for good; *last* is its final state, *old* what is stored."""
        if not _DRY_RUN.get():  # a dry-run delete keeps the live object's allocations
            with self._admission_lock:
                self._admission.admit_delete(clone(last))
        final = dict(last)
        final["metadata"] = dict(last["metadata"])
        self._commit(DELETED, info, ns, name, final, old)
        return final

    # -- reads ------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str | None, name: str) -> dict:
        info = kind_info(kind)
        with self._lock:
            obj = self._require(info, self._ns(info, namespace), name)
        return clone(obj)
