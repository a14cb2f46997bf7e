"""Field ownership (``metadata.managedFields``) and server-side apply, as structured-merge-diff
and the API server's field manager do them, for the kinds the testbed serves. Pure data in,
data out; ``apply.py`` runs it against the store.

A field set is a ``frozenset`` of paths; a path is a tuple of upstream's ``fieldsV1`` tokens:
``f:<field>`` (a field of a struct or map), ``k:<json of the key fields>`` (an element of an
associative list, keyed by its merge keys), ``v:<json value>`` (an element of a set-like list
of scalars) and, last, ``.`` (the map or list element itself). Only the leaves of ``fieldsV1``
are in the set: ``{"f:spec": {"f:replicas": {}}}`` is ``{("f:spec", "f:replicas")}``.

Lists with merge keys (``patch.merge_key``; container ports and Service ports keyed by port and
protocol, as their list-map-keys are) are associative: every element is owned on its own.
``finalizers`` is a set. Every other list is atomic (one field). Maps whose keys are data
(labels, annotations, ConfigMap data, selectors, resource quantities) carry ``.`` for the map
itself, as upstream's schemas make them do; structs do not.

Semantics (structured-merge-diff's ``Updater``):

* an **update** (create, PUT, any patch but apply) by manager M gives M every field whose value
  it changed or added, takes those fields from every other manager, and drops removed fields
  from everyone;
* an **apply** of configuration C by M conflicts with every other manager that owns a field of
  C whose value C changes (409 listing them, unless forced: then they lose those fields);
  otherwise C is merged into the object (maps and associative lists merged, atomic lists and
  scalars replaced), fields M applied before and no longer applies are removed when nobody
  else owns them, and M's Apply entry becomes exactly C's field set.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from .errors import ApiError, BadRequest, Invalid
from .patch import merge_key
from .watch import clone

Path = tuple[str, ...]
FieldSet = frozenset

# fields the server sets or that identify the object: nobody owns them
_META_SKIP = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
              "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}
_MAP_FIELDS = {"labels", "annotations", "data", "binaryData", "stringData", "nodeSelector", "matchLabels",
               "limits", "requests", "capacity", "allocatable", "hard", "used"}
_SET_LISTS = {"finalizers"}
_MISSING = object()


def list_keys(kind: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The key fields of the associative list at *path* (field names from the root), or None."""
    key = merge_key(kind, path)
    if key is None:
        return None
    if key in ("containerPort", "port"):
        return (key, "protocol")  # protocol is a key too (list-map-keys), defaulted to TCP
    return (key,)


def _is_map(kind: str, path: tuple[str, ...]) -> bool:
    if path[-1] == "selector":
        return kind in ("Service", "ReplicationController") and path == ("spec", "selector")
    return path[-1] in _MAP_FIELDS


def _key_of(item: dict, keys: tuple[str, ...]) -> dict:
    return {k: item.get(k, "TCP" if k == "protocol" else None) for k in keys}


def key_token(item: dict, keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps(_key_of(item, keys), sort_keys=True, separators=(",", ":"))


# -- field sets ---------------------------------------------------------------------------------
def owned_part(obj: dict, status_subresource: bool) -> dict:
    """The part of *obj* that fields are owned in: no apiVersion/kind, no server-set metadata,
    no status when it has a subresource of its own."""
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")
           and not (k == "status" and status_subresource)}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _META_SKIP}
    if meta:
        out["metadata"] = meta
    return out


def field_set(kind: str, obj: dict, status_subresource: bool = False) -> FieldSet:
    """Every field *obj* sets, as paths (see the module's docstring)."""
    out: set[Path] = set()
    _walk(kind, owned_part(obj, status_subresource), (), (), out)
    return frozenset(out)


def _walk(kind: str, value: dict, names: tuple[str, ...], tokens: Path, out: set) -> None:
    for k, v in value.items():
        if v is None:
            continue
        p, t = names + (k,), tokens + ("f:" + k,)
        if isinstance(v, dict) and v:
            if _is_map(kind, p):
                out.add(t + (".",))
            _walk(kind, v, p, t, out)
            continue
        keys = list_keys(kind, p) if isinstance(v, list) and v else None
        if keys and all(isinstance(e, dict) for e in v):
            for e in v:
                kt = t + (key_token(e, keys),)
                out.add(kt + (".",))
                _walk(kind, e, p, kt, out)
        elif isinstance(v, list) and v and k in _SET_LISTS:
            out.update(t + ("v:" + json.dumps(e, separators=(",", ":")),) for e in v)
        else:
            out.add(t)


