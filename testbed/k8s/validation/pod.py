"""Pod and pod-spec validation (``pkg/apis/core/validation``: ``ValidatePodCreate``,
``ValidatePodSpec``, ``ValidatePodUpdate``)."""

from __future__ import annotations

from typing import Any

from .. import errors as fe
from ..fields import (
    ErrorList,
    is_int,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns_subdomain,
    spec_of,
    validate_dns1123_label,
    validate_labels,
    validate_nonnegative,
    validate_object_meta,
    validate_object_meta_update,
)
from .service import SUPPORTED_PORT_PROTOCOLS, validate_port_num_or_name

# --- Pod (ValidatePodCreate / ValidatePodSpec) ------------------------------------

SUPPORTED_RESTART_POLICIES = ["Always", "OnFailure", "Never"]  # upstream order, not sorted
SUPPORTED_DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
SUPPORTED_PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
SUPPORTED_HTTP_SCHEMES = ["HTTP", "HTTPS"]


def validate_container_ports(ports: list, path: str) -> ErrorList:
    """Container ports: IANA_SVC_NAME names (<= 15 chars, unique), 1..65535, protocol."""
    errs: ErrorList = []
    names: set = set()
    for i, port in enumerate(ports or []):
        ip = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs.extend(fe.invalid(f"{ip}.name", name, m) for m in msgs)
            elif name in names:
                errs.append(fe.duplicate(f"{ip}.name", name))
            else:
                names.add(name)
        cp = port.get("containerPort", 0)
        if not cp:
            errs.append(fe.required(f"{ip}.containerPort"))
        else:
            errs.extend(fe.invalid(f"{ip}.containerPort", cp, m) for m in is_valid_port_num(cp))
        hp = port.get("hostPort", 0)
        if hp:
            errs.extend(fe.invalid(f"{ip}.hostPort", hp, m) for m in is_valid_port_num(hp))
        proto = port.get("protocol") or ""
        if not proto:
            errs.append(fe.required(f"{ip}.protocol"))
        elif proto not in SUPPORTED_PORT_PROTOCOLS:
            errs.append(fe.not_supported(f"{ip}.protocol", proto, SUPPORTED_PORT_PROTOCOLS))
    return errs


