"""What the API server does to every write before it is stored.

``Admission`` defaults, validates and (for Services) allocates ClusterIPs and node ports,
in upstream's order: Service allocation runs first (``BeginCreate``/``BeginUpdate``,
whose errors win), then validation of the whole object; a failed validation rolls the
allocations back.  It never stores objects; the API store calls it for every write:

* ``obj = admission.admit_create(obj)`` before storing a new object;
* ``obj = admission.admit_update(new, old)`` (``subresource="status"`` for status writes:
  spec comes from ``old``, status from ``new``; on the main resource, status is kept
  from ``old`` as upstream does; ``subresource="binding"``, a pod's binding, keeps both from ``new``);
* ``admission.admit_delete(obj)`` when an object is finally removed (releases IPs/ports);
* ``admission.rebuild(all_objects)`` once after loading persisted objects.

If the store fails to persist an admitted create, it must call ``admit_delete`` on the
returned object so the allocations are released.

``admit_create`` and ``admit_update`` default and change the object they are given, in place:
the store hands them its own copies (a deep copy per write cost ~6 % of the control plane's CPU
when endpoints churn); a caller that keeps using its object passes a copy.
"""

from __future__ import annotations

import copy
import datetime as _dt
import ipaddress
import random
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from . import defaults, fields, kinds, networking, schema, schemas, validation
from .validation import service as service_validation
from .allocators import (
    DEFAULT_NODEPORT_RANGE,
    AllocationError,
    ServiceAllocators,
    Transaction,
    service_node_ports,
)
from .errors import BadRequest, FieldError, InternalError, Invalid
from . import errors as fe


@dataclass(frozen=True)
class AdmissionConfig:
    service_network: str = "10.96.0.0/12"
    nodeport_range: str = DEFAULT_NODEPORT_RANGE
    pod_network: str = "10.244.0.0/16"


_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # names.SimpleNameGenerator's alphabet


