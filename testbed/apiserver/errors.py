"""API errors and their mapping to/from Kubernetes ``Status`` objects.

The contract (also described at the top of ``store.py``): *any* exception that has an
``int`` attribute ``code`` (the HTTP status) and a ``str`` attribute ``reason`` (a
Kubernetes ``StatusReason`` such as ``NotFound``) is an API error; ``str(exc)`` is the
message shown to clients. An optional ``details`` dict (or method returning one) becomes
``Status.details``; an optional ``to_status()`` method may supply the whole Status.
This is how errors raised by an admission plugin (``testbed.k8s.errors``) reach HTTP
clients without this package importing them. Everything else is a 500 InternalError.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Base class of the errors defined here; ``code``/``reason`` follow the contract."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None,
                 details: dict | None = None, status: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        self.details = details or {}
        self.status = status  # the Status object this error was decoded from (client side)


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class Gone(ApiError):
    """410: the requested resourceVersion is older than the retained history."""

    code, reason = 410, "Expired"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"


class InternalError(ApiError):
    code, reason = 500, "InternalError"


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


# --- messages in the API server's wording ------------------------------------------------

def _details(plural: str, name: str, group: str = "") -> dict:
    d = {"name": name, "kind": plural}
    if group:
        d["group"] = group
    return d


def not_found(plural: str, name: str, group: str = "") -> NotFound:
    res = f"{plural}.{group}" if group else plural
    return NotFound(f'{res} "{name}" not found', details=_details(plural, name, group))


def already_exists(plural: str, name: str, group: str = "") -> AlreadyExists:
    res = f"{plural}.{group}" if group else plural
    return AlreadyExists(f'{res} "{name}" already exists', details=_details(plural, name, group))


def conflict(plural: str, name: str, group: str = "") -> Conflict:
    res = f"{plural}.{group}" if group else plural
    return Conflict(
        f'Operation cannot be fulfilled on {res} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details=_details(plural, name, group))


def precondition_failed(plural: str, name: str, what: str, want: str, have: str,
                        group: str = "") -> Conflict:
    res = f"{plural}.{group}" if group else plural
    return Conflict(
        f'Operation cannot be fulfilled on {res} "{name}": Precondition failed: '
        f"{what}: {want}, {what} in object meta: {have}",
        details=_details(plural, name, group))


def too_old(requested: int, oldest: int) -> Gone:
    return Gone(f"too old resource version: {requested} ({oldest})")


# --- Status <-> exception ----------------------------------------------------------------

def is_api_error(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "code", None), int) and isinstance(getattr(exc, "reason", None), str)


def status_from_exception(exc: BaseException) -> dict:
    """A ``Status`` object (failure) for *exc*, following the contract above. An API error
    with a ``to_status()`` method returning a dict (``testbed.k8s.errors``) provides its own
    Status (e.g. with ``details.causes``)."""
    to_status = getattr(exc, "to_status", None)
    if is_api_error(exc) and callable(to_status):
        try:
            st = to_status()
        except Exception:  # noqa: BLE001 - fall back to building one
            st = None
        if isinstance(st, dict) and isinstance(st.get("code"), int):
            return st
    if is_api_error(exc):
        code, reason, message = exc.code, exc.reason, str(exc)
    else:
        code, reason = 500, "InternalError"
        message = f"Internal error occurred: {type(exc).__name__}: {exc}"
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    details = getattr(exc, "details", None)
    if callable(details):
        try:
            details = details()
        except Exception:  # noqa: BLE001
            details = None
    if isinstance(details, dict) and details:
        status["details"] = dict(details)
    return status


_BY_REASON = {cls.reason: cls for cls in (
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, AlreadyExists, Conflict,
    Gone, UnsupportedMediaType, Invalid, TooManyRequests, InternalError, ServiceUnavailable)}
_BY_REASON["Gone"] = Gone
_BY_CODE = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
            405: MethodNotAllowed, 409: Conflict, 410: Gone, 415: UnsupportedMediaType,
            422: Invalid, 429: TooManyRequests, 500: InternalError, 503: ServiceUnavailable}


def exception_from_status(status: dict, http_code: int | None = None) -> ApiError:
    """The inverse of :func:`status_from_exception` (used by the client)."""
    code = status.get("code") or http_code or 500
    reason = status.get("reason") or ""
    message = status.get("message") or reason or f"HTTP {code}"
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code) or ApiError
    return cls(message, code=int(code), reason=reason or cls.reason,
               details=status.get("details"), status=status)
