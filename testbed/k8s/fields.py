"""Field-level validators shared by every kind, as ``k8s.io/apimachinery/pkg/util/validation``
and ``apimachinery/pkg/apis/meta/v1/validation`` write them: string formats (DNS labels,
qualified names, label values, ports, IPs, CIDRs), object metadata, labels, annotations and
label selectors.  They depend on nothing else in the package, so label-selector parsing and
the per-kind validators can both build on them.

Every ``validate_*`` function returns a list of :class:`~testbed.k8s.errors.FieldError`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from . import errors as fe
from .errors import FieldError

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


def is_int(v: Any) -> bool:
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
    if is_int(port) and 1 <= port <= 65535:
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
    if is_int(value) and value < 0:
        return [fe.invalid(path, value, IS_NEGATIVE_MSG)]
    if value is not None and not is_int(value):
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


def spec_of(obj: dict) -> dict:
    """The object's ``spec``, or an empty one when it is absent."""
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}
