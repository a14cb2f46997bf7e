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

``null`` means "unset", as Go's JSON decoder treats it, except as a list item, where it
could only become a zero-valued struct.  The same trees can be rendered as OpenAPI
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


def _type_ok(node: Node, actual: str) -> bool:
    if isinstance(node, (Obj, Map)) or node == OBJECT:
        return actual == "object"
    if isinstance(node, Arr):
        return actual == "array"
    if node == NUMBER:
        return actual in ("integer", "number")
    return actual in node.split(",")


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


def type_error(path: str, value: Any, expected: str) -> FieldError:
    return fe.invalid(path, json_type(value), f"{path} in body must be of type {expected}")


def walk(value: Any, node: Node, path: str, out: Findings) -> None:
    actual = json_type(value)
    if not _type_ok(node, actual):
        out.type_errors.append(type_error(path, value, _expected(node)))
        return
    if isinstance(node, Obj):
        for key, sub in value.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in node.fields:
                out.unknown.append(child)
            elif sub is not None:
                walk(sub, node.fields[key], child, out)
    elif isinstance(node, Map):
        for key, sub in value.items():
            if sub is not None:
                walk(sub, node.values, f"{path}.{key}" if path else str(key), out)
    elif isinstance(node, Arr):
        for i, item in enumerate(value):
            walk(item, node.items, f"{path}[{i}]", out)


def check(obj: dict, kind_schema: Obj) -> Findings:
    """Walk a whole object (apiVersion, kind, metadata, ...) against its kind's schema."""
    out = Findings()
    walk(obj, kind_schema, "", out)
    return out


def strict_decoding_message(kind: str, api_version: str, unknown: list[str]) -> str:
    """The API server's answer to unknown fields under ``fieldValidation=Strict``."""
    fields = ", ".join(f'unknown field "{p}"' for p in unknown)
    return f'{kind} in version "{api_version.rpartition("/")[2]}" cannot be handled as a {kind}: strict decoding error: {fields}'
