"""Server-side printing: the ``meta.k8s.io/v1`` ``Table`` kubectl asks for with
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``, with kubectl's columns for each
kind (cells from ``testbed.kubectl.printers``). Columns shown only by ``-o wide`` have
priority 1, as upstream's column definitions do."""

from __future__ import annotations

import datetime as _dt
from typing import Callable, Iterable, Mapping

from ..kubectl import printers

_NAME = {"name": "Name", "type": "string", "format": "name", "priority": 0,
         "description": "Name must be unique within a namespace."}


def wants_table(accept: str | None) -> bool:
    """True when the client's first acceptable type is a v1 (or v1beta1) Table."""
    for part in (accept or "").split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return True
    return False


def _columns(kind: str) -> tuple[list[dict], Callable]:
    if kind not in printers.COLUMNS:
        defs = [_NAME, {"name": "Age", "type": "string", "format": "", "priority": 0,
                        "description": "CreationTimestamp is a timestamp representing the server time when "
                                       "this object was created."}]
        return defs, lambda o, now: [o.get("metadata", {}).get("name", ""),
                                     printers.age(o.get("metadata", {}).get("creationTimestamp"), now)]
    base = printers.COLUMNS[kind][0]
    header, _ = printers.rows(kind, [], wide=True)
    defs = [dict(_NAME, name=col) if col == "NAME" else
            {"name": col, "type": "string", "format": "", "description": "", "priority": 0 if col in base else 1}
            for col in header]
    return defs, lambda o, now: printers.rows(kind, [o], wide=True, now=now)[1][0]


def _partial(obj: Mapping) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(kind: str, objects: Iterable[Mapping], resource_version: str | None = None, *,
          include_object: str = "Metadata", now: _dt.datetime | None = None) -> dict:
    """The Table for *objects* of *kind*; ``include_object`` is the request's ``includeObject``
    (``None``, ``Metadata`` or ``Object``)."""
    defs, cells = _columns(kind)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    rows = []
    for o in objects:
        row = {"cells": cells(o, now)}
        if include_object == "Object":
            row["object"] = dict(o)
        elif include_object != "None":
            row["object"] = _partial(o)
        rows.append(row)
    meta = {"resourceVersion": resource_version} if resource_version else {}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs,
            "rows": rows}
