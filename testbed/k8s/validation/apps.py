"""Deployment and ReplicaSet validation (``pkg/apis/apps/validation``)."""

from __future__ import annotations

from typing import Any

from .. import errors as fe
from .. import selectors
from ..errors import Stringer
from ..fields import (
    ErrorList,
    is_int,
    is_valid_percent,
    name_is_dns_subdomain,
    spec_of,
    validate_annotations,
    validate_immutable,
    validate_label_selector,
    validate_labels,
    validate_nonnegative,
    validate_object_meta,
    validate_object_meta_update,
)
from .pod import validate_pod_spec

# --- Deployment / ReplicaSet (pkg/apis/apps/validation) ---------------------------


def _selector_matches(selector: dict, labels: dict) -> bool:
    try:
        return selectors.from_label_selector(selector).matches(labels)
    except selectors.SelectorError:
        return False


def validate_workload_selector(spec: dict, path: str) -> ErrorList:
    """``spec.selector`` is required and may not be empty."""
    sel = spec.get("selector")
    if sel is None:
        return [fe.required(f"{path}.selector")]
    errs = validate_label_selector(sel, f"{path}.selector")
    if not sel.get("matchLabels") and not sel.get("matchExpressions"):
        errs.append(fe.invalid(f"{path}.selector", sel, "empty selector is invalid for deployment"))
    return errs


def validate_pod_template_for_replicaset(spec: dict, path: str) -> ErrorList:
    """Template labels must match the selector; template restartPolicy must be Always."""
    errs: ErrorList = []
    tmpl = spec.get("template")
    tp = f"{path}.template"
    if not isinstance(tmpl, dict):
        return [fe.required(tp)]
    sel = spec.get("selector")
    try:
        s = selectors.from_label_selector(sel)
    except selectors.SelectorError:
        return [fe.invalid(f"{path}.selector", sel, "invalid label selector")]
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel is not None and not s.empty() and not s.matches(labels):
        errs.append(fe.invalid(f"{tp}.metadata.labels", labels, "`selector` does not match template `labels`"))
    meta = tmpl.get("metadata") or {}
    errs.extend(validate_labels(meta.get("labels"), f"{tp}.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), f"{tp}.annotations"))
    pspec = tmpl.get("spec") or {}
    errs.extend(validate_pod_spec(pspec, f"{tp}.spec", is_pod=False))
    if pspec.get("restartPolicy") != "Always":
        errs.append(fe.not_supported(f"{tp}.spec.restartPolicy", pspec.get("restartPolicy") or "", ["Always"]))
    if pspec.get("activeDeadlineSeconds") is not None:
        errs.append(
            fe.invalid(f"{tp}.spec.activeDeadlineSeconds", pspec["activeDeadlineSeconds"], "activeDeadlineSeconds in ReplicaSet is not Supported")
        )
    return errs


def _int_or_percent(v: Any) -> Any:
    return Stringer(v) if isinstance(v, str) else v


def validate_positive_int_or_percent(v: Any, path: str) -> ErrorList:
    if isinstance(v, str):
        return [fe.invalid(path, Stringer(v), m) for m in is_valid_percent(v)]
    if is_int(v):
        return validate_nonnegative(v, path)
    return [fe.invalid(path, v, "must be an integer or percentage (e.g '5%')")]


def _int_or_percent_value(v: Any) -> int:
    if isinstance(v, str):
        if is_valid_percent(v):
            return 0
        return int(v[:-1])
    return v if is_int(v) else 0


def validate_rolling_update(ru: dict, path: str) -> ErrorList:
    """maxUnavailable/maxSurge: int >= 0 or 'N%'; not both 0; maxUnavailable <= 100%."""
    mu = ru.get("maxUnavailable", 0)
    ms = ru.get("maxSurge", 0)
    errs = validate_positive_int_or_percent(mu, f"{path}.maxUnavailable")
    errs += validate_positive_int_or_percent(ms, f"{path}.maxSurge")
    if _int_or_percent_value(mu) == 0 and _int_or_percent_value(ms) == 0:
        errs.append(fe.invalid(f"{path}.maxUnavailable", _int_or_percent(mu), "may not be 0 when `maxSurge` is 0"))
    if isinstance(mu, str) and not is_valid_percent(mu) and int(mu[:-1]) > 100:
        errs.append(fe.invalid(f"{path}.maxUnavailable", Stringer(mu), "must not be greater than 100%"))
    return errs


def validate_deployment_strategy(strategy: dict, path: str) -> ErrorList:
    t = strategy.get("type")
    if t == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            return [fe.forbidden(f"{path}.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if t == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if ru is None:
            return [fe.required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
        return validate_rolling_update(ru, f"{path}.rollingUpdate")
    return [fe.not_supported(f"{path}.type", t or "", ["Recreate", "RollingUpdate"])]


def validate_replicas(spec: dict, path: str) -> ErrorList:
    return validate_nonnegative(spec.get("replicas"), f"{path}.replicas")


def validate_deployment(dep: dict) -> ErrorList:
    spec = spec_of(dep)
    errs = validate_object_meta(dep.get("metadata") or {}, True, name_is_dns_subdomain)
    errs += validate_replicas(spec, "spec")
    errs += validate_workload_selector(spec, "spec")
    errs += validate_pod_template_for_replicaset(spec, "spec")
    errs += validate_deployment_strategy(spec.get("strategy") or {}, "spec.strategy")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += validate_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None:
        errs += validate_nonnegative(pds, "spec.progressDeadlineSeconds")
        if is_int(pds) and pds <= (spec.get("minReadySeconds") or 0):
            errs.append(fe.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return errs


def validate_replicaset(rs: dict) -> ErrorList:
    spec = spec_of(rs)
    errs = validate_object_meta(rs.get("metadata") or {}, True, name_is_dns_subdomain)
    errs += validate_replicas(spec, "spec")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += validate_workload_selector(spec, "spec")
    errs += validate_pod_template_for_replicaset(spec, "spec")
    return errs


def validate_selector_immutable(new: dict, old: dict) -> ErrorList:
    return validate_immutable(spec_of(new).get("selector"), spec_of(old).get("selector"), "spec.selector")


def validate_deployment_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_selector_immutable(new, old)
    return errs + validate_deployment(new)


def validate_replicaset_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_selector_immutable(new, old)
    return errs + validate_replicaset(new)
