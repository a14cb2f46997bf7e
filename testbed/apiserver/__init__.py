"""A small Kubernetes-style API server: store with watch + persistence, HTTP over a unix
socket, and a client. See ``store.py`` for the semantics and the error contract."""

from .errors import (AlreadyExists, ApiError, BadRequest, Conflict, Gone, Invalid,
                     MethodNotAllowed, NotFound, exception_from_status, status_from_exception)
from .kinds import KINDS, KindInfo, kind_info
from .memory import MemoryStore
from .store import ADDED, DELETED, ERROR, MODIFIED, NoopAdmission, Store, Watch

__all__ = [
    "ADDED", "DELETED", "ERROR", "MODIFIED", "AlreadyExists", "ApiError", "BadRequest",
    "Conflict", "Gone", "Invalid", "KINDS", "KindInfo", "MemoryStore", "MethodNotAllowed",
    "NoopAdmission", "NotFound", "Store", "Watch", "exception_from_status", "kind_info",
    "status_from_exception",
]
