"""Service validation (``pkg/apis/core/validation``: ``ValidateService``,
``ValidateServiceUpdate``) with upstream's messages, field paths and rule order."""

from __future__ import annotations

from typing import Any

from .. import errors as fe
from ..errors import GoStruct
from ..fields import (
    ErrorList,
    is_int,
    is_valid_cidr,
    is_valid_ip,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns1035_label,
    parse_ip_sloppy,
    spec_of,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_endpoint_ip,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
    validate_qualified_name,
)

# --- Service (pkg/apis/core/validation: ValidateService) --------------------------

SUPPORTED_PORT_PROTOCOLS = ["SCTP", "TCP", "UDP"]
SUPPORTED_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
SUPPORTED_SESSION_AFFINITY = ["ClientIP", "None"]
SUPPORTED_EXTERNAL_TRAFFIC_POLICY = ["Cluster", "Local"]
SUPPORTED_INTERNAL_TRAFFIC_POLICY = ["Cluster", "Local"]
SUPPORTED_IP_FAMILIES = ["IPv4", "IPv6"]
SUPPORTED_IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400



def is_headless(svc: dict) -> bool:
    ips = spec_of(svc).get("clusterIPs") or []
    return len(ips) == 1 and ips[0] == "None"


def externally_accessible(svc: dict) -> bool:
    spec = spec_of(svc)
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def needs_health_check(svc: dict) -> bool:
    spec = spec_of(svc)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def validate_service_ports_required(svc: dict) -> ErrorList:
    spec = spec_of(svc)
    if not spec.get("ports") and not is_headless(svc) and spec.get("type") != "ExternalName":
        return [fe.required("spec.ports")]
    return []


def validate_service_headless_type(svc: dict) -> ErrorList:
    """LoadBalancer and NodePort services may not be headless."""
    spec = spec_of(svc)
    t = spec.get("type")
    if t in ("LoadBalancer", "NodePort") and is_headless(svc):
        return [fe.invalid("spec.clusterIPs[0]", spec["clusterIPs"][0], f"may not be set to 'None' for {t} services")]
    return []


def validate_service_external_name(svc: dict) -> ErrorList:
    """ExternalName services: no clusterIPs/ipFamilies/ipFamilyPolicy, a DNS-1123 ``externalName``."""
    spec = spec_of(svc)
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
    if is_int(port):
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
    ports = spec_of(svc).get("ports") or []
    names: set = set()
    errs: ErrorList = []
    for i, sp in enumerate(ports):
        errs.extend(validate_service_port(sp, len(ports) > 1, names, f"spec.ports[{i}]"))
    return errs


def validate_service_selector(svc: dict) -> ErrorList:
    sel = spec_of(svc).get("selector")
    if sel is None:
        return []
    return validate_labels(sel, "spec.selector")


def validate_session_affinity(svc: dict) -> ErrorList:
    """sessionAffinity None|ClientIP; ClientIP needs ``timeoutSeconds`` in 1..86400."""
    spec = spec_of(svc)
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
            if not is_int(t) or t <= 0 or t > MAX_CLIENT_IP_AFFINITY_SECONDS:
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
    spec = spec_of(svc)
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
    for i, ip in enumerate(spec_of(svc).get("externalIPs") or []):
        p = f"spec.externalIPs[{i}]"
        e = is_valid_ip(p, ip)
        errs.extend(e if e else validate_endpoint_ip(ip, p))
    return errs


def validate_service_type(svc: dict) -> ErrorList:
    t = spec_of(svc).get("type") or ""
    if not t:
        return [fe.required("spec.type")]
    if t not in SUPPORTED_SERVICE_TYPES:
        return [fe.not_supported("spec.type", t, SUPPORTED_SERVICE_TYPES)]
    return []


def validate_cluster_ip_type_has_no_node_ports(svc: dict) -> ErrorList:
    spec = spec_of(svc)
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
    for i, p in enumerate(spec_of(svc).get("ports") or []):
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
    for i, p in enumerate(spec_of(svc).get("ports") or []):
        key = (p.get("protocol"), p.get("port"))
        if key in seen:
            errs.append(fe.duplicate(f"spec.ports[{i}]", _service_port_key(*key)))
        seen.add(key)
    return errs


def validate_load_balancer_source_ranges(svc: dict) -> ErrorList:
    spec = spec_of(svc)
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
    spec = spec_of(svc)
    if spec.get("allocateLoadBalancerNodePorts") is not None and spec.get("type") != "LoadBalancer":
        return [fe.forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")]
    if spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        return [fe.required("allocateLoadBalancerNodePorts")]  # sic: upstream path
    return []


def validate_load_balancer_class(svc: dict, old: dict | None = None) -> ErrorList:
    spec = spec_of(svc)
    errs: ErrorList = []
    lbc = spec.get("loadBalancerClass")
    if old is not None and spec_of(old).get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer":
        if spec_of(old).get("loadBalancerClass") != lbc:
            errs.append(fe.invalid("spec.loadBalancerClass", lbc, "may not change once set"))
    if spec.get("type") == "LoadBalancer":
        if lbc is not None:
            errs.extend(validate_qualified_name(lbc, "spec.loadBalancerClass"))
    elif lbc is not None:
        errs.append(fe.forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs


def validate_external_traffic_policy(svc: dict) -> ErrorList:
    """externalTrafficPolicy only for externally-accessible services; healthCheckNodePort only with LB+Local."""
    spec = spec_of(svc)
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
    spec = spec_of(svc)
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
    ns, os_ = spec_of(new), spec_of(old)
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
    ns, os_ = spec_of(new), spec_of(old)
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
        if spec_of(new).get("healthCheckNodePort") != spec_of(old).get("healthCheckNodePort"):
            return [fe.forbidden("spec.healthCheckNodePort", "field is immutable")]
    return []


def validate_service_update(new: dict, old: dict) -> ErrorList:
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += validate_cluster_ips_immutable(new, old)
    errs += validate_ip_families_immutable(new, old)
    if spec_of(old).get("type") == "LoadBalancer" and spec_of(new).get("type") == "LoadBalancer":
        if spec_of(old).get("loadBalancerClass") != spec_of(new).get("loadBalancerClass"):
            errs.append(fe.invalid("spec.loadBalancerClass", spec_of(new).get("loadBalancerClass"), "may not change once set"))
    errs += validate_health_check_node_port_immutable(new, old)
    return errs + validate_service(new)
