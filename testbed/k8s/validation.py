"""Validation as the Kubernetes API server does it, one function per rule.

Messages, field paths and rule order follow upstream:
``k8s.io/apimachinery/pkg/util/validation`` (formats), ``pkg/apis/core/validation``
(Service, Pod, Endpoints, Namespace), ``pkg/apis/apps/validation`` (Deployment,
ReplicaSet), ``pkg/apis/discovery/validation`` (EndpointSlice) and
``apimachinery/pkg/apis/meta/v1/validation`` (labels, label selectors).

Every ``validate_*`` function returns a list of :class:`~testbed.k8s.errors.FieldError`;
the ``validate_<kind>`` entry points run all rules for an (already defaulted) object.
Objects are JSON-shaped dicts.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Iterable

from . import errors as fe
from .errors import FieldError, GoStruct, Stringer

ErrorList = list[FieldError]

# --- string formats (k8s.io/apimachinery/pkg/util/validation) ---------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
PERCENT_FMT = "[0-9]+%"
PERCENT_ERR = "a valid percent string must be a numeric string followed by an ending '%'"

_dns1123_label = re.compile("^" + DNS1123_LABEL_FMT + "$")
_dns1123_subdomain = re.compile("^" + DNS1123_SUBDOMAIN_FMT + "$")
_dns1035_label = re.compile("^" + DNS1035_LABEL_FMT + "$")
_qualified_name = re.compile("^" + QUALIFIED_NAME_FMT + "$")
_label_value = re.compile("^" + LABEL_VALUE_FMT + "$")
_percent = re.compile("^" + PERCENT_FMT + "$")
_port_name_charset = re.compile("^[-a-z0-9]+$")
_port_name_letter = re.compile("[a-z]")

IS_NEGATIVE_MSG = "must be greater than or equal to 0"
IS_NOT_POSITIVE_MSG = "must be greater than zero"
FIELD_IMMUTABLE_MSG = "field is immutable"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{ex}', "
    return msg + f"regex used for validation is '{fmt}')"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _dns1123_label.match(value):
        if _dns1123_subdomain.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _dns1123_subdomain.match(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _dns1035_label.match(value):
        errs.append(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """``IsQualifiedName`` / ``content.IsLabelKey``: optional DNS prefix + '/' + name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a valid label key "
            + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _qualified_name.match(name):
        errs.append("name part " + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _label_value.match(value):
        errs.append(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    if _is_int(port) and 1 <= port <= 65535:
        return []
    return [inclusive_range_error(1, 65535)]


def is_valid_port_name(port: str) -> list[str]:
    """``IsValidPortName``: an IANA_SVC_NAME (RFC 6335)."""
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _port_name_charset.match(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _port_name_letter.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_percent(value: str) -> list[str]:
    if not _percent.match(value):
        return [regex_error(PERCENT_ERR, PERCENT_FMT, "1%", "93%")]
    return []


def parse_ip_sloppy(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``netutils.ParseIPSloppy``: like Go's ``net.ParseIP`` (IPv4 leading zeros allowed)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        nums = [int(p, 10) for p in parts]
        if all(n <= 255 for n in nums):
            return ipaddress.IPv4Address(".".join(map(str, nums)))
    return None


def is_valid_ip(path: str, value: Any) -> ErrorList:
    if parse_ip_sloppy(value) is None:
        return [fe.invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def is_valid_ipv4_address(path: str, value: Any) -> ErrorList:
    ip = parse_ip_sloppy(value)
    if ip is None or ip.version != 4:
        return [fe.invalid(path, value, "must be a valid IPv4 address")]
    return []


def is_valid_ipv6_address(path: str, value: Any) -> ErrorList:
    ip = parse_ip_sloppy(value)
    if ip is None or ip.version != 6:
        return [fe.invalid(path, value, "must be a valid IPv6 address")]
    return []


def is_valid_cidr(path: str, value: Any) -> ErrorList:
    ok = isinstance(value, str) and "/" in value
    if ok:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            ok = False
    if not ok:
        return [fe.invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


def validate_endpoint_ip(value: str, path: str) -> ErrorList:
    """``ValidateEndpointIP``: used for endpoint addresses and Service externalIPs."""
    ip = parse_ip_sloppy(value)
    if ip is None:
        return [fe.invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(fe.invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(fe.invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local and not ip.is_multicast:
        errs.append(fe.invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    link_local_mc = (ip.version == 4 and ip in ipaddress.ip_network("224.0.0.0/24")) or (
        ip.version == 6 and ip.is_multicast and (int(ip) >> 112) & 0xF == 2
    )
    if link_local_mc:
        errs.append(fe.invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


# --- helpers for composite rules --------------------------------------------------


def validate_dns1123_label(value: str, path: str) -> ErrorList:
    return [fe.invalid(path, value, m) for m in is_dns1123_label(value)]


def validate_dns1123_subdomain(value: str, path: str) -> ErrorList:
    return [fe.invalid(path, value, m) for m in is_dns1123_subdomain(value)]


def validate_qualified_name(value: str, path: str) -> ErrorList:
    return [fe.invalid(path, value, m) for m in is_qualified_name(value)]


def validate_nonnegative(value: Any, path: str) -> ErrorList:
    if _is_int(value) and value < 0:
        return [fe.invalid(path, value, IS_NEGATIVE_MSG)]
    if value is not None and not _is_int(value):
        return [fe.invalid(path, value, "must be an integer")]
    return []


def validate_immutable(new: Any, old: Any, path: str) -> ErrorList:
    if new != old:
        return [fe.invalid(path, new, FIELD_IMMUTABLE_MSG)]
    return []


def _mask_trailing_dash(name: str) -> str:
    if len(name) > 1 and name.endswith("-"):
        return name[:-1] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


NameFn = Callable[[str, bool], list[str]]


# --- metadata ---------------------------------------------------------------------


def validate_labels(labels: Any, path: str) -> ErrorList:
    """``ValidateLabels``: keys are qualified names, values label values (path not keyed)."""
    errs: ErrorList = []
    if not labels:
        return errs
    for k, v in labels.items():
        errs.extend(fe.invalid(path, k, m) for m in is_qualified_name(k))
        if not isinstance(v, str):
            errs.append(fe.invalid(path, v, "must be a string"))
            continue
        errs.extend(fe.invalid(path, v, m) for m in is_label_value(v))
    return errs


TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_annotations(annotations: Any, path: str) -> ErrorList:
    errs: ErrorList = []
    if not annotations:
        return errs
    size = 0
    for k, v in annotations.items():
        errs.extend(fe.invalid(path, k, m) for m in is_qualified_name(k.lower()))
        size += len(k) + len(str(v))
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(fe.too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_object_meta(meta: dict, namespaced: bool, name_fn: NameFn, path: str = "metadata") -> ErrorList:
    """``ValidateObjectMeta``: name (or generateName), namespace, labels, annotations."""
    errs: ErrorList = []
    gen = meta.get("generateName") or ""
    if gen:
        errs.extend(fe.invalid(f"{path}.generateName", gen, m) for m in name_fn(gen, True))
    name = meta.get("name") or ""
    if not name:
        errs.append(fe.required(f"{path}.name", "name or generateName is required"))
    else:
        errs.extend(fe.invalid(f"{path}.name", name, m) for m in name_fn(name, False))
    ns = meta.get("namespace") or ""
    if namespaced:
        if not ns:
            errs.append(fe.required(f"{path}.namespace"))
        else:
            errs.extend(fe.invalid(f"{path}.namespace", ns, m) for m in name_is_dns_label(ns))
    elif ns:
        errs.append(fe.forbidden(f"{path}.namespace", "not allowed on this type"))
    errs.extend(validate_nonnegative(meta.get("generation"), f"{path}.generation"))
    errs.extend(validate_labels(meta.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    return errs


def validate_object_meta_update(new: dict, old: dict, path: str = "metadata") -> ErrorList:
    """``ValidateObjectMetaUpdate``: identity fields are immutable."""
    errs: ErrorList = []
    for f in ("name", "namespace", "uid", "creationTimestamp"):
        if (new.get(f) or "") != (old.get(f) or ""):
            errs.append(fe.invalid(f"{path}.{f}", new.get(f) or "", FIELD_IMMUTABLE_MSG))
    if old.get("deletionTimestamp") and new.get("deletionTimestamp") != old.get("deletionTimestamp"):
        errs.append(fe.invalid(f"{path}.deletionTimestamp", new.get("deletionTimestamp"), FIELD_IMMUTABLE_MSG))
    errs.extend(validate_labels(new.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(new.get("annotations"), f"{path}.annotations"))
    return errs


def validate_label_selector(ls: Any, path: str) -> ErrorList:
    """``ValidateLabelSelector`` (metav1)."""
    errs: ErrorList = []
    if ls is None:
        return errs
    errs.extend(validate_labels(ls.get("matchLabels"), f"{path}.matchLabels"))
    for i, req in enumerate(ls.get("matchExpressions") or []):
        rp = f"{path}.matchExpressions[{i}]"
        op = req.get("operator")
        values = req.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(fe.required(f"{rp}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(fe.forbidden(f"{rp}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(fe.invalid(f"{rp}.operator", op, "not a valid selector operator"))
        errs.extend(validate_qualified_name(req.get("key") or "", f"{rp}.key"))
        for j, v in enumerate(values):
            errs.extend(fe.invalid(f"{rp}.values[{j}]", v, m) for m in is_label_value(v))
    return errs


# --- Service (pkg/apis/core/validation: ValidateService) --------------------------

SUPPORTED_PORT_PROTOCOLS = ["SCTP", "TCP", "UDP"]
SUPPORTED_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
SUPPORTED_SESSION_AFFINITY = ["ClientIP", "None"]
SUPPORTED_EXTERNAL_TRAFFIC_POLICY = ["Cluster", "Local"]
SUPPORTED_INTERNAL_TRAFFIC_POLICY = ["Cluster", "Local"]
SUPPORTED_IP_FAMILIES = ["IPv4", "IPv6"]
SUPPORTED_IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400


def _spec(obj: dict) -> dict:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


def is_headless(svc: dict) -> bool:
    ips = _spec(svc).get("clusterIPs") or []
    return len(ips) == 1 and ips[0] == "None"


def externally_accessible(svc: dict) -> bool:
    spec = _spec(svc)
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def needs_health_check(svc: dict) -> bool:
    spec = _spec(svc)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def validate_service_ports_required(svc: dict) -> ErrorList:
    spec = _spec(svc)
    if not spec.get("ports") and not is_headless(svc) and spec.get("type") != "ExternalName":
        return [fe.required("spec.ports")]
    return []


def validate_service_headless_type(svc: dict) -> ErrorList:
    """LoadBalancer and NodePort services may not be headless."""
    spec = _spec(svc)
    t = spec.get("type")
    if t in ("LoadBalancer", "NodePort") and is_headless(svc):
        return [fe.invalid("spec.clusterIPs[0]", spec["clusterIPs"][0], f"may not be set to 'None' for {t} services")]
    return []


def validate_service_external_name(svc: dict) -> ErrorList:
    """ExternalName services: no clusterIPs/ipFamilies/ipFamilyPolicy, a DNS-1123 ``externalName``."""
    spec = _spec(svc)
    if spec.get("type") != "ExternalName":
        return []
    errs: ErrorList = []
    if spec.get("clusterIPs"):
        errs.append(fe.forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    if spec.get("ipFamilies"):
        errs.append(fe.forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
    if spec.get("ipFamilyPolicy") is not None:
        errs.append(fe.forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
    cname = (spec.get("externalName") or "").removesuffix(".")
    if cname:
        errs.extend(validate_dns1123_subdomain(cname, "spec.externalName"))
    else:
        errs.append(fe.required("spec.externalName"))
    return errs


def validate_port_num_or_name(port: Any, path: str) -> ErrorList:
    """``ValidatePortNumOrName`` for an IntOrString."""
    if _is_int(port):
        return [fe.invalid(path, port, m) for m in is_valid_port_num(port)]
    if isinstance(port, str):
        return [fe.invalid(path, port, m) for m in is_valid_port_name(port)]
    return [fe.FieldError(fe.INTERNAL, path, None, f"unknown type: {type(port).__name__}")]


def validate_service_port(sp: dict, require_name: bool, all_names: set, path: str) -> ErrorList:
    """One ``spec.ports[i]``: name, port, protocol, targetPort, appProtocol."""
    errs: ErrorList = []
    name = sp.get("name") or ""
    if require_name and not name:
        errs.append(fe.required(f"{path}.name"))
    elif name:
        errs.extend(validate_dns1123_label(name, f"{path}.name"))
        if name in all_names:
            errs.append(fe.duplicate(f"{path}.name", name))
        else:
            all_names.add(name)
    port = sp.get("port", 0)
    errs.extend(fe.invalid(f"{path}.port", port, m) for m in is_valid_port_num(port))
    proto = sp.get("protocol") or ""
    if not proto:
        errs.append(fe.required(f"{path}.protocol"))
    elif proto not in SUPPORTED_PORT_PROTOCOLS:
        errs.append(fe.not_supported(f"{path}.protocol", proto, SUPPORTED_PORT_PROTOCOLS))
    errs.extend(validate_port_num_or_name(sp.get("targetPort", 0), f"{path}.targetPort"))
    if sp.get("appProtocol") is not None:
        errs.extend(validate_qualified_name(sp["appProtocol"], f"{path}.appProtocol"))
    return errs


def validate_service_ports(svc: dict) -> ErrorList:
    ports = _spec(svc).get("ports") or []
    names: set = set()
    errs: ErrorList = []
    for i, sp in enumerate(ports):
        errs.extend(validate_service_port(sp, len(ports) > 1, names, f"spec.ports[{i}]"))
    return errs


def validate_service_selector(svc: dict) -> ErrorList:
    sel = _spec(svc).get("selector")
    if sel is None:
        return []
    return validate_labels(sel, "spec.selector")


def validate_session_affinity(svc: dict) -> ErrorList:
    """sessionAffinity None|ClientIP; ClientIP needs ``timeoutSeconds`` in 1..86400."""
    spec = _spec(svc)
    aff = spec.get("sessionAffinity") or ""
    errs: ErrorList = []
    if not aff:
        errs.append(fe.required("spec.sessionAffinity"))
    elif aff not in SUPPORTED_SESSION_AFFINITY:
        errs.append(fe.not_supported("spec.sessionAffinity", aff, SUPPORTED_SESSION_AFFINITY))
    cfg = spec.get("sessionAffinityConfig")
    path = "spec.sessionAffinityConfig"
    if aff == "ClientIP":
        when = "when session affinity type is ClientIP"
        if cfg is None:
            errs.append(fe.required(path, when))
        elif cfg.get("clientIP") is None:
            errs.append(fe.required(f"{path}.clientIP", when))
        elif cfg["clientIP"].get("timeoutSeconds") is None:
            errs.append(fe.required(f"{path}.clientIP.timeoutSeconds", when))
        else:
            t = cfg["clientIP"]["timeoutSeconds"]
            if not _is_int(t) or t <= 0 or t > MAX_CLIENT_IP_AFFINITY_SECONDS:
                errs.append(
                    fe.invalid(
                        f"{path}.clientIP.timeoutSeconds",
                        t,
                        f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}",
                    )
                )
    elif aff == "None" and cfg is not None:
        errs.append(fe.forbidden(path, "must not be set when session affinity is None"))
    return errs


def validate_cluster_ips_related(svc: dict) -> ErrorList:
    """``ValidateServiceClusterIPsRelatedFields``: clusterIP/clusterIPs/ipFamilies/ipFamilyPolicy."""
    spec = _spec(svc)
    if spec.get("type") == "ExternalName":
        return []
    errs: ErrorList = []
    cip = spec.get("clusterIP") or ""
    cips = spec.get("clusterIPs") or []
    fams = spec.get("ipFamilies") or []
    if cip:
        if not cips:
            errs.append(fe.required("spec.clusterIPs"))
        elif cips[0] != cip:
            errs.append(fe.invalid("spec.clusterIPs", cips, "first value must match `clusterIP`"))
    elif cips:
        errs.append(fe.invalid("spec.clusterIPs", cips, "must be empty when `clusterIP` is not specified"))
    seen = set()
    for i, fam in enumerate(fams):
        if fam not in SUPPORTED_IP_FAMILIES:
            errs.append(fe.not_supported(f"spec.ipFamilies[{i}]", fam, SUPPORTED_IP_FAMILIES))
        if fam in seen:
            errs.append(fe.duplicate(f"spec.ipFamilies[{i}]", fam))
        seen.add(fam)
    pol = spec.get("ipFamilyPolicy")
    if pol is not None and pol not in SUPPORTED_IP_FAMILY_POLICIES:
        errs.append(fe.not_supported("spec.ipFamilyPolicy", pol, SUPPORTED_IP_FAMILY_POLICIES))
    bad_ips = False
    for i, ip in enumerate(cips):
        if i == 0 and ip == "None":
            if len(cips) > 1:
                bad_ips = True
                errs.append(fe.invalid("spec.clusterIPs", cips, "'None' must be the first and only value"))
            continue
        e = is_valid_ip(f"spec.clusterIPs[{i}]", ip)
        bad_ips = bad_ips or bool(e)
        errs.extend(e)
    if len(cips) > 2:
        errs.append(fe.invalid("spec.clusterIPs", cips, "may only hold up to 2 values"))
    if bad_ips:
        return errs
    if len(cips) > 1:
        versions = {parse_ip_sloppy(ip).version for ip in cips}
        if len(versions) != len(cips):
            errs.append(fe.invalid("spec.clusterIPs", cips, "may specify no more than one IP for each IP family"))
    if not is_headless(svc) and cips and fams:
        for i, ip in enumerate(cips):
            if i >= len(fams):
                break
            v6 = parse_ip_sloppy(ip).version == 6
            if fams[i] == "IPv4" and v6:
                errs.append(fe.invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if fams[i] == "IPv6" and not v6:
                errs.append(fe.invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def validate_external_ips(svc: dict) -> ErrorList:
    errs: ErrorList = []
    for i, ip in enumerate(_spec(svc).get("externalIPs") or []):
        p = f"spec.externalIPs[{i}]"
        e = is_valid_ip(p, ip)
        errs.extend(e if e else validate_endpoint_ip(ip, p))
    return errs


def validate_service_type(svc: dict) -> ErrorList:
    t = _spec(svc).get("type") or ""
    if not t:
        return [fe.required("spec.type")]
    if t not in SUPPORTED_SERVICE_TYPES:
        return [fe.not_supported("spec.type", t, SUPPORTED_SERVICE_TYPES)]
    return []


def validate_cluster_ip_type_has_no_node_ports(svc: dict) -> ErrorList:
    spec = _spec(svc)
    if spec.get("type") != "ClusterIP":
        return []
    return [
        fe.forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'")
        for i, p in enumerate(spec.get("ports") or [])
        if p.get("nodePort")
    ]


def validate_duplicate_node_ports(svc: dict) -> ErrorList:
    errs: ErrorList = []
    seen = set()
    for i, p in enumerate(_spec(svc).get("ports") or []):
        np = p.get("nodePort")
        if not np:
            continue
        key = (p.get("protocol"), np)
        if key in seen:
            errs.append(fe.duplicate(f"spec.ports[{i}].nodePort", np))
        seen.add(key)
    return errs


def _service_port_key(protocol: Any, port: Any) -> GoStruct:
    # Upstream reports the internal core.ServicePort{Protocol, Port} used as map key.
    return GoStruct(Name="", Protocol=protocol, AppProtocol=None, Port=port, TargetPort=0, NodePort=0)


def validate_duplicate_ports(svc: dict) -> ErrorList:
    errs: ErrorList = []
    seen = set()
    for i, p in enumerate(_spec(svc).get("ports") or []):
        key = (p.get("protocol"), p.get("port"))
        if key in seen:
            errs.append(fe.duplicate(f"spec.ports[{i}]", _service_port_key(*key)))
        seen.add(key)
    return errs


def validate_load_balancer_source_ranges(svc: dict) -> ErrorList:
    spec = _spec(svc)
    ranges = spec.get("loadBalancerSourceRanges") or []
    errs: ErrorList = []
    path = "spec.LoadBalancerSourceRanges"  # sic: upstream uses the Go field name here
    if ranges:
        if spec.get("type") != "LoadBalancer":
            errs.append(fe.forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        for i, v in enumerate(ranges):
            errs.extend(is_valid_cidr(f"{path}[{i}]", v.strip() if isinstance(v, str) else v))
    return errs


def validate_allocate_lb_node_ports(svc: dict) -> ErrorList:
    spec = _spec(svc)
    if spec.get("allocateLoadBalancerNodePorts") is not None and spec.get("type") != "LoadBalancer":
        return [fe.forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")]
    if spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        return [fe.required("allocateLoadBalancerNodePorts")]  # sic: upstream path
    return []


def validate_load_balancer_class(svc: dict, old: dict | None = None) -> ErrorList:
    spec = _spec(svc)
    errs: ErrorList = []
    lbc = spec.get("loadBalancerClass")
    if old is not None and _spec(old).get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer":
        if _spec(old).get("loadBalancerClass") != lbc:
            errs.append(fe.invalid("spec.loadBalancerClass", lbc, "may not change once set"))
    if spec.get("type") == "LoadBalancer":
        if lbc is not None:
            errs.extend(validate_qualified_name(lbc, "spec.loadBalancerClass"))
    elif lbc is not None:
        errs.append(fe.forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs


def validate_external_traffic_policy(svc: dict) -> ErrorList:
    """externalTrafficPolicy only for externally-accessible services; healthCheckNodePort only with LB+Local."""
    spec = _spec(svc)
    errs: ErrorList = []
    etp = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(svc):
        if etp:
            errs.append(fe.invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
    elif not etp:
        errs.append(fe.required("spec.externalTrafficPolicy"))
    elif etp not in SUPPORTED_EXTERNAL_TRAFFIC_POLICY:
        errs.append(fe.not_supported("spec.externalTrafficPolicy", etp, SUPPORTED_EXTERNAL_TRAFFIC_POLICY))
    hc = spec.get("healthCheckNodePort") or 0
    if not needs_health_check(svc):
        if hc:
            errs.append(
                fe.invalid(
                    "spec.healthCheckNodePort",
                    hc,
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                )
            )
    elif not hc:
        errs.append(fe.required("spec.healthCheckNodePort"))
    else:
        errs.extend(fe.invalid("spec.healthCheckNodePort", hc, m) for m in is_valid_port_num(hc))
    return errs


def validate_internal_traffic_policy(svc: dict) -> ErrorList:
    spec = _spec(svc)
    itp = spec.get("internalTrafficPolicy")
    if itp is None:
        if spec.get("type") in ("NodePort", "LoadBalancer", "ClusterIP"):
            return [fe.required("spec.internalTrafficPolicy")]
        return []
    if itp not in SUPPORTED_INTERNAL_TRAFFIC_POLICY:
        return [fe.not_supported("spec.internalTrafficPolicy", itp, SUPPORTED_INTERNAL_TRAFFIC_POLICY)]
    return []


def validate_service(svc: dict) -> ErrorList:
    """``ValidateService`` on a defaulted Service, rules in upstream order."""
    errs = validate_object_meta(svc.get("metadata") or {}, True, name_is_dns1035_label)
    errs += validate_service_ports_required(svc)
    errs += validate_service_headless_type(svc)
    errs += validate_service_external_name(svc)
    errs += validate_service_ports(svc)
    errs += validate_service_selector(svc)
    errs += validate_session_affinity(svc)
    errs += validate_cluster_ips_related(svc)
    errs += validate_external_ips(svc)
    errs += validate_service_type(svc)
    errs += validate_cluster_ip_type_has_no_node_ports(svc)
    errs += validate_duplicate_node_ports(svc)
    errs += validate_duplicate_ports(svc)
    errs += validate_load_balancer_source_ranges(svc)
    errs += validate_allocate_lb_node_ports(svc)
    errs += validate_load_balancer_class(svc)
    errs += validate_external_traffic_policy(svc)
    errs += validate_internal_traffic_policy(svc)
    return errs


def validate_cluster_ips_immutable(new: dict, old: dict) -> ErrorList:
    """``validateUpgradeDowngradeClusterIPs``: the primary clusterIP may not change once set."""
    ns, os_ = _spec(new), _spec(old)
    if "ExternalName" in (ns.get("type"), os_.get("type")):
        return []
    if is_headless(new) and is_headless(old):
        return []
    new_ips, old_ips = ns.get("clusterIPs") or [], os_.get("clusterIPs") or []
    errs: ErrorList = []
    if len(new_ips) == len(old_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(fe.invalid(f"spec.clusterIPs[{i}]", new_ips, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(fe.invalid("spec.clusterIPs[0]", new_ips, "primary clusterIP can not be unset"))
        elif new_ips[0] != old_ips[0]:
            errs.append(fe.invalid("spec.clusterIPs[0]", new_ips, "may not change once set"))
        if len(new_ips) == 1 and ns.get("ipFamilyPolicy") != "SingleStack":
            errs.append(
                fe.invalid("spec.ipFamilyPolicy", ns.get("ipFamilyPolicy"), "must be set to 'SingleStack' when releasing the secondary clusterIP")
            )
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(fe.invalid("spec.clusterIPs[0]", new_ips, "may not change once set"))
    return errs


def validate_ip_families_immutable(new: dict, old: dict) -> ErrorList:
    """``validateUpgradeDowngradeIPFamilies`` (single-stack subset)."""
    ns, os_ = _spec(new), _spec(old)
    if "ExternalName" in (ns.get("type"), os_.get("type")):
        return []
    if is_headless(new) or is_headless(old):
        return []
    nf, of = ns.get("ipFamilies") or [], os_.get("ipFamilies") or []
    errs: ErrorList = []
    if len(nf) == len(of):
        for i, f in enumerate(of):
            if f != nf[i]:
                errs.append(fe.invalid("spec.ipFamilies[0]", nf, "may not change once set"))
    elif len(of) > len(nf):
        if not ns.get("clusterIPs"):
            errs.append(fe.invalid("spec.ipFamilies[0]", nf, "primary ipFamily can not be unset"))
        if nf and nf[0] != of[0]:
            errs.append(fe.invalid("spec.ipFamilies[0]", ns.get("clusterIPs") or [], "may not change once set"))
    elif of and nf and nf[0] != of[0]:
        errs.append(fe.invalid("spec.ipFamilies[0]", ns.get("clusterIPs") or [], "may not change once set"))
    return errs


def validate_health_check_node_port_immutable(new: dict, old: dict) -> ErrorList:
    if needs_health_check(old) and needs_health_check(new):
        if _spec(new).get("healthCheckNodePort") != _spec(old).get("healthCheckNodePort"):
            return [fe.forbidden("spec.healthCheckNodePort", "field is immutable")]
    return []


def validate_service_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_cluster_ips_immutable(new, old)
    errs += validate_ip_families_immutable(new, old)
    if _spec(old).get("type") == "LoadBalancer" and _spec(new).get("type") == "LoadBalancer":
        if _spec(old).get("loadBalancerClass") != _spec(new).get("loadBalancerClass"):
            errs.append(fe.invalid("spec.loadBalancerClass", _spec(new).get("loadBalancerClass"), "may not change once set"))
    errs += validate_health_check_node_port_immutable(new, old)
    return errs + validate_service(new)


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
    if ads is not None and (not _is_int(ads) or ads <= 0):
        errs.append(fe.invalid(f"{path}.activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive"))
    return errs


def validate_pod(pod: dict) -> ErrorList:
    errs = validate_object_meta(pod.get("metadata") or {}, True, name_is_dns_subdomain)
    return errs + validate_pod_spec(_spec(pod), "spec", is_pod=True)


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
    ns, os_ = dict(_spec(new)), dict(_spec(old))
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
    return errs + validate_pod_spec(_spec(new), "spec", is_pod=True)


# --- Deployment / ReplicaSet (pkg/apis/apps/validation) ---------------------------


def _selector_matches(selector: dict, labels: dict) -> bool:
    from . import selectors

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
    from . import selectors

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
    if _is_int(v):
        return validate_nonnegative(v, path)
    return [fe.invalid(path, v, "must be an integer or percentage (e.g '5%')")]


def _int_or_percent_value(v: Any) -> int:
    if isinstance(v, str):
        if is_valid_percent(v):
            return 0
        return int(v[:-1])
    return v if _is_int(v) else 0


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
    spec = _spec(dep)
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
        if _is_int(pds) and pds <= (spec.get("minReadySeconds") or 0):
            errs.append(fe.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return errs


def validate_replicaset(rs: dict) -> ErrorList:
    spec = _spec(rs)
    errs = validate_object_meta(rs.get("metadata") or {}, True, name_is_dns_subdomain)
    errs += validate_replicas(spec, "spec")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += validate_workload_selector(spec, "spec")
    errs += validate_pod_template_for_replicaset(spec, "spec")
    return errs


def validate_selector_immutable(new: dict, old: dict) -> ErrorList:
    return validate_immutable(_spec(new).get("selector"), _spec(old).get("selector"), "spec.selector")


def validate_deployment_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_selector_immutable(new, old)
    return errs + validate_deployment(new)


def validate_replicaset_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_selector_immutable(new, old)
    return errs + validate_replicaset(new)


# --- EndpointSlice (pkg/apis/discovery/validation) --------------------------------

SUPPORTED_ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000


def validate_address_type(slice_: dict) -> ErrorList:
    at = slice_.get("addressType") or ""
    if not at:
        return [fe.required("addressType")]
    if at not in SUPPORTED_ADDRESS_TYPES:
        return [fe.not_supported("addressType", at, SUPPORTED_ADDRESS_TYPES)]
    return []


def validate_slice_endpoints(slice_: dict) -> ErrorList:
    eps = slice_.get("endpoints") or []
    at = slice_.get("addressType")
    if len(eps) > MAX_ENDPOINTS:
        return [fe.too_many("endpoints", len(eps), MAX_ENDPOINTS)]
    errs: ErrorList = []
    for i, ep in enumerate(eps):
        ip = f"endpoints[{i}]"
        addrs = ep.get("addresses") or []
        if not addrs:
            errs.append(fe.required(f"{ip}.addresses", "must contain at least 1 address"))
        elif len(addrs) > MAX_ADDRESSES:
            errs.append(fe.too_many(f"{ip}.addresses", len(addrs), MAX_ADDRESSES))
        for j, a in enumerate(addrs):
            ap = f"{ip}.addresses[{j}]"
            if at == "IPv4":
                e = is_valid_ipv4_address(ap, a)
                errs.extend(e if e else validate_endpoint_ip(a, ap))
            elif at == "IPv6":
                e = is_valid_ipv6_address(ap, a)
                errs.extend(e if e else validate_endpoint_ip(a, ap))
            elif at == "FQDN":
                errs.extend(validate_dns1123_subdomain(str(a).removesuffix("."), ap))
        node = ep.get("nodeName")
        if node is not None:
            errs.extend(fe.invalid(f"{ip}.nodeName", node, m) for m in name_is_dns_subdomain(node))
        if ep.get("hostname") is not None:
            errs.extend(validate_dns1123_label(ep["hostname"], f"{ip}.hostname"))
    return errs


def validate_slice_ports(slice_: dict) -> ErrorList:
    ports = slice_.get("ports") or []
    if len(ports) > MAX_PORTS:
        return [fe.too_many("ports", len(ports), MAX_PORTS)]
    errs: ErrorList = []
    names: set = set()
    for i, p in enumerate(ports):
        ip = f"ports[{i}]"
        name = p.get("name") or ""
        if name:
            errs.extend(validate_dns1123_label(name, f"{ip}.name"))
        if name in names:
            errs.append(fe.duplicate(f"{ip}.name", name))
        names.add(name)
        proto = p.get("protocol")
        if proto is None:
            errs.append(fe.required(f"{ip}.protocol"))
        elif proto not in SUPPORTED_PORT_PROTOCOLS:
            errs.append(fe.not_supported(f"{ip}.protocol", proto, SUPPORTED_PORT_PROTOCOLS))
        if p.get("port") is not None:
            errs.extend(fe.invalid(f"{ip}.port", p["port"], m) for m in is_valid_port_num(p["port"]))
        if p.get("appProtocol") is not None:
            errs.extend(validate_qualified_name(p["appProtocol"], f"{ip}.appProtocol"))
    return errs


def validate_endpointslice(slice_: dict) -> ErrorList:
    errs = validate_object_meta(slice_.get("metadata") or {}, True, name_is_dns_subdomain)
    errs += validate_address_type(slice_)
    errs += validate_slice_endpoints(slice_)
    errs += validate_slice_ports(slice_)
    return errs


def validate_endpointslice_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_immutable(new.get("addressType"), old.get("addressType"), "addressType")
    return errs + validate_endpointslice(new)


# --- Endpoints (v1) ---------------------------------------------------------------


def validate_endpoint_address(addr: dict, path: str) -> ErrorList:
    ip = addr.get("ip")
    errs = is_valid_ip(f"{path}.ip", ip)
    if not errs:
        errs = validate_endpoint_ip(ip, f"{path}.ip")
    if addr.get("hostname"):
        errs.extend(validate_dns1123_label(addr["hostname"], f"{path}.hostname"))
    if addr.get("nodeName"):
        errs.extend(fe.invalid(f"{path}.nodeName", addr["nodeName"], m) for m in name_is_dns_subdomain(addr["nodeName"]))
    return errs


def validate_endpoint_port(port: dict, require_name: bool, path: str) -> ErrorList:
    errs: ErrorList = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(fe.required(f"{path}.name"))
    elif name:
        errs.extend(validate_dns1123_label(name, f"{path}.name"))
    errs.extend(fe.invalid(f"{path}.port", port.get("port"), m) for m in is_valid_port_num(port.get("port")))
    proto = port.get("protocol") or ""
    if not proto:
        errs.append(fe.required(f"{path}.protocol"))
    elif proto not in SUPPORTED_PORT_PROTOCOLS:
        errs.append(fe.not_supported(f"{path}.protocol", proto, SUPPORTED_PORT_PROTOCOLS))
    return errs


def validate_endpoints(ep: dict) -> ErrorList:
    errs = validate_object_meta(ep.get("metadata") or {}, True, name_is_dns_subdomain)
    for i, ss in enumerate(ep.get("subsets") or []):
        sp = f"subsets[{i}]"
        if not ss.get("addresses") and not ss.get("notReadyAddresses"):
            errs.append(fe.required(sp, "must specify `addresses` or `notReadyAddresses`"))
        for j, a in enumerate(ss.get("addresses") or []):
            errs.extend(validate_endpoint_address(a, f"{sp}.addresses[{j}]"))
        for j, a in enumerate(ss.get("notReadyAddresses") or []):
            errs.extend(validate_endpoint_address(a, f"{sp}.notReadyAddresses[{j}]"))
        ports = ss.get("ports") or []
        for j, p in enumerate(ports):
            errs.extend(validate_endpoint_port(p, len(ports) > 1, f"{sp}.ports[{j}]"))
    return errs


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


def join(*lists: Iterable[FieldError]) -> ErrorList:
    out: ErrorList = []
    for lst in lists:
        out.extend(lst)
    return out
