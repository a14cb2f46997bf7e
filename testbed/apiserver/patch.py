"""JSON patch (RFC 6902, with the ``jsonpatch`` library) and strategic merge patch, the two
patch types kubectl sends besides merge patch: ``apply`` of a change, default ``patch``,
``set image``, ``rollout restart``, ``cordon`` and ``diff`` send strategic merge patches;
``rollout undo`` and ``patch --type json`` send JSON patches.

Strategic merge patch follows ``apimachinery/pkg/util/strategicpatch``: lists with a merge
key (upstream's ``patchMergeKey`` for the served kinds) are merged element by element,
``$patch: replace|delete``, ``$retainKeys``, ``$setElementOrder/<list>`` and
``$deleteFromPrimitiveList/<list>`` directives are honoured, other lists are replaced."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .errors import BadRequest, Invalid

JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

# list field -> merge key, as upstream's types declare them (patchMergeKey)
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "imagePullSecrets": "name",
    "conditions": "type", "ownerReferences": "uid", "hostAliases": "ip", "resizePolicy": "resourceName",
    "topologySpreadConstraints": "topologyKey",
}
# lists of scalars merged as sets (patchStrategy=merge)
_SET_LISTS = {"finalizers"}
_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def merge_key(kind: str, path: tuple[str, ...]) -> str | None:
    """The merge key of the list at *path* (field names from the object's root) in *kind*;
    None for a list that a patch replaces whole."""
    field = path[-1]
    if field == "ports":
        if len(path) >= 2 and path[-2] in ("containers", "initContainers", "ephemeralContainers"):
            return "containerPort"
        if kind == "Service" and path == ("spec", "ports"):
            return "port"
        return None
    if field == "addresses":
        return "type" if kind == "Node" and path == ("status", "addresses") else None
    return _MERGE_KEYS.get(field)


def strategic_merge(kind: str, original: dict, patch: dict) -> dict:
    """*original* with the strategic merge *patch* applied (neither is modified)."""
    if not isinstance(patch, dict):
        raise BadRequest("a strategic merge patch must be a JSON object")
    return _merge_map(kind, copy.deepcopy(original), patch, ())


def _merge_map(kind: str, orig: dict, patch: dict, path: tuple[str, ...]) -> dict:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if directive not in (None, "merge"):
        raise BadRequest(f"{'.'.join(path) or 'the patch'}: unknown $patch directive {directive!r} "
                         "(allowed: replace, merge, delete in a list element)")
    orders = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith(_ORDER):
            orders[k[len(_ORDER):]] = v
        elif k.startswith(_DELETE_FROM):
            field = k[len(_DELETE_FROM):]
            if isinstance(orig.get(field), list) and isinstance(v, list):
                orig[field] = [x for x in orig[field] if x not in v]
        elif v is None:
            orig.pop(k, None)
        elif isinstance(v, dict) and isinstance(orig.get(k), dict):
            orig[k] = _merge_map(kind, orig[k], v, path + (k,))
        elif isinstance(v, list) and isinstance(orig.get(k), list):
            orig[k] = _merge_list(kind, orig[k], v, path + (k,))
        elif isinstance(v, dict):
            orig[k] = _merge_map(kind, {}, v, path + (k,))
        elif isinstance(v, list):
            orig[k] = _merge_list(kind, [], v, path + (k,))
        else:
            orig[k] = v
    for field, order in orders.items():
        if isinstance(orig.get(field), list) and isinstance(order, list):
            orig[field] = _reorder(orig[field], order, merge_key(kind, path + (field,)))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        orig = {k: v for k, v in orig.items() if k in retain}
    return orig


def _merge_list(kind: str, orig: list, patch: list, path: tuple[str, ...]) -> list:
    if any(isinstance(e, dict) and e.get("$patch") == "replace" and len(e) == 1 for e in patch):
        return [e for e in patch if not (isinstance(e, dict) and e.get("$patch") == "replace")]
    key = merge_key(kind, path)
    if key is None:
        if path[-1] in _SET_LISTS:
            return orig + [x for x in patch if x not in orig]
        return [_strip(e) for e in patch]
    out = list(orig)
    for e in patch:
        if not isinstance(e, dict) or key not in e:
            raise BadRequest(f"{'.'.join(path)}: every element of a strategic merge patch needs the merge key "
                             f"{key!r}")
        at = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == e[key]), None)
        if e.get("$patch") == "delete":
            if at is not None:
                del out[at]
        elif at is None:
            out.append(_merge_map(kind, {}, e, path))
        else:
            out[at] = _merge_map(kind, out[at], e, path)
    return out


def _strip(e: Any) -> Any:
    """A replacing list's element without directives (they only mean something in a merge)."""
    if isinstance(e, dict):
        return {k: _strip(v) for k, v in e.items() if not k.startswith("$")}
    return e


def _reorder(items: list, order: list, key: str | None) -> list:
    ident = (lambda e: e.get(key) if isinstance(e, dict) else e) if key else (lambda e: e)
    want = [ident(o) for o in order]
    ranked = [(want.index(ident(e)) if ident(e) in want else len(want), i, e) for i, e in enumerate(items)]
    return [e for _, _, e in sorted(ranked, key=lambda t: (t[0], t[1]))]


def json_patch(original: dict, patch: Any) -> dict:
    """*original* with the RFC 6902 *patch* applied; a failing operation is 422 as upstream."""
    if not isinstance(patch, list):
        raise BadRequest("a JSON patch must be a JSON array of operations")
    try:
        return jsonpatch.apply_patch(original, patch, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise Invalid(f"the JSON patch could not be applied: {exc}") from None
    except (TypeError, KeyError, ValueError) as exc:
        raise BadRequest(f"the JSON patch is malformed: {exc}") from None
