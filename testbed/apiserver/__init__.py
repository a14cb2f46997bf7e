"""A small Kubernetes-style API server: store with watch + persistence, HTTP over a unix
socket, and a client. See ``store.py`` for the semantics and the error contract."""

from ..lazyexports import exports

__getattr__, __all__ = exports(__name__, {
    **dict.fromkeys(("AlreadyExists", "ApiError", "BadRequest", "Conflict", "Gone", "Invalid", "MethodNotAllowed",
                     "NotFound", "exception_from_status", "status_from_exception"), "errors"),
    **dict.fromkeys(("KINDS", "KindInfo", "kind_info"), "kinds"),
    "MemoryStore": "memory",
    **dict.fromkeys(("ADDED", "DELETED", "ERROR", "MODIFIED", "NoopAdmission", "Store", "Watch"), "store"),
})
