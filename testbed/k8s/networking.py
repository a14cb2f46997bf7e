"""Validation and defaulting of the kinds an Ingress controller reads: ``networking.k8s.io/v1``
Ingress and IngressClass (``pkg/apis/networking/validation``), ``v1`` Secret and ConfigMap
(``pkg/apis/core/validation``), with upstream's messages and field paths.

Kept apart from :mod:`testbed.k8s.validation` (which holds the core formats this module
reuses) so the Ingress family has one home; :func:`validate` / :func:`validate_update` /
:func:`apply_defaults` dispatch on ``kind`` and return nothing for other kinds.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable

from . import errors as fe
from .fields import (
    DNS1123_SUBDOMAIN_FMT,
    FIELD_IMMUTABLE_MSG,
    ErrorList,
    is_dns1123_subdomain,
    is_valid_port_name,
    is_valid_port_num,
    max_len_error,
    name_is_dns_subdomain,
    parse_ip_sloppy,
    regex_error,
    validate_object_meta,
    validate_object_meta_update,
    name_is_dns1035_label,
)

# --- formats ------------------------------------------------------------------------

WILDCARD_DNS1123_SUBDOMAIN_FMT = "\\*\\." + DNS1123_SUBDOMAIN_FMT
WILDCARD_DNS1123_SUBDOMAIN_ERR = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character"
)
CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_MAP_KEY_ERR = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_wildcard = re.compile("^" + WILDCARD_DNS1123_SUBDOMAIN_FMT + "$")
_config_key = re.compile("^" + CONFIG_MAP_KEY_FMT + "$")
_dp_path = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")

SUPPORTED_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
INVALID_PATH_SEQUENCES = ["//", "/./", "/../", "%2f", "%2F"]
INVALID_PATH_SUFFIXES = ["/..", "/."]
MAX_LEN_INGRESS_CLASS_CONTROLLER = 250
MAX_SECRET_SIZE = 1024 * 1024

SECRET_TYPE_OPAQUE = "Opaque"
SECRET_TYPE_TLS = "kubernetes.io/tls"
TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY_KEY = "tls.key"


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _wildcard.match(value):
        errs.append(regex_error(WILDCARD_DNS1123_SUBDOMAIN_ERR, WILDCARD_DNS1123_SUBDOMAIN_FMT, "*.example.com"))
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _config_key.match(value):
        errs.append(regex_error(CONFIG_MAP_KEY_ERR, CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _host_errors(host: str) -> list[str]:
    return is_wildcard_dns1123_subdomain(host) if "*" in host else is_dns1123_subdomain(host)


def decode_data(value: Any) -> bytes | None:
    """The bytes of one ``data`` value (base64 in JSON), None when it is not valid base64."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


# --- Ingress --------------------------------------------------------------------------


