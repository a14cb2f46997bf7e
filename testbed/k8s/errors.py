"""API errors worded like the Kubernetes API server's.

Field errors follow ``k8s.io/apimachinery/pkg/util/validation/field``: every
:class:`FieldError` renders as ``<field>: <body>`` where the body is e.g.
``Invalid value: 80: <detail>``, ``Required value``, ``Unsupported value: "FOO":
supported values: "SCTP", "TCP", "UDP"``.  Several causes are joined like
``utilerrors.Aggregate`` does: ``[cause1, cause2]`` (duplicates dropped).

Bad values are rendered like a current (v1.34+) API server: numbers and bools
plainly, strings quoted, composite values (lists, maps) as compact JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

# Error types (field.ErrorType) and their rendering (ErrorType.String()).
NOT_FOUND = "FieldValueNotFound"
REQUIRED = "FieldValueRequired"
DUPLICATE = "FieldValueDuplicate"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
INTERNAL = "InternalError"

_TYPE_TEXT = {
    NOT_FOUND: "Not found",
    REQUIRED: "Required value",
    DUPLICATE: "Duplicate value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    INTERNAL: "Internal error",
}
# Types whose body never shows the value.
_NO_VALUE = {REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL}

OPTIMISTIC_LOCK_MSG = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


class Stringer(str):
    """A value the Go side renders through its ``String()`` method (unquoted),
    e.g. an ``intstr.IntOrString``."""


class GoStruct(dict):
    """A Go struct rendered as JSON with its fields in declaration order (maps are
    rendered with sorted keys, like ``encoding/json``)."""


def _json(value: Any, sort: bool) -> str:
    def conv(v: Any) -> Any:
        if isinstance(v, GoStruct):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, dict):
            return {str(k): conv(v[k]) for k in (sorted(v, key=str) if sort else v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, Stringer):
            return str(v)
        return v

    text = json.dumps(conv(value), separators=(",", ":"), ensure_ascii=False)
    # encoding/json escapes these for HTML safety.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def format_value(value: Any) -> str:
    """Render a bad value as ``field.Error.ErrorBody`` does."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Stringer):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return _json(value, sort=True)


@dataclass(frozen=True)
class FieldError:
    """One field-level validation error (``field.Error``)."""

    type: str
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        """``ErrorBody()``: the message without the field path (a StatusCause message)."""
        text = _TYPE_TEXT[self.type]
        if self.type not in _NO_VALUE and not (self.type == TOO_MANY and self.value is None):
            text = f"{text}: {format_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    # A FieldError also behaves as a (field_path, message) pair.
    def __iter__(self):
        return iter((self.field, self.body()))


# Constructors named like upstream's field.* helpers.
def required(path: str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, path, "", detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, path, value, detail)