def _cfg(config: Any) -> AdmissionConfig:
    if isinstance(config, AdmissionConfig):
        return config
    if config is None:
        return AdmissionConfig()
    if isinstance(config, Mapping):
        get = config.get
    else:
        def get(k, d=None):
            return getattr(config, k, d)
    rng = get("nodeport_range", DEFAULT_NODEPORT_RANGE)
    if isinstance(rng, (tuple, list)):
        rng = f"{rng[0]}-{rng[1]}"
    return AdmissionConfig(
        service_network=str(get("service_network", "10.96.0.0/12")),
        nodeport_range=str(rng),
        pod_network=str(get("pod_network", "10.244.0.0/16")),
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec(obj: dict | None) -> dict:
    s = (obj or {}).get("spec")
    return s if isinstance(s, dict) else {}


class Admission:
    """Defaulting + validation + allocation for every write (see module doc)."""

    def __init__(self, config: Any = None, *, rng: random.Random | None = None, strategy: str = "random",
                 clock: Callable[[], str] = _now, uid: Callable[[], str] = lambda: str(uuid.uuid4())):
        self.config = _cfg(config)
        net = ipaddress.ip_network(self.config.service_network, strict=False)
        pods = ipaddress.ip_network(self.config.pod_network, strict=False)
        if net.version == pods.version and net.overlaps(pods):
            raise ValueError(f"service network {net} overlaps pod network {pods}")
        self.rng = rng or random.Random()
        self.allocators = ServiceAllocators(str(net), self.config.nodeport_range, rng=self.rng, strategy=strategy)
        self.clock = clock
        self.new_uid = uid

    # --- public API ---------------------------------------------------------------

    @property
    def kubernetes_service_ip(self) -> str:
        return self.allocators.ips.kubernetes_ip

    @property
    def dns_service_ip(self) -> str:
        return self.allocators.ips.dns_ip

    def admit_create(self, obj: dict) -> dict:
        info = self._kind(obj)
        self._check_shape(obj, info)
        self._prepare_meta_create(obj, info)
        if info.kind in ("Pod", "Service", "Deployment", "ReplicaSet", "Namespace", "Ingress"):
            obj.pop("status", None)  # PrepareForCreate: clients cannot set status
        defaults.apply_defaults(obj)
        if info.kind == "Service":
            return self._create_service(obj, info)
        self._raise(info, obj, validation.validate(obj) + networking.validate(obj))
        return obj

    def admit_update(self, new: dict, old: dict, subresource: str | None = None) -> dict:
        info = self._kind(new)
        self._check_shape(new, info)
        if (old.get("kind"), old.get("apiVersion")) != (new.get("kind"), new.get("apiVersion")):
            raise BadRequest(f"kind/apiVersion may not change: {old.get('apiVersion')}/{old.get('kind')}")
        self._prepare_meta_update(new, old, info)
        defaults.apply_defaults(new)
        if subresource == "status":
            if "spec" in old:
                new["spec"] = copy.deepcopy(old["spec"])
            self._raise(info, new, fields.validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {}))
            return new
        if subresource not in (None, "binding"):
            raise BadRequest(f"unsupported subresource {subresource!r}")
        if subresource is None and "status" in old and \
                info.kind in ("Pod", "Service", "Deployment", "ReplicaSet", "Namespace", "Ingress"):
            new["status"] = copy.deepcopy(old["status"])
        if info.kind in ("Deployment", "ReplicaSet"):
            gen = (old.get("metadata") or {}).get("generation", 1)
            new["metadata"]["generation"] = gen + 1 if new.get("spec") != old.get("spec") else gen
        if info.kind == "Service":
            return self._update_service(new, old, info)
        self._raise(info, new, validation.validate_update(new, old) + networking.validate_update(new, old))
        return new

    def admit_delete(self, obj: dict) -> None:
        if obj.get("kind") == "Service":
            self.allocators.release_service(obj)

    def rebuild(self, existing_objects: Iterable[dict]) -> list[str]:
        services = [o for o in existing_objects if o.get("kind") == "Service"]
        return self.allocators.rebuild(services)

    def kubernetes_service(self, port: int = 443, target_port: int = 6443) -> dict:
        """The ``default/kubernetes`` Service object the API server maintains (not admitted)."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.kubernetes_service_ip,
                "ports": [{"name": "https", "port": port, "protocol": "TCP", "targetPort": target_port}],
            },
        }

    # --- metadata -----------------------------------------------------------------

    def _kind(self, obj: dict) -> kinds.KindInfo:
        if not isinstance(obj, dict):
            raise BadRequest("object must be a JSON object")
        info = kinds.of(obj)
        if info is None:
            raise BadRequest(
                f'no matches for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"; '
                f"supported: {kinds.supported_list()}"
            )
        return info

    def _check_shape(self, obj: dict, info: kinds.KindInfo) -> None:
        """Types and known fields first, as the API server's decoder does, so that no
        later step ever sees a list where it expects a map."""
        found = schema.check(obj, schemas.BY_KIND[info.kind])
        if found.type_errors:
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            raise Invalid(info.kind, name if isinstance(name, str) else "", found.type_errors, group=info.group)
        if found.unknown:
            raise BadRequest(schema.strict_decoding_message(info.kind, info.api_version, found.unknown))
        found.drop_nulls()

    def _raise(self, info: kinds.KindInfo, obj: dict, errs: list[FieldError], txn: Transaction | None = None) -> None:
        if errs:
            if txn is not None:
                txn.rollback()
            name = (obj.get("metadata") or {}).get("name") or ""
            raise Invalid(info.kind, name, errs, group=info.group)

    def _prepare_meta_create(self, obj: dict, info: kinds.KindInfo) -> None:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if info.namespaced:
            if not meta.get("namespace"):
                meta["namespace"] = "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(self.rng.choice(_GEN_ALPHABET) for _ in range(5))
        meta["uid"] = self.new_uid()
        meta["creationTimestamp"] = self.clock()
        for f in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(f, None)
        if info.kind in ("Deployment", "ReplicaSet"):
            meta["generation"] = 1

    def _prepare_meta_update(self, new: dict, old: dict, info: kinds.KindInfo) -> None:
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        old_meta = old.get("metadata") or {}
        if info.namespaced and not meta.get("namespace"):
            meta["namespace"] = old_meta.get("namespace")
        if not info.namespaced:
            meta.pop("namespace", None)
        for f in ("uid", "creationTimestamp", "generation"):
            if not meta.get(f) and old_meta.get(f) is not None:
                meta[f] = old_meta[f]
        for f in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if f in old_meta:
                meta[f] = old_meta[f]
            else:
                meta.pop(f, None)

    # --- Services -----------------------------------------------------------------

    def _create_service(self, svc: dict, info: kinds.KindInfo) -> dict:
        normalize_cluster_ips(svc, None)
        self._init_ip_family_fields(svc, None, info)
        txn = Transaction()
        try:
            self._alloc_cluster_ips(svc, txn, info)
            self._alloc_node_ports_create(svc, txn, info)
            if service_validation.needs_health_check(svc):
                self._alloc_health_check_port(svc, txn)
        except Exception:
            txn.rollback()
            raise
        self._raise(info, svc, service_validation.validate_service(svc), txn)
        txn.commit()
        return svc

    def _update_service(self, new: dict, old: dict, info: kinds.KindInfo) -> dict:
        patch_allocated_values(new, old)
        normalize_cluster_ips(new, old)
        drop_type_dependent_fields(new, old)
        self._init_ip_family_fields(new, old, info)
        txn = Transaction()
        try:
            self._update_cluster_ips(new, old, txn, info)
            self._update_node_ports(new, old, txn, info)
            self._update_health_check_port(new, old, txn)
        except Exception:
            txn.rollback()
            raise
        self._raise(info, new, service_validation.validate_service_update(new, old), txn)
        txn.commit()
        return new

    def _init_ip_family_fields(self, svc: dict, old: dict | None, info: kinds.KindInfo) -> None:
        """``initIPFamilyFields`` for a single-stack cluster."""
        spec = _spec(svc)
        if spec.get("type") == "ExternalName":
            return
        name = (svc.get("metadata") or {}).get("name", "")
        if spec.get("ipFamilyPolicy") is None:
            old_pol = _spec(old).get("ipFamilyPolicy") if old is not None else None
            if old_pol is not None:
                spec["ipFamilyPolicy"] = old_pol
            elif spec.get("clusterIP") == "None" and not spec.get("selector"):
                spec["ipFamilyPolicy"] = "RequireDualStack"
            else:
                spec["ipFamilyPolicy"] = "SingleStack"
        errs = service_validation.validate_cluster_ips_related(svc)
        if errs:
            raise Invalid("Service", name, errs)
        family = self.allocators.ips.family
        errs = []
        pol = spec["ipFamilyPolicy"]
        cips = spec.get("clusterIPs") or []
        fams = list(spec.get("ipFamilies") or [])
        if pol == "SingleStack":
            if len(cips) == 2:
                errs.append(fe.invalid("spec.ipFamilyPolicy", pol, "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"))
            if len(fams) == 2:
                errs.append(fe.invalid("spec.ipFamilyPolicy", pol, "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"))
        for i, ip in enumerate(cips):
            if ip == "None":
                break
            fam = "IPv6" if fields.parse_ip_sloppy(ip).version == 6 else "IPv4"
            if i >= len(fams):
                if fam != family:
                    errs.append(fe.invalid(f"spec.clusterIPs[{i}]", cips, f"{fam} is not configured on this cluster"))
                else:
                    fams.append(fam)
        if errs:
            raise Invalid("Service", name, errs)
        if spec.get("clusterIP") == "None" and not spec.get("selector"):
            # headless + selectorless: allowed to carry families not configured here
            if not fams:
                fams = [family]
            if len(fams) < 2 and pol != "SingleStack":
                fams.append("IPv6" if fams[0] == "IPv4" else "IPv4")
            spec["ipFamilies"] = fams
            return
        if pol == "RequireDualStack":
            errs.append(fe.invalid("spec.ipFamilyPolicy", pol, "this cluster is not configured for dual-stack services"))
        for i, fam in enumerate(fams):
            if fam != family:
                errs.append(fe.invalid(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster"))
        if errs:
            raise Invalid("Service", name, errs)
        spec["ipFamilies"] = fams or [family]

    def _alloc_cluster_ips(self, svc: dict, txn: Transaction, info: kinds.KindInfo) -> None:
        spec = _spec(svc)
        if spec.get("type") == "ExternalName" or service_validation.is_headless(svc):
            return
        ips = self.allocators.ips
        cips = spec.get("clusterIPs") or []
        if not cips:
            meta = svc.get("metadata") or {}
            try:
                if (meta.get("namespace"), meta.get("name")) == ("default", "kubernetes") and not ips.has(ips.kubernetes_ip):
                    ip = ips.allocate(ips.kubernetes_ip)
                else:
                    ip = ips.allocate_next()
            except AllocationError as e:
                raise InternalError(f"failed to allocate a serviceIP: {e}") from None
        else:
            want = cips[0]
            try:
                ip = ips.allocate(str(fields.parse_ip_sloppy(want)))
            except AllocationError as e:
                name = (svc.get("metadata") or {}).get("name", "")
                raise Invalid("Service", name, [fe.invalid("spec.clusterIPs", cips, f"failed to allocate IP {want}: {e}")]) from None
        txn.allocated_by(ips, ip)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    def _should_allocate_node_ports(self, svc: dict) -> bool:
        spec = _spec(svc)
        if spec.get("type") == "NodePort":
            return True
        if spec.get("type") == "LoadBalancer":
            return spec.get("allocateLoadBalancerNodePorts") is not False
        return False

    def _node_port_error(self, svc: dict, i: int, np: Any, err: Exception) -> Invalid:
        name = (svc.get("metadata") or {}).get("name", "")
        return Invalid("Service", name, [fe.invalid(f"spec.ports[{i}].nodePort", np, str(err))])

    def _alloc_node_ports_create(self, svc: dict, txn: Transaction, info: kinds.KindInfo) -> None:
        """``initNodePorts``: one node port per service port number (shared across protocols)."""
        spec = _spec(svc)
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            return
        alloc = self.allocators.ports
        ports = spec.get("ports") or []
        by_port: dict[Any, int] = {}
        should = self._should_allocate_node_ports(svc)
        for i, sp in enumerate(ports):
            np = sp.get("nodePort") or 0
            if not np and not should:
                continue
            if not fields.is_int(np):
                continue  # reported by validation
            got = by_port.get(sp.get("port"), 0)
            if not got:
                requested = next(
                    (p.get("nodePort") for p in ports[i:] if p.get("port") == sp.get("port") and fields.is_int(p.get("nodePort")) and p.get("nodePort")),
                    0,
                )
                if requested:
                    try:
                        alloc.allocate(requested)
                    except AllocationError as e:
                        raise self._node_port_error(svc, i, requested, e) from None
                    txn.allocated_by(alloc, requested)
                    sp["nodePort"] = requested
                    by_port[sp.get("port")] = requested
                else:
                    try:
                        got = alloc.allocate_next()
                    except AllocationError as e:
                        raise InternalError(f"failed to allocate a nodePort: {e}") from None
                    txn.allocated_by(alloc, got)
                    sp["nodePort"] = got
                    by_port[sp.get("port")] = got
            elif np != got:
                if not np:
                    sp["nodePort"] = got
                else:
                    try:
                        alloc.allocate(np)
                    except AllocationError as e:
                        raise self._node_port_error(svc, i, np, e) from None
                    txn.allocated_by(alloc, np)

    def _alloc_health_check_port(self, svc: dict, txn: Transaction) -> None:
        spec = _spec(svc)
        alloc = self.allocators.ports
        hc = spec.get("healthCheckNodePort") or 0
        if hc:
            try:
                alloc.allocate(hc)
            except AllocationError as e:
                raise InternalError(f"failed to allocate requested HealthCheck NodePort {hc}: {e}") from None
            txn.allocated_by(alloc, hc)
        else:
            try:
                hc = alloc.allocate_next()
            except AllocationError as e:
                raise InternalError(f"failed to allocate a HealthCheck NodePort {hc}: {e}") from None
            txn.allocated_by(alloc, hc)
            spec["healthCheckNodePort"] = hc

    def _update_cluster_ips(self, new: dict, old: dict, txn: Transaction, info: kinds.KindInfo) -> None:
        ns, os_ = _spec(new), _spec(old)
        if os_.get("type") == "ExternalName" and ns.get("type") != "ExternalName":
            self._alloc_cluster_ips(new, txn, info)
            return
        if service_validation.is_headless(old):
            return
        if os_.get("type") != "ExternalName" and ns.get("type") == "ExternalName":
            for ip in os_.get("clusterIPs") or []:
                if ip and ip != "None":
                    txn.release_later(self.allocators.ips, ip)

    def _update_node_ports(self, new: dict, old: dict, txn: Transaction, info: kinds.KindInfo) -> None:
        ns, os_ = _spec(new), _spec(old)
        alloc = self.allocators.ports
        old_ports = [p.get("nodePort") for p in os_.get("ports") or [] if p.get("nodePort")]
        if os_.get("type") in ("NodePort", "LoadBalancer") and ns.get("type") in ("ExternalName", "ClusterIP"):
            for np in set(old_ports):
                txn.release_later(alloc, np)
        if ns.get("type") not in ("NodePort", "LoadBalancer"):
            return
        should = self._should_allocate_node_ports(new)
        claimed: set = set()
        for i, sp in enumerate(ns.get("ports") or []):
            np = sp.get("nodePort") or 0
            if not np and not should:
                continue
            if not fields.is_int(np):
                continue
            if np:
                if np not in old_ports and np not in claimed:
                    try:
                        alloc.allocate(np)
                    except AllocationError as e:
                        raise self._node_port_error(new, i, np, e) from None
                    txn.allocated_by(alloc, np)
                    claimed.add(np)
            else:
                try:
                    got = alloc.allocate_next()
                except AllocationError as e:
                    raise InternalError(f"failed to allocate a nodePort: {e}") from None
                txn.allocated_by(alloc, got)
                sp["nodePort"] = got
        new_ports = {p.get("nodePort") for p in ns.get("ports") or [] if p.get("nodePort")}
        if os_.get("type") in ("NodePort", "LoadBalancer"):
            for np in set(old_ports) - new_ports:
                txn.release_later(alloc, np)

    def _update_health_check_port(self, new: dict, old: dict, txn: Transaction) -> None:
        needed, needs = service_validation.needs_health_check(old), service_validation.needs_health_check(new)
        old_hc = _spec(old).get("healthCheckNodePort") or 0
        if not needed and needs:
            self._alloc_health_check_port(new, txn)
        elif needed and not needs:
            if old_hc and old_hc not in service_node_ports(new):
                txn.release_later(self.allocators.ports, old_hc)


# --- Service update helpers (pkg/registry/core/service/storage + strategy) --------


def normalize_cluster_ips(new: dict, old: dict | None) -> None:
    """Keep ``clusterIP`` and ``clusterIPs`` in sync for clients that set only one."""
    ns = _spec(new)
    cip, cips = ns.get("clusterIP") or "", ns.get("clusterIPs") or []
    if old is None:
        if cip and not cips:
            ns["clusterIPs"] = [cip]
        return
    os_ = _spec(old)
    ocip, ocips = os_.get("clusterIP") or "", os_.get("clusterIPs") or []
    if ocips and not cips and ocip == cip:
        ns["clusterIPs"] = list(ocips)
        cips = ns["clusterIPs"]
    if ocip != cip:
        same = list(ocips) == list(cips)
        if ocip and not cip:
            if same:
                ns.pop("clusterIPs", None)
        elif same:
            ns["clusterIPs"] = [cip]


def _needs_node_port(svc: dict) -> bool:
    return _spec(svc).get("type") in ("NodePort", "LoadBalancer")


def patch_allocated_values(new: dict, old: dict) -> None:
    """Carry over allocated values a client left out (idempotent ``kubectl apply``/PUT)."""
    ns, os_ = _spec(new), _spec(old)
    if ns.get("type") != "ExternalName" and os_.get("type") != "ExternalName":
        if not ns.get("clusterIP") and os_.get("clusterIP"):
            ns["clusterIP"] = os_["clusterIP"]
        if not ns.get("clusterIPs") and os_.get("clusterIPs"):
            ns["clusterIPs"] = list(os_["clusterIPs"])
    if _needs_node_port(old) and _needs_node_port(new):
        used = {p.get("nodePort") for p in os_.get("ports") or [] if p.get("nodePort")} & {
            p.get("nodePort") for p in ns.get("ports") or [] if p.get("nodePort")
        }
        by_name = {p.get("name") or "": p.get("nodePort") for p in os_.get("ports") or []}
        for p in ns.get("ports") or []:
            if not p.get("nodePort"):
                val = by_name.get(p.get("name") or "")
                if val and val not in used:
                    p["nodePort"] = val
    if service_validation.needs_health_check(old) and service_validation.needs_health_check(new):
        if not ns.get("healthCheckNodePort"):
            ns["healthCheckNodePort"] = os_.get("healthCheckNodePort")


def drop_type_dependent_fields(new: dict, old: dict) -> None:
    """``dropTypeDependentFields``: wipe values the new type does not use if the user did
    not change them (they are released afterwards)."""
    ns, os_ = _spec(new), _spec(old)
    if os_.get("type") != "ExternalName" and ns.get("type") == "ExternalName":
        if ns.get("clusterIP") == os_.get("clusterIP") and (ns.get("clusterIPs") or []) == (os_.get("clusterIPs") or []):
            ns.pop("clusterIP", None)
            ns.pop("clusterIPs", None)
        if ns.get("ipFamilies") == os_.get("ipFamilies"):
            ns.pop("ipFamilies", None)
        if ns.get("ipFamilyPolicy") == os_.get("ipFamilyPolicy"):
            ns.pop("ipFamilyPolicy", None)
    if _needs_node_port(old) and not _needs_node_port(new):
        old_np = {p.get("nodePort") for p in os_.get("ports") or [] if p.get("nodePort")}
        new_np = {p.get("nodePort") for p in ns.get("ports") or [] if p.get("nodePort")}
        if new_np <= old_np:
            for p in ns.get("ports") or []:
                p.pop("nodePort", None)
    if service_validation.needs_health_check(old) and not service_validation.needs_health_check(new):
        if ns.get("healthCheckNodePort") == os_.get("healthCheckNodePort"):
            ns.pop("healthCheckNodePort", None)
    if os_.get("type") == "LoadBalancer" and ns.get("type") != "LoadBalancer":
        if ns.get("allocateLoadBalancerNodePorts") is not None and ns.get("allocateLoadBalancerNodePorts") == os_.get("allocateLoadBalancerNodePorts"):
            ns.pop("allocateLoadBalancerNodePorts", None)
        if ns.get("loadBalancerClass") == os_.get("loadBalancerClass"):
            ns.pop("loadBalancerClass", None)
    if service_validation.externally_accessible(old) and not service_validation.externally_accessible(new):
        if ns.get("externalTrafficPolicy") == os_.get("externalTrafficPolicy"):
            ns.pop("externalTrafficPolicy", None)
    if ns.get("type") != "LoadBalancer":
        new.setdefault("status", {})["loadBalancer"] = {}


__all__ = [
    "Admission",
    "AdmissionConfig",
    "normalize_cluster_ips",
    "patch_allocated_values",
    "drop_type_dependent_fields",
]
