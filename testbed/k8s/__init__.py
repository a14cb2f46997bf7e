"""Kubernetes objects for the testbed: manifests, defaulting/validation with the API
server's messages, ClusterIP/NodePort allocation, admission, label selectors, the
EndpointSlice controller's decisions and a small scheduler.  All pure; objects are
JSON-shaped dicts as ``kubectl get -o json`` shows them."""

from ..lazyexports import exports

__getattr__, __all__ = exports(__name__, {
    **dict.fromkeys(("Admission", "AdmissionConfig"), "admission"),
    **dict.fromkeys(("AlreadyExists", "Conflict", "FieldError", "InternalError", "Invalid", "ManifestError",
                     "NotFound"), "errors"),
    **dict.fromkeys(("Manifest", "Source", "load_file", "load_paths", "load_string", "source_of"), "manifests"),
})
