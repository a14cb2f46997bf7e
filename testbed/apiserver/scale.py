"""The ``scale`` subresource of Deployments and ReplicaSets (an ``autoscaling/v1`` Scale),
which ``kubectl scale`` reads and writes."""

from __future__ import annotations

from ..kubectl.printers import format_label_selector
from .errors import BadRequest, Invalid

SCALE_KINDS = {"Deployment", "ReplicaSet"}


def to_scale(obj: dict) -> dict:
    m = obj["metadata"]
    sel = format_label_selector((obj.get("spec") or {}).get("selector"))
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in m},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": "" if sel == "<none>" else sel}}


def with_replicas(obj: dict, scale: dict) -> dict:
    """*obj* with the replicas (and resourceVersion precondition) of *scale*."""
    if not isinstance(scale, dict) or scale.get("kind", "Scale") != "Scale":
        raise BadRequest("the body must be an autoscaling/v1 Scale")
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise Invalid(f'Scale.autoscaling "{obj["metadata"]["name"]}" is invalid: spec.replicas: Invalid value: '
                      f"{replicas!r}: must be greater than or equal to 0")
    out = dict(obj, spec=dict(obj.get("spec") or {}, replicas=replicas), metadata=dict(obj["metadata"]))
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv:
        out["metadata"]["resourceVersion"] = rv
    return out