def validate_probe_handler(probe: dict, path: str) -> ErrorList:
    errs: ErrorList = []
    n = 0
    for kind in ("exec", "httpGet", "tcpSocket", "grpc"):
        h = probe.get(kind)
        if h is None:
            continue
        if n > 0:
            errs.append(fe.forbidden(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        n += 1
        hp = f"{path}.{kind}"
        if kind == "exec":
            if not h.get("command"):
                errs.append(fe.required(f"{hp}.command"))
        elif kind == "httpGet":
            if not h.get("path"):
                errs.append(fe.required(f"{hp}.path"))
            errs.extend(validate_port_num_or_name(h.get("port", 0), f"{hp}.port"))
            scheme = h.get("scheme") or ""
            if scheme not in SUPPORTED_HTTP_SCHEMES:
                errs.append(fe.not_supported(f"{hp}.scheme", scheme, SUPPORTED_HTTP_SCHEMES))
        elif kind == "tcpSocket":
            errs.extend(validate_port_num_or_name(h.get("port", 0), f"{hp}.port"))
        elif kind == "grpc":
            errs.extend(fe.invalid(f"{hp}.port", h.get("port"), m) for m in is_valid_port_num(h.get("port")))
    if n == 0:
        errs.append(fe.required(path, "must specify a handler type"))
    return errs


def validate_probe(probe: dict | None, path: str, must_succeed_once: bool = False) -> ErrorList:
    """Probe shape: exactly one handler, non-negative timings; liveness/startup successThreshold == 1."""
    if probe is None:
        return []
    errs = validate_probe_handler(probe, path)
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs.extend(validate_nonnegative(probe.get(f), f"{path}.{f}"))
    if must_succeed_once and probe.get("successThreshold") not in (None, 1):
        errs.append(fe.invalid(f"{path}.successThreshold", probe.get("successThreshold"), "must be 1"))
    return errs


def validate_container(ctr: dict, path: str, names: set, is_pod: bool, host_network: bool) -> ErrorList:
    errs: ErrorList = []
    name = ctr.get("name") or ""
    if not name:
        errs.append(fe.required(f"{path}.name"))
    else:
        errs.extend(validate_dns1123_label(name, f"{path}.name"))
        if name in names:
            errs.append(fe.duplicate(f"{path}.name", name))
        names.add(name)
    image = ctr.get("image") or ""
    if is_pod and not image:
        errs.append(fe.required(f"{path}.image"))
    elif image != image.strip():
        errs.append(fe.invalid(f"{path}.image", image, "must not have leading or trailing whitespace"))
    pp = ctr.get("imagePullPolicy") or ""
    if not pp:
        errs.append(fe.required(f"{path}.imagePullPolicy"))
    elif pp not in SUPPORTED_PULL_POLICIES:
        errs.append(fe.not_supported(f"{path}.imagePullPolicy", pp, SUPPORTED_PULL_POLICIES))
    errs.extend(validate_container_ports(ctr.get("ports"), f"{path}.ports"))
    if host_network:
        for i, p in enumerate(ctr.get("ports") or []):
            if p.get("hostPort") != p.get("containerPort"):
                errs.append(
                    fe.invalid(f"{path}.ports[{i}].hostPort", p.get("hostPort"), "must match `containerPort` when `hostNetwork` is true")
                )
    errs.extend(validate_probe(ctr.get("livenessProbe"), f"{path}.livenessProbe", must_succeed_once=True))
    errs.extend(validate_probe(ctr.get("readinessProbe"), f"{path}.readinessProbe"))
    errs.extend(validate_probe(ctr.get("startupProbe"), f"{path}.startupProbe", must_succeed_once=True))
    return errs


def validate_restart_policy(policy: Any, path: str) -> ErrorList:
    if policy in SUPPORTED_RESTART_POLICIES:
        return []
    if not policy:
        return [fe.required(path)]
    return [fe.not_supported(path, policy, SUPPORTED_RESTART_POLICIES)]


def validate_dns_policy(spec: dict, path: str) -> ErrorList:
    pol = spec.get("dnsPolicy") or ""
    if not pol:
        return [fe.required(f"{path}.dnsPolicy")]
    if pol not in SUPPORTED_DNS_POLICIES:
        return [fe.not_supported(f"{path}.dnsPolicy", pol, SUPPORTED_DNS_POLICIES)]
    if pol == "None" and spec.get("dnsConfig") is None:
        return [fe.required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None")]
    return []


def validate_pod_spec(spec: dict, path: str = "spec", is_pod: bool = True) -> ErrorList:
    errs: ErrorList = []
    host_network = bool(spec.get("hostNetwork"))
    containers = spec.get("containers") or []
    names: set = set()
    if not containers:
        errs.append(fe.required(f"{path}.containers"))
    for i, c in enumerate(spec.get("initContainers") or []):
        errs.extend(validate_container(c, f"{path}.initContainers[{i}]", names, is_pod, host_network))
    for i, c in enumerate(containers):
        errs.extend(validate_container(c, f"{path}.containers[{i}]", names, is_pod, host_network))
    errs.extend(validate_restart_policy(spec.get("restartPolicy"), f"{path}.restartPolicy"))
    errs.extend(validate_dns_policy(spec, path))
    errs.extend(validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector"))
    node = spec.get("nodeName") or ""
    if node:
        errs.extend(fe.invalid(f"{path}.nodeName", node, m) for m in name_is_dns_subdomain(node))
    errs.extend(validate_nonnegative(spec.get("terminationGracePeriodSeconds"), f"{path}.terminationGracePeriodSeconds"))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not is_int(ads) or ads <= 0):
        errs.append(fe.invalid(f"{path}.activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive"))
    return errs


def validate_pod(pod: dict) -> ErrorList:
    errs = validate_object_meta(pod.get("metadata") or {}, True, name_is_dns_subdomain)
    return errs + validate_pod_spec(spec_of(pod), "spec", is_pod=True)


_POD_MUTABLE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def validate_pod_update(new: dict, old: dict) -> ErrorList:
    """Pod spec is immutable except images, activeDeadlineSeconds, tolerations additions;
    ``nodeName`` may go from unset to set (the testbed's stand-in for the binding subresource)."""
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    ns, os_ = dict(spec_of(new)), dict(spec_of(old))
    if not os_.get("nodeName") and ns.get("nodeName"):
        os_["nodeName"] = ns["nodeName"]
    for key in ("containers", "initContainers"):
        a, b = [dict(c) for c in ns.get(key) or []], [dict(c) for c in os_.get(key) or []]
        if len(a) == len(b):
            for x, y in zip(a, b):
                x.pop("image", None)
                y.pop("image", None)
        ns[key], os_[key] = a, b
    for key in ("activeDeadlineSeconds", "tolerations"):
        ns.pop(key, None)
        os_.pop(key, None)
    if ns != os_:
        errs.append(fe.forbidden("spec", _POD_MUTABLE_MSG))
    return errs + validate_pod_spec(spec_of(new), "spec", is_pod=True)
