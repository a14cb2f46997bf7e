"""Validation as the Kubernetes API server does it, one function per rule, one module per
kind family: :mod:`.service`, :mod:`.pod`, :mod:`.apps` (Deployment, ReplicaSet),
:mod:`.discovery` (EndpointSlice, Endpoints); the field-level validators they share live in
:mod:`testbed.k8s.fields`.

``validate(obj)`` and ``validate_update(new, old)`` run every rule for an (already defaulted
and type-checked) object of any kind and return a list of
:class:`~testbed.k8s.errors.FieldError`.
"""

from __future__ import annotations

from typing import Callable

from ..fields import (
    ErrorList,
    name_is_dns_label,
    validate_object_meta,
    validate_object_meta_update,
)
from .apps import (
    validate_deployment,
    validate_deployment_update,
    validate_replicaset,
    validate_replicaset_update,
)
from .discovery import validate_endpoints, validate_endpointslice, validate_endpointslice_update
from .pod import validate_pod, validate_pod_update
from .service import validate_service, validate_service_update

def validate_namespace(ns: dict) -> ErrorList:
    return validate_object_meta(ns.get("metadata") or {}, False, name_is_dns_label)


# --- dispatch ---------------------------------------------------------------------

VALIDATE_CREATE: dict[str, Callable[[dict], ErrorList]] = {
    "Namespace": validate_namespace,
    "Pod": validate_pod,
    "Service": validate_service,
    "Endpoints": validate_endpoints,
    "EndpointSlice": validate_endpointslice,
    "Deployment": validate_deployment,
    "ReplicaSet": validate_replicaset,
}


def _generic_update(validate: Callable[[dict], ErrorList]) -> Callable[[dict, dict], ErrorList]:
    def update(new: dict, old: dict) -> ErrorList:
        return validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {}) + validate(new)

    return update


VALIDATE_UPDATE: dict[str, Callable[[dict, dict], ErrorList]] = {
    "Namespace": _generic_update(validate_namespace),
    "Pod": validate_pod_update,
    "Service": validate_service_update,
    "Endpoints": _generic_update(validate_endpoints),
    "EndpointSlice": validate_endpointslice_update,
    "Deployment": validate_deployment_update,
    "ReplicaSet": validate_replicaset_update,
}


def validate(obj: dict) -> ErrorList:
    fn = VALIDATE_CREATE.get(obj.get("kind", ""))
    return fn(obj) if fn else []


def validate_update(new: dict, old: dict) -> ErrorList:
    fn = VALIDATE_UPDATE.get(new.get("kind", ""))
    return fn(new, old) if fn else []