def to_fields_v1(fs: Iterable[Path]) -> dict:
    root: dict = {}
    for path in sorted(fs):
        node = root
        for tok in path:
            node = node.setdefault(tok, {})
    return root


def from_fields_v1(doc: Any) -> FieldSet:
    out: set[Path] = set()

    def walk(node: dict, path: Path) -> None:
        for tok, sub in node.items():
            if not isinstance(tok, str) or not (tok == "." or tok[:2] in ("f:", "k:", "v:", "i:")):
                raise BadRequest(f"metadata.managedFields: invalid fieldsV1 token {tok!r}")
            if isinstance(sub, dict) and sub:
                walk(sub, path + (tok,))
            else:
                out.add(path + (tok,))

    if isinstance(doc, dict):
        walk(doc, ())
    return frozenset(out)


def path_string(path: Path) -> str:
    """A path as upstream prints it in conflicts: ``.spec.containers[name="web"].image``."""
    s = ""
    for tok in path:
        if tok == ".":
            continue
        kind, body = tok[:2], tok[2:]
        if kind == "f:":
            s += "." + body
        elif kind == "k:":
            s += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(body).items()) + "]"
        else:
            s += "[=" + body + "]"
    return s


# -- reading and changing objects by path ---------------------------------------------------------
def _find(kind: str, lst: list, names: tuple[str, ...], tok: str) -> int | None:
    body = json.loads(tok[2:])
    if tok.startswith("v:"):
        return next((i for i, e in enumerate(lst) if e == body), None)
    keys = tuple(body)
    return next((i for i, e in enumerate(lst) if isinstance(e, dict) and _key_of(e, keys) == body), None)


def get(kind: str, obj: Any, path: Path) -> Any:
    """The value at *path* in *obj* (``_MISSING`` when absent)."""
    cur, names = obj, ()
    for tok in path:
        if tok == ".":
            return cur
        if tok.startswith("f:"):
            if not isinstance(cur, dict) or tok[2:] not in cur:
                return _MISSING
            names += (tok[2:],)
            cur = cur[tok[2:]]
        else:
            if not isinstance(cur, list):
                return _MISSING
            i = _find(kind, cur, names, tok)
            if i is None:
                return _MISSING
            cur = cur[i]
    return cur


def remove(kind: str, obj: dict, path: Path) -> None:
    """Remove what *path* names from *obj* (in place); ``.`` paths remove the node itself."""
    if path and path[-1] == ".":
        path = path[:-1]
    if not path:
        return
    parent = get(kind, obj, path[:-1]) if len(path) > 1 else obj
    tok = path[-1]
    if tok.startswith("f:"):
        if isinstance(parent, dict):
            parent.pop(tok[2:], None)
    elif isinstance(parent, list):
        i = _find(kind, parent, (), tok)
        if i is not None:
            del parent[i]


def _is_key_field(path: Path) -> bool:
    return len(path) >= 2 and path[-2].startswith("k:") and path[-1].startswith("f:") \
        and path[-1][2:] in json.loads(path[-2][2:])


def changed(kind: str, old: dict, new: dict, fs: FieldSet) -> set[Path]:
    """The paths of *fs* (fields of *new*) whose value differs in *old* (or that *old* lacks)."""
    return {p for p in fs if p[-1] != "." and get(kind, old, p) != get(kind, new, p)} | \
           {p for p in fs if p[-1] == "." and get(kind, old, p) is _MISSING}