def validate_ingress_backend(backend: Any, path: str) -> ErrorList:
    if not isinstance(backend, dict):
        return [fe.invalid(path, "", "resource or service backend is required")]
    service, resource = backend.get("service"), backend.get("resource")
    if service and resource:
        return [fe.invalid(path, "", "cannot set both resource and service backends")]
    if resource:
        errs = []
        if not isinstance(resource, dict) or not resource.get("kind"):
            errs.append(fe.required(f"{path}.resource.kind", ""))
        if not isinstance(resource, dict) or not resource.get("name"):
            errs.append(fe.required(f"{path}.resource.name", ""))
        return errs
    if not isinstance(service, dict):
        return [fe.invalid(path, "", "resource or service backend is required")]
    errs: ErrorList = []
    name = service.get("name") or ""
    if not name:
        errs.append(fe.required(f"{path}.service.name", ""))
    else:
        errs.extend(fe.invalid(f"{path}.service.name", name, m) for m in name_is_dns1035_label(name))
    port = service.get("port") if isinstance(service.get("port"), dict) else {}
    port_name, port_number = port.get("name") or "", port.get("number") or 0
    if port_name and port_number:
        errs.append(fe.invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs.extend(fe.invalid(f"{path}.service.port.name", port_name, m) for m in is_valid_port_name(port_name))
    elif port_number:
        errs.extend(fe.invalid(f"{path}.service.port.number", port_number, m) for m in is_valid_port_num(port_number))
    else:
        errs.append(fe.required(path, "port name or number is required"))
    return errs


def validate_http_ingress_path(p: dict, path: str) -> ErrorList:
    value = p.get("path") or ""
    path_type = p.get("pathType")
    errs: ErrorList = []
    if not path_type:
        errs.append(fe.required(f"{path}.pathType", "pathType must be specified"))
    elif path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(fe.invalid(f"{path}.path", value, "must be an absolute path"))
        if value:
            errs.extend(fe.invalid(f"{path}.path", value, f"must not contain '{s}'")
                        for s in INVALID_PATH_SEQUENCES if s in value)
            errs.extend(fe.invalid(f"{path}.path", value, f"cannot end with '{s}'")
                        for s in INVALID_PATH_SUFFIXES if value.endswith(s))
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(fe.invalid(f"{path}.path", value, "must be an absolute path"))
    else:
        errs.append(fe.not_supported(f"{path}.pathType", path_type, SUPPORTED_PATH_TYPES))
    errs.extend(validate_ingress_backend(p.get("backend"), f"{path}.backend"))
    return errs


def validate_ingress_rules(rules: list, path: str) -> ErrorList:
    errs: ErrorList = []
    for i, rule in enumerate(rules):
        rp = f"{path}[{i}]"
        rule = rule if isinstance(rule, dict) else {}
        host = rule.get("host") or ""
        if host:
            if parse_ip_sloppy(host) is not None:
                errs.append(fe.invalid(f"{rp}.host", host, "must be a DNS name, not an IP address"))
            errs.extend(fe.invalid(f"{rp}.host", host, m) for m in _host_errors(host))
        http = rule.get("http")
        if isinstance(http, dict):
            paths = http.get("paths") or []
            if not paths:
                errs.append(fe.required(f"{rp}.http.paths", ""))
            for j, p in enumerate(paths):
                errs.extend(validate_http_ingress_path(p if isinstance(p, dict) else {}, f"{rp}.http.paths[{j}]"))
    return errs


def validate_ingress_tls(tls: list, path: str) -> ErrorList:
    errs: ErrorList = []
    for i, t in enumerate(tls):
        t = t if isinstance(t, dict) else {}
        for j, host in enumerate(t.get("hosts") or []):
            errs.extend(fe.invalid(f"{path}[{i}].hosts[{j}]", host, m) for m in _host_errors(host))
        secret = t.get("secretName") or ""
        if secret:
            errs.extend(fe.invalid(f"{path}[{i}].secretName", secret, m) for m in name_is_dns_subdomain(secret))
    return errs


def validate_ingress(ing: dict) -> ErrorList:
    errs = validate_object_meta(ing.get("metadata") or {}, True, name_is_dns_subdomain)
    spec = ing.get("spec") if isinstance(ing.get("spec"), dict) else {}
    rules = spec.get("rules") or []
    default = spec.get("defaultBackend")
    if not rules and default is None:
        errs.append(fe.invalid("spec", spec, "either `defaultBackend` or `rules` must be specified"))
    if default is not None:
        errs.extend(validate_ingress_backend(default, "spec.defaultBackend"))
    errs.extend(validate_ingress_rules(rules, "spec.rules"))
    errs.extend(validate_ingress_tls(spec.get("tls") or [], "spec.tls"))
    cls = spec.get("ingressClassName")
    if cls is not None:
        errs.extend(fe.invalid("spec.ingressClassName", cls, m) for m in name_is_dns_subdomain(cls))
    return errs


def is_domain_prefixed_path(path: str, value: str) -> ErrorList:
    if not value:
        return [fe.required(path, "")]
    host, sep, rest = value.partition("/")
    if not sep or not host:
        return [fe.invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [fe.invalid(path, host, m) for m in is_dns1123_subdomain(host)]
    if not _dp_path.match(rest):
        errs.append(fe.invalid(path, rest, "Invalid path"))
    return errs


def validate_ingress_class(ic: dict) -> ErrorList:
    errs = validate_object_meta(ic.get("metadata") or {}, False, name_is_dns_subdomain)
    spec = ic.get("spec") if isinstance(ic.get("spec"), dict) else {}
    controller = spec.get("controller") or ""
    if len(controller) > MAX_LEN_INGRESS_CLASS_CONTROLLER:
        errs.append(fe.too_long("spec.controller", "", MAX_LEN_INGRESS_CLASS_CONTROLLER))
    errs.extend(is_domain_prefixed_path("spec.controller", controller))
    return errs


def validate_ingress_class_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    new_c = (new.get("spec") or {}).get("controller")
    if new_c != (old.get("spec") or {}).get("controller"):
        errs.append(fe.invalid("spec.controller", new_c, FIELD_IMMUTABLE_MSG))
    return errs + validate_ingress_class(new)


# --- Secret / ConfigMap -----------------------------------------------------------------


def validate_secret(secret: dict) -> ErrorList:
    errs = validate_object_meta(secret.get("metadata") or {}, True, name_is_dns_subdomain)
    data = secret.get("data") or {}
    total = 0
    for key, value in data.items():
        errs.extend(fe.invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        raw = decode_data(value)
        if raw is None:
            errs.append(fe.invalid(f"data[{key}]", "<value omitted>", "must be base64-encoded"))
        else:
            total += len(raw)
    if total > MAX_SECRET_SIZE:
        errs.append(fe.too_long("data", "", MAX_SECRET_SIZE))
    if secret.get("type") == SECRET_TYPE_TLS:
        for key in (TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY):
            if key not in data:
                errs.append(fe.required(f"data[{key}]", ""))
    return errs


def validate_secret_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    if new.get("type") != old.get("type"):
        errs.append(fe.invalid("type", new.get("type"), FIELD_IMMUTABLE_MSG))
    return errs + validate_secret(new)


def validate_config_map(cm: dict) -> ErrorList:
    errs = validate_object_meta(cm.get("metadata") or {}, True, name_is_dns_subdomain)
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    for key in data:
        errs.extend(fe.invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
    for key in binary:
        errs.extend(fe.invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key))
        if key in data:
            errs.append(fe.invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    return errs


def _generic_update(validate_fn: Callable[[dict], ErrorList]) -> Callable[[dict, dict], ErrorList]:
    def update(new: dict, old: dict) -> ErrorList:
        return validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {}) + validate_fn(new)
    return update


# --- defaulting ---------------------------------------------------------------------------


def default_secret(secret: dict) -> dict:
    """``stringData`` is write-only: its entries are merged into ``data`` (winning over the
    same key there) as upstream's conversion does; ``type`` defaults to Opaque."""
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = secret.get("data") if isinstance(secret.get("data"), dict) else {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        secret["data"] = data
    if not secret.get("type"):
        secret["type"] = SECRET_TYPE_OPAQUE
    return secret


def default_ingress(ing: dict) -> dict:
    ing.setdefault("status", {}).setdefault("loadBalancer", {})
    return ing


VALIDATE_CREATE: dict[str, Callable[[dict], ErrorList]] = {
    "Ingress": validate_ingress,
    "IngressClass": validate_ingress_class,
    "Secret": validate_secret,
    "ConfigMap": validate_config_map,
}
VALIDATE_UPDATE: dict[str, Callable[[dict, dict], ErrorList]] = {
    "Ingress": _generic_update(validate_ingress),
    "IngressClass": validate_ingress_class_update,
    "Secret": validate_secret_update,
    "ConfigMap": _generic_update(validate_config_map),
}
DEFAULTERS: dict[str, Callable[[dict], dict]] = {
    "Ingress": default_ingress,
    "Secret": default_secret,
}


def validate(obj: dict) -> ErrorList:
    fn = VALIDATE_CREATE.get(obj.get("kind", ""))
    return fn(obj) if fn else []


def validate_update(new: dict, old: dict) -> ErrorList:
    fn = VALIDATE_UPDATE.get(new.get("kind", ""))
    return fn(new, old) if fn else []
