"""Kubernetes objects for the testbed: manifests, defaulting/validation with the API
server's messages, ClusterIP/NodePort allocation, admission, label selectors, the
EndpointSlice controller's decisions and a small scheduler.  All pure; objects are
JSON-shaped dicts as ``kubectl get -o json`` shows them."""

from .admission import Admission, AdmissionConfig
from .errors import AlreadyExists, Conflict, FieldError, InternalError, Invalid, ManifestError, NotFound
from .manifests import Manifest, Source, load_file, load_paths, load_string, source_of

__all__ = [
    "Admission",
    "AdmissionConfig",
    "AlreadyExists",
    "Conflict",
    "FieldError",
    "InternalError",
    "Invalid",
    "Manifest",
    "ManifestError",
    "NotFound",
    "Source",
    "load_file",
    "load_paths",
    "load_string",
    "source_of",
]