# -- merging an applied configuration --------------------------------------------------------------
def merge(kind: str, live: Any, cfg: Any, names: tuple[str, ...] = ()) -> Any:
    """*cfg* merged into *live* as structured-merge-diff merges an apply (neither is modified)."""
    if isinstance(cfg, dict) and isinstance(live, dict):
        out = dict(live)
        for k, v in cfg.items():
            if v is None:
                continue
            out[k] = merge(kind, live[k], v, names + (k,)) if k in live else _drop_nulls(v)
        return out
    if isinstance(cfg, list) and isinstance(live, list) and names:
        keys = list_keys(kind, names)
        if keys and all(isinstance(e, dict) for e in cfg + live):
            out = list(live)
            for e in cfg:
                i = next((j for j, o in enumerate(out) if _key_of(o, keys) == _key_of(e, keys)), None)
                if i is None:
                    out.append(_drop_nulls(e))
                else:
                    out[i] = merge(kind, out[i], e, names)
            return out
        if names[-1] in _SET_LISTS:
            return live + [e for e in cfg if e not in live]
    return _drop_nulls(cfg)


def _drop_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls(x) for x in v]
    return clone(v)


# -- managedFields entries ---------------------------------------------------------------------------
class Entry:
    """One ``managedFields`` entry: who (manager, operation, subresource), when, which fields."""

    __slots__ = ("manager", "operation", "api_version", "time", "subresource", "fields")

    def __init__(self, manager: str, operation: str, api_version: str, time: str, fields: FieldSet,
                 subresource: str = ""):
        self.manager, self.operation, self.api_version = manager, operation, api_version
        self.time, self.fields, self.subresource = time, fields, subresource

    @property
    def ident(self) -> tuple:
        # appliers are one owner whatever version they applied, as upstream's manager identifier
        return (self.manager, self.operation, self.subresource,
                "" if self.operation == "Apply" else self.api_version)

    def describe(self) -> str:
        """How a conflict names this owner (upstream's printManager)."""
        s = json.dumps(self.manager)
        if self.subresource:
            s += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            s += f" using {self.api_version}"
        return s

    def to_dict(self) -> dict:
        d = {"apiVersion": self.api_version, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(self.fields),
             "manager": self.manager, "operation": self.operation}
        if self.subresource:
            d["subresource"] = self.subresource
        d["time"] = self.time
        return d


def decode(obj: dict) -> list[Entry] | None:
    """The object's managedFields as entries; None when it has none (or they are not a list)."""
    raw = (obj.get("metadata") or {}).get("managedFields")
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or not isinstance(e.get("manager", ""), str) \
                or e.get("operation") not in ("Apply", "Update"):
            raise BadRequest(f"metadata.managedFields[{i}]: operation must be one of Apply, Update")
        out.append(Entry(e.get("manager", ""), e["operation"], str(e.get("apiVersion", "")), str(e.get("time", "")),
                         from_fields_v1(e.get("fieldsV1")), str(e.get("subresource", ""))))
    return out


def encode(entries: list[Entry]) -> list[dict]:
    return [e.to_dict() for e in entries if e.fields]


def _upsert(entries: list[Entry], new: Entry) -> list[Entry]:
    out = [e for e in entries if e.ident != new.ident]
    out.append(new)
    return out


def _strip(entries: list[Entry], gone: set[Path], keep: tuple | None = None) -> list[Entry]:
    """*entries* without the paths in *gone* (except the entry whose ident is *keep*)."""
    out = []
    for e in entries:
        if e.ident != keep and e.fields & gone:
            e = Entry(e.manager, e.operation, e.api_version, e.time, e.fields - gone, e.subresource)
        out.append(e)
    return out


def update(kind: str, old: dict | None, new: dict, manager: str, api_version: str, now: str, *,
           status_subresource: bool = False, subresource: str = "") -> list[dict]:
    """The managedFields of *new* after manager *manager* wrote it over *old* (None: a create).
    The managedFields *new* carries are the starting point when it sets any (a client may
    rewrite them, as kubectl's migration from client-side apply does), else *old*'s."""
    own_status = status_subresource and subresource != "status"
    base = decode(new) or (decode(old) if old is not None else None) or []
    new_fs = field_set(kind, new, own_status)
    if old is None:
        moved, gone = set(new_fs), set()
    else:
        old_fs = field_set(kind, old, own_status)
        moved = changed(kind, owned_part(old, own_status), owned_part(new, own_status), new_fs)
        gone = set(old_fs - new_fs)
        if subresource == "status":  # a status write changes status only
            moved = {p for p in moved if p[0] == "f:status"}
            gone = {p for p in gone if p[0] == "f:status"}
    entries = _strip(base, gone)
    me = Entry(manager, "Update", api_version, now, frozenset(), subresource)
    entries = _strip(entries, moved, keep=None)
    prev = next((e for e in entries if e.ident == me.ident), None)
    if moved or prev is not None:
        me.fields = frozenset(moved) | (prev.fields if prev else frozenset())
        if not moved and prev is not None:
            me.time = prev.time  # nothing of its own changed: not a new write by it
        entries = _upsert(entries, me)
    return encode(entries)