def not_supported(path: str, value: Any, valid: Iterable[str]) -> FieldError:
    valid = list(valid)
    detail = ("supported values: " + ", ".join(json.dumps(v) for v in valid)) if valid else ""
    return FieldError(NOT_SUPPORTED, path, value, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, path, "", detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(DUPLICATE, path, value, "")


def too_long(path: str, value: Any, max_length: int) -> FieldError:
    return FieldError(TOO_LONG, path, value, f"must have at most {max_length} bytes")


def too_many(path: str, actual: int, maximum: int) -> FieldError:
    return FieldError(TOO_MANY, path, actual, f"must have at most {maximum} items")


def not_found(path: str, value: Any) -> FieldError:
    return FieldError(NOT_FOUND, path, value, "")


def aggregate(messages: Iterable[str]) -> str:
    """``utilerrors.NewAggregate(...).Error()`` over already-rendered messages."""
    seen: list[str] = []
    for m in messages:
        if m not in seen:
            seen.append(m)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


class APIError(Exception):
    """Base of API-status errors; ``to_status()`` gives the ``metav1.Status`` body."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def details(self) -> dict:
        return {}

    def to_status(self) -> dict:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details = self.details()
        if details:
            status["details"] = details
        return status


def _split_kind(kind: str, group: str) -> tuple[str, str]:
    if not group and "." in kind:
        kind, group = kind.split(".", 1)
    return kind, group


class Invalid(APIError):
    """``errors.NewInvalid``: ``Service "web" is invalid: <aggregate of causes>``.

    ``causes`` are :class:`FieldError` objects or ``(field_path, message)`` pairs where
    the message is the error body (``Invalid value: 80: ...``).  ``kind`` may be
    qualified (``Deployment.apps``) or given with ``group=``.
    """

    code = 422
    reason = "Invalid"

    def __init__(self, kind: str, name: str, causes: Iterable[Any], group: str = ""):
        self.kind, self.group = _split_kind(kind, group)
        self.name = name
        self.errors: list[FieldError] = []
        self.causes: list[tuple[str, str]] = []
        for c in causes:
            if isinstance(c, FieldError):
                self.errors.append(c)
                self.causes.append((c.field, c.body()))
            else:
                path, msg = c
                self.causes.append((path, msg))
        qualified = f"{self.kind}.{self.group}" if self.group else self.kind
        rendered = [f"{p}: {m}" if p else m for p, m in self.causes]
        super().__init__(f'{qualified} "{name}" is invalid: {aggregate(rendered)}')

    def details(self) -> dict:
        causes = []
        seen = set()
        for i, (path, msg) in enumerate(self.causes):
            if (path, msg) in seen:
                continue
            seen.add((path, msg))
            reason = self.errors[i].type if i < len(self.errors) else INVALID
            causes.append({"reason": reason, "message": msg, "field": path})
        d = {"name": self.name, "kind": self.kind, "causes": causes}
        if self.group:
            d["group"] = self.group
        return d


def _resource(kind_or_resource: str, group: str) -> tuple[str, str]:
    from . import kinds

    res, group = _split_kind(kind_or_resource, group)
    info = kinds.by_kind(res)
    if info is not None:
        return info.resource, group or info.group
    return res, group


class _ResourceError(APIError):
    def __init__(self, resource: str, name: str, group: str, message: str):
        self.resource, self.group = resource, group
        self.name = name
        super().__init__(message)

    @property
    def qualified_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def details(self) -> dict:
        d = {"name": self.name, "kind": self.resource}
        if self.group:
            d["group"] = self.group
        return d


class AlreadyExists(_ResourceError):
    """``services "web" already exists`` (``kind_or_resource`` may be ``Service``)."""

    code = 409
    reason = "AlreadyExists"

    def __init__(self, kind_or_resource: str, name: str, group: str = ""):
        res, grp = _resource(kind_or_resource, group)
        qr = f"{res}.{grp}" if grp else res
        super().__init__(res, name, grp, f'{qr} "{name}" already exists')


class NotFound(_ResourceError):
    """``services "web" not found``."""

    code = 404
    reason = "NotFound"

    def __init__(self, kind_or_resource: str, name: str, group: str = ""):
        res, grp = _resource(kind_or_resource, group)
        qr = f"{res}.{grp}" if grp else res
        super().__init__(res, name, grp, f'{qr} "{name}" not found')


class Conflict(_ResourceError):
    """``Operation cannot be fulfilled on services "web": the object has been modified; ...``."""

    code = 409
    reason = "Conflict"

    def __init__(self, kind_or_resource: str, name: str, err: str = OPTIMISTIC_LOCK_MSG, group: str = ""):
        res, grp = _resource(kind_or_resource, group)
        qr = f"{res}.{grp}" if grp else res
        super().__init__(res, name, grp, f'Operation cannot be fulfilled on {qr} "{name}": {err}')


class BadRequest(APIError):
    code = 400
    reason = "BadRequest"


class InternalError(APIError):
    """``errors.NewInternalError``: ``Internal error occurred: <err>``."""

    code = 500
    reason = "InternalError"

    def __init__(self, err: str):
        self.err = err
        super().__init__(f"Internal error occurred: {err}")

    def details(self) -> dict:
        return {"causes": [{"message": self.err}]}


class ManifestError(ValueError):
    """A manifest file could not be loaded; the message names file and document."""
