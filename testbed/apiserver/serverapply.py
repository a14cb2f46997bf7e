"""Server-side apply (``PATCH`` with ``application/apply-patch+yaml``) and the managedFields
every other write records, run against the store (the field logic is ``fieldmanager.py``).

A write's manager is its ``fieldManager`` parameter, else its user agent's program name
(kubectl sends ``kubectl-client-side-apply``, ``kubectl-edit``, ``kubectl-scale``, ...). A write
with neither (the testbed's own components on the unix socket send no user agent) is not
recorded: their objects are the cluster's, and the cost stays off their hot paths."""

from __future__ import annotations

import yaml

from . import errors, fieldmanager
from .errors import BadRequest, Invalid
from .kinds import KindInfo
from .store import Store, now_rfc3339

APPLY_PATCH = "application/apply-patch+yaml"


def _one(query: dict, key: str) -> str | None:
    v = query.get(key)
    return v[-1] if v else None


def manager(query: dict, headers) -> str:
    return fieldmanager.manager_of(_one(query, "fieldManager"), headers.get("User-Agent"))


def track(query: dict, headers, info: KindInfo, old: dict | None, new: dict, subresource: str = "") -> None:
    """Record in *new* (in place) the fields this write (create when *old* is None) changes."""
    who = manager(query, headers)
    if not who:
        return
    new.setdefault("metadata", {})["managedFields"] = fieldmanager.update(
        info.kind, old, new, who, info.api_version, now_rfc3339(),
        status_subresource=info.status_subresource, subresource=subresource)


def parse(body: bytes) -> dict:
    """An apply body: YAML (JSON is YAML), one object."""
    try:
        cfg = yaml.safe_load(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadRequest(f"error decoding YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise BadRequest("the apply patch must be an object (a YAML or JSON mapping)")
    return cfg


def apply(store: Store, info: KindInfo, namespace: str | None, name: str, body: bytes, query: dict,
          headers) -> tuple[int, dict]:
    """(HTTP code, object) of a server-side apply: 201 when it created the object."""
    who = _one(query, "fieldManager")
    if not who:
        raise Invalid('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                      "is required for apply patch")
    who = fieldmanager.manager_of(who, None)
    force = (_one(query, "force") or "").lower() in ("true", "1")
    cfg = parse(body)
    if cfg.get("apiVersion") != info.api_version or cfg.get("kind") != info.kind:
        raise BadRequest(f"the apply patch's apiVersion and kind ({cfg.get('apiVersion')}, {cfg.get('kind')}) "
                         f"must be those of the resource ({info.api_version}, {info.kind})")
    meta = cfg.get("metadata")
    if meta is None:
        meta = cfg["metadata"] = {}
    if not isinstance(meta, dict):
        raise BadRequest("metadata must be a JSON object")
    if meta.get("name") not in (None, name):
        raise BadRequest(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    if info.namespaced and meta.get("namespace") not in (None, "", namespace):
        raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
    pinned = meta.get("resourceVersion")
    for _ in range(5):
        try:
            live = store.get(info.kind, namespace, name)
        except errors.NotFound:
            live = None
        new = fieldmanager.apply(info.kind, live, cfg, who, info.api_version, now_rfc3339(), force=force,
                                 status_subresource=info.status_subresource)
        nm = new.setdefault("metadata", {})
        nm["name"] = name
        if info.namespaced:
            nm["namespace"] = namespace
        new["apiVersion"], new["kind"] = info.api_version, info.kind
        if live is None:
            if pinned:
                raise errors.not_found(info.plural, name, info.group)
            try:
                return 201, store.create(new)
            except errors.AlreadyExists:
                continue  # created meanwhile: apply to it
        nm["resourceVersion"] = pinned or live["metadata"].get("resourceVersion")
        try:
            return 200, store.update(new)
        except errors.Conflict:
            if pinned:
                raise
    raise errors.Conflict(f'Operation cannot be fulfilled on {info.plural} "{name}": '
                          "the object kept changing while it was applied; try again")
