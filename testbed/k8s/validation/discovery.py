"""EndpointSlice (``pkg/apis/discovery/validation``) and v1 Endpoints validation."""

from __future__ import annotations


from .. import errors as fe
from ..fields import (
    ErrorList,
    is_valid_ip,
    is_valid_ipv4_address,
    is_valid_ipv6_address,
    is_valid_port_num,
    name_is_dns_subdomain,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_endpoint_ip,
    validate_immutable,
    validate_object_meta,
    validate_object_meta_update,
    validate_qualified_name,
)
from .service import SUPPORTED_PORT_PROTOCOLS

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
