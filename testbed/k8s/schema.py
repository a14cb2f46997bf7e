"""The shape of every kind the API serves, as data, and the checks that walk it.

Each kind is a tree of :class:`Obj` (known fields), :class:`Arr`, :class:`Map` (free keys)
and scalar type names.  One walk does what the API server does before any code touches a
request body:

* a value of the wrong JSON type is a field error worded like the OpenAPI schema
  validator's (``spec.containers: Invalid value: "string": spec.containers in body must be
  of type array``);
* a field the kind does not have is collected as upstream's strict decoder reports it
  (``unknown field "spec.foo"``), which kubectl's default ``fieldValidation=Strict`` turns
  into a refusal.

``null`` means "unset", as Go's JSON decoder treats it (:meth:`Findings.drop_nulls`), except
as a list item, where it is a type error.  The same trees can be rendered as OpenAPI
schemas later; nothing here knows about Python types beyond JSON's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from . import errors as fe
from .errors import FieldError

STRING = "string"
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
# intstr.IntOrString and resource.Quantity both accept a JSON number or a string.
INT_OR_STRING = "integer,string"
# An object whose inside the testbed does not model (e.g. volumes, affinity): its type is
# checked, its fields are not.
OBJECT = "object"


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, "Node"] = field(default_factory=dict)


@dataclass(frozen=True)
class Arr:
    items: "Node"


@dataclass(frozen=True)
class Map:
    values: "Node"


Node = Union[str, Obj, Arr, Map]


def json_type(value: Any) -> str:
    """The JSON type name of a decoded YAML/JSON value, as the schema validator names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# Scalar checks by type name; ``type(v) is int`` keeps booleans out of integers.
_SCALAR_OK = {
    STRING: lambda v: type(v) is str,
    INTEGER: lambda v: type(v) is int,
    NUMBER: lambda v: type(v) in (int, float),
    BOOLEAN: lambda v: type(v) is bool,
    INT_OR_STRING: lambda v: type(v) in (int, str),
    OBJECT: lambda v: isinstance(v, dict),
}


def _type_ok(node: Node, value: Any) -> bool:
    if isinstance(node, str):
        return _SCALAR_OK[node](value)
    if isinstance(node, Arr):
        return isinstance(value, list)
    return isinstance(value, dict)


def _expected(node: Node) -> str:
    if isinstance(node, (Obj, Map)):
        return "object"
    if isinstance(node, Arr):
        return "array"
    return node


@dataclass
class Findings:
    """What one walk found: type errors (the request is invalid) and unknown fields."""

    type_errors: list[FieldError] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    nulls: list[tuple[dict, Any]] = field(default_factory=list)  # (mapping, key) holding a null

    def drop_nulls(self) -> None:
        """Make every ``null`` field unset, as decoding into a Go struct does, so that
        defaulting and validation never meet a ``None`` where a value or nothing belongs."""
        for mapping, key in self.nulls:
            mapping.pop(key, None)


def type_error(path: str, value: Any, expected: str) -> FieldError:
    return fe.invalid(path, json_type(value), f"{path} in body must be of type {expected}")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _child(value: Any, node: Node, path: str, out: Findings) -> None:
    """Check one value against its node; descend into containers.  Paths are only built
    for containers and errors: this runs for every field of every write."""
    if not _type_ok(node, value):
        out.type_errors.append(type_error(path, value, _expected(node)))
    elif not isinstance(node, str):
        walk(value, node, path, out)


def walk(value: Any, node: Node, path: str, out: Findings) -> None:
    """Walk a value already known to have the node's JSON type."""
    if isinstance(node, Obj):
        fields = node.fields
        for key, sub in value.items():
            child = fields.get(key)
            if child is None:
                out.unknown.append(_join(path, key))
            elif sub is None:
                out.nulls.append((value, key))
            else:
                if isinstance(child, str):
                    if not _SCALAR_OK[child](sub):
                        out.type_errors.append(type_error(_join(path, key), sub, child))
                else:
                    _child(sub, child, _join(path, key), out)
    elif isinstance(node, Map):
        values = node.values
        for key, sub in value.items():
            if sub is None:
                out.nulls.append((value, key))
            else:
                if isinstance(values, str):
                    if not _SCALAR_OK[values](sub):
                        out.type_errors.append(type_error(_join(path, key), sub, values))
                else:
                    _child(sub, values, _join(path, key), out)
    elif isinstance(node, Arr):
        for i, item in enumerate(value):
            _child(item, node.items, f"{path}[{i}]", out)


def check(obj: dict, kind_schema: Obj) -> Findings:
    """Walk a whole object (apiVersion, kind, metadata, ...) against its kind's schema."""
    out = Findings()
    _child(obj, kind_schema, "", out)
    return out


def strict_decoding_message(kind: str, api_version: str, unknown: list[str]) -> str:
    """The API server's answer to unknown fields under ``fieldValidation=Strict``."""
    fields = ", ".join(f'unknown field "{p}"' for p in unknown)
    return f'{kind} in version "{api_version.rpartition("/")[2]}" cannot be handled as a {kind}: strict decoding error: {fields}'