class ApplyConflict(ApiError):
    code, reason = 409, "Conflict"


def conflict_error(conflicts: list[tuple[Entry, Path]]) -> ApplyConflict:
    """Upstream's 409 for an apply that would change fields others own."""
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}",
               "field": path_string(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        msg = f"Apply failed with 1 conflict: conflict with {e.describe()}: {path_string(p)}"
    else:
        by: dict[str, list[str]] = {}
        for e, p in conflicts:
            by.setdefault(e.describe(), []).append(path_string(p))
        lines = []
        for who in sorted(by):
            lines.append(f"conflicts with {who}:")
            lines += [f"- {p}" for p in by[who]]
        msg = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApplyConflict(msg, details={"causes": causes})


def apply(kind: str, live: dict | None, cfg: dict, manager: str, api_version: str, now: str, *,
          force: bool = False, status_subresource: bool = False) -> dict:
    """The object after *manager* applied *cfg* to *live* (None: it does not exist yet), with
    its managedFields; raises the conflict error upstream raises."""
    applied = field_set(kind, cfg, status_subresource)
    me = Entry(manager, "Apply", api_version, now, applied)
    if live is None:
        obj = _drop_nulls(cfg)
        obj.setdefault("metadata", {})["managedFields"] = encode([me])
        return obj
    entries = decode(live) or []
    prev = next((e for e in entries if e.ident == me.ident), None)
    cfg_part, live_part = owned_part(cfg, status_subresource), owned_part(live, status_subresource)
    differs = {p for p in applied if p[-1] != "." and get(kind, live_part, p) != get(kind, cfg_part, p)}
    conflicts = sorted(((e, p) for e in entries if e.ident != me.ident for p in sorted(e.fields & differs)),
                       key=lambda c: (c[0].manager, c[1]))
    if conflicts and not force:
        raise conflict_error(conflicts)
    if conflicts:
        entries = _strip(entries, {p for _, p in conflicts}, keep=me.ident)
    merged = merge(kind, live, {k: v for k, v in cfg.items() if k != "metadata"}, ())
    merged["metadata"] = merge(kind, live.get("metadata") or {},
                               {k: v for k, v in (cfg.get("metadata") or {}).items() if k not in _META_SKIP},
                               ("metadata",))
    if prev is not None:
        others = frozenset().union(*(e.fields for e in entries if e.ident != me.ident))
        dropped = prev.fields - applied - others
        still = applied | others
        # outermost first: an element or map nobody else has a field in goes whole
        for p in sorted(dropped, key=lambda p: (len(p) - (p[-1] == "."), p[-1] != ".")):
            node = p[:-1] if p[-1] == "." else p
            if _is_key_field(node) or any(q[:len(node)] == node for q in still):
                continue  # an element's key stays while the element does
            remove(kind, merged, p)
    if prev is not None and prev.fields == applied and not conflicts and _sans_fields(merged) == _sans_fields(live):
        me.time = prev.time  # the same apply again changes nothing: no new write, as upstream
    entries = _upsert([e for e in entries if e.ident != me.ident], me)
    merged["metadata"]["managedFields"] = encode(entries)
    return merged


def _sans_fields(obj: dict) -> dict:
    return {**obj, "metadata": {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}}


def manager_of(query_value: str | None, user_agent: str | None) -> str:
    """The field manager of a write: ``fieldManager`` when given, else the user agent's
    program name (upstream's prefixFromUserAgent)."""
    if query_value:
        if len(query_value) > 128 or not query_value.isprintable():
            raise Invalid(f'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Invalid value: '
                          f'"{query_value[:140]}": must be a printable string of at most 128 characters')
        return query_value
    return (user_agent or "").split("/")[0][:128]
