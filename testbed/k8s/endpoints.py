"""The EndpointSlice controller's decisions as pure functions.

Follows ``k8s.io/endpointslice`` (``Reconciler.Reconcile`` / ``reconcileByPortMapping`` /
``finalize``) as used by kube-controller-manager:

* Services without a selector, and ExternalName Services, get nothing from the
  controller; slices it does not manage (other ``managed-by``) are never touched;
* one group of slices per address type (from ``spec.ipFamilies``) and per distinct set of
  resolved ports (named ``targetPort``\\ s are resolved per pod from its containerPorts,
  so pods resolving differently land in different slices);
* a pod is an endpoint if it is not terminal (Succeeded/Failed) and has an IP; its
  conditions are ``serving`` = pod Ready, ``terminating`` = has ``deletionTimestamp``,
  ``ready`` = ``publishNotReadyAddresses`` or (serving and not terminating);
* at most ``max_endpoints_per_slice`` (100) endpoints per slice; existing slices are
  updated in place, removals first, then refilled, new slices for the rest;
* a placeholder slice (no endpoints, no ports) exists when nothing else would;
* new slices are named ``<service>-<5 random chars>`` (``generateName`` + the name the
  API server would generate), labelled ``kubernetes.io/service-name`` and
  ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`` (plus the
  Service's labels and ``service.kubernetes.io/headless`` for headless Services) and
  owned by the Service (``ownerReferences``, controller=true).

Not modelled: topology hints / trafficDistribution, the
``endpoints.kubernetes.io/last-change-trigger-time`` annotation.
"""

from __future__ import annotations

import copy
import random
from collections import defaultdict
from typing import Any, Iterable, Mapping

from .selectors import matches_set

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ZONE = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
MAX_ENDPOINTS_ADDRESSES = 1000  # v1 Endpoints capacity
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_default_rng = random.Random()


def _meta(obj: Mapping) -> Mapping:
    return obj.get("metadata") or {}


def _spec(obj: Mapping) -> Mapping:
    return obj.get("spec") or {}


# --- pod helpers ------------------------------------------------------------------


def is_pod_ready(pod: Mapping) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_ips(pod: Mapping) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def should_pod_be_in_endpoints(pod: Mapping, include_terminating: bool) -> bool:
    """``ShouldPodBeInEndpoints``: not terminal, has an IP, (terminating only if asked)."""
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return False
    if not pod_ips(pod):
        return False
    if not include_terminating and _meta(pod).get("deletionTimestamp"):
        return False
    return True


def find_port(pod: Mapping, svc_port: Mapping) -> int | None:
    """``FindPort``: numeric targetPort as is, named one looked up (name and protocol)."""
    tp = svc_port.get("targetPort")
    if tp in (None, "", 0):
        tp = svc_port.get("port")
    if isinstance(tp, int) and not isinstance(tp, bool):
        return tp
    if isinstance(tp, str):
        proto = svc_port.get("protocol") or "TCP"
        spec = _spec(pod)
        for c in spec.get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("name") == tp and (p.get("protocol") or "TCP") == proto:
                    return p.get("containerPort")
        for c in spec.get("initContainers") or []:
            if c.get("restartPolicy") != "Always":
                continue
            for p in c.get("ports") or []:
                if p.get("name") == tp and (p.get("protocol") or "TCP") == proto:
                    return p.get("containerPort")
    return None


def endpoint_ports(service: Mapping, pod: Mapping) -> list[dict]:
    spec = _spec(service)
    if not spec.get("ports") and spec.get("clusterIP") == "None":
        return []
    out = []
    for sp in spec.get("ports") or []:
        num = find_port(pod, sp)
        if num is None:
            continue
        p = {"name": sp.get("name") or "", "protocol": sp.get("protocol") or "TCP", "port": num}
        if sp.get("appProtocol") is not None:
            p["appProtocol"] = sp["appProtocol"]
        out.append(p)
    return out


def _port_key(ports: Iterable[Mapping]) -> tuple:
    return tuple(
        sorted(
            (p.get("name") or "", p.get("protocol") or "TCP", p.get("port") or 0, p.get("appProtocol") or "")
            for p in ports or []
        )
    )


def _addresses_for(pod: Mapping, address_type: str) -> list[str]:
    out = []
    for ip in pod_ips(pod):
        v6 = ":" in ip
        if (address_type == "IPv6") == v6:
            out.append(ip)
    return out


def pod_to_endpoint(pod: Mapping, node: Mapping | None, service: Mapping, address_type: str) -> dict:
    meta = _meta(pod)
    serving = is_pod_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    ready = bool(_spec(service).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: dict[str, Any] = {
        "addresses": _addresses_for(pod, address_type),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""), "uid": meta.get("uid", "")},
    }
    spec = _spec(pod)
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    if node is not None and (_meta(node).get("labels") or {}).get(LABEL_ZONE):
        ep["zone"] = _meta(node)["labels"][LABEL_ZONE]
    if spec.get("hostname") and spec.get("subdomain") == _meta(service).get("name") and meta.get("namespace") == _meta(service).get("namespace"):
        ep["hostname"] = spec["hostname"]
    return ep


def _endpoint_key(ep: Mapping) -> tuple:
    ref = ep.get("targetRef") or {}
    return (tuple(sorted(ep.get("addresses") or [])), ep.get("hostname") or "", ref.get("namespace") or "", ref.get("name") or "")


# --- slices -----------------------------------------------------------------------


def address_types(service: Mapping) -> list[str]:
    spec = _spec(service)
    out = []
    for fam in spec.get("ipFamilies") or []:
        if fam in ("IPv4", "IPv6") and fam not in out:
            out.append(fam)
    if out:
        return out
    cip = spec.get("clusterIP") or ""
    if cip and cip != "None":
        return ["IPv6" if ":" in cip else "IPv4"]
    return ["IPv4", "IPv6"]


def _is_service_ip_set(service: Mapping) -> bool:
    cip = _spec(service).get("clusterIP") or ""
    return cip not in ("", "None")


def slice_labels(service: Mapping, controller: str = CONTROLLER_NAME) -> dict:
    reserved = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)
    labels = {k: v for k, v in (_meta(service).get("labels") or {}).items() if k not in reserved}
    if not _is_service_ip_set(service):
        labels[LABEL_HEADLESS] = ""
    labels[LABEL_SERVICE_NAME] = _meta(service).get("name", "")
    labels[LABEL_MANAGED_BY] = controller
    return labels


def _labels_changed(slice_: Mapping, service: Mapping) -> bool:
    reserved = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)
    a = {k: v for k, v in (_meta(slice_).get("labels") or {}).items() if k not in reserved}
    b = {k: v for k, v in (_meta(service).get("labels") or {}).items() if k not in reserved}
    return a != b


def owner_reference(service: Mapping) -> dict:
    m = _meta(service)
    return {"apiVersion": "v1", "kind": "Service", "name": m.get("name", ""), "uid": m.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def owned_by(slice_: Mapping, service: Mapping) -> bool:
    uid = _meta(service).get("uid", "")
    return any(
        o.get("uid", "") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
        for o in _meta(slice_).get("ownerReferences") or []
    )


def slice_prefix(service_name: str) -> str:
    from .fields import name_is_dns_subdomain

    prefix = f"{service_name}-"
    if name_is_dns_subdomain(prefix, True):
        prefix = service_name
    return prefix


def new_endpoint_slice(service: Mapping, ports: list[dict], address_type: str) -> dict:
    m = _meta(service)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": slice_prefix(m.get("name", "")),
            "namespace": m.get("namespace", ""),
            "labels": slice_labels(service),
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": address_type,
        "endpoints": [],
        "ports": copy.deepcopy(ports),
    }


def is_managed_slice_for(slice_: Mapping, service: Mapping, controller: str = CONTROLLER_NAME) -> bool:
    m, sm = _meta(slice_), _meta(service)
    labels = m.get("labels") or {}
    return (
        m.get("namespace", "") == sm.get("namespace", "")
        and labels.get(LABEL_SERVICE_NAME) == sm.get("name")
        and labels.get(LABEL_MANAGED_BY) == controller
    )


def _reconcile_port_mapping(service, existing, desired: dict, ports, address_type, max_eps):
    by_name: dict[str, dict] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []
    for sl in existing:
        name = _meta(sl).get("name", "")
        by_name[name] = sl
        new_eps = []
        changed = False
        for ep in sl.get("endpoints") or []:
            key = _endpoint_key(ep)
            got = desired.pop(key, None)
            if got is not None:
                new_eps.append(got)
                if got != ep:
                    changed = True
        labels_changed = _labels_changed(sl, service)
        if changed or len(new_eps) != len(sl.get("endpoints") or []):
            if not new_eps:
                to_delete.append(name)
            else:
                cp = copy.deepcopy(sl)
                cp["endpoints"] = new_eps
                cp["metadata"]["labels"] = slice_labels(service)
                by_name[name] = cp
                to_update.append(name)
        elif labels_changed:
            cp = copy.deepcopy(sl)
            cp["metadata"]["labels"] = slice_labels(service)
            by_name[name] = cp
            to_update.append(name)
        else:
            unchanged.append(name)

    remaining = list(desired.values())
    if remaining and to_update:
        for name in sorted(to_update, key=lambda n: -len(by_name[n]["endpoints"])):
            sl = by_name[name]
            room = max_eps - len(sl["endpoints"])
            if room > 0:
                sl["endpoints"].extend(remaining[:room])
                remaining = remaining[room:]
            if not remaining:
                break

    to_create: list[dict] = []
    while remaining:
        fill = None
        if len(remaining) < max_eps and unchanged:
            best, best_diff = None, max_eps
            for name in unchanged:
                diff = max_eps - (len(remaining) + len(by_name[name].get("endpoints") or []))
                if 0 <= diff < best_diff:
                    best, best_diff = name, diff
                    if diff == 0:
                        break
            if best is not None:
                fill = copy.deepcopy(by_name[best])
                fill.setdefault("endpoints", [])
                by_name[best] = fill
        if fill is None:
            fill = new_endpoint_slice(service, ports, address_type)
        room = max_eps - len(fill["endpoints"])
        fill["endpoints"].extend(remaining[:room])
        remaining = remaining[room:]
        name = _meta(fill).get("name")
        if name:
            if name not in to_update:
                to_update.append(name)
            if name in unchanged:
                unchanged.remove(name)
        else:
            to_create.append(fill)
    return to_create, [by_name[n] for n in to_update], [by_name[n] for n in to_delete]


def _is_placeholder(sl: Mapping, placeholder: Mapping) -> bool:
    return (
        _meta(sl).get("namespace") == _meta(placeholder).get("namespace")
        and (_meta(sl).get("labels") or {}) == _meta(placeholder)["labels"]
        and [ _strip_owner(o) for o in _meta(sl).get("ownerReferences") or []] == [_strip_owner(o) for o in _meta(placeholder)["ownerReferences"]]
        and not sl.get("endpoints")
        and not sl.get("ports")
        and sl.get("addressType") == placeholder["addressType"]
    )


def _strip_owner(o: Mapping) -> tuple:
    return (o.get("apiVersion"), o.get("kind"), o.get("name"), o.get("uid"), bool(o.get("controller")), bool(o.get("blockOwnerDeletion")))


def desired_slices(
    service: Mapping,
    pods: Iterable[Mapping],
    existing_slices: Iterable[Mapping],
    *,
    nodes: Iterable[Mapping] | Mapping[str, Mapping] | None = None,
    max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
    rng: random.Random | None = None,
    controller: str = CONTROLLER_NAME,
) -> tuple[list[dict], list[dict], list[dict]]:
    """Return ``(to_create, to_update, to_delete)`` EndpointSlices for ``service``.

    ``pods`` may contain any pods: only those in the Service's namespace matching its
    selector are used.  ``existing_slices`` may contain any slices: only those labelled
    for this Service and managed by the controller are considered.  ``nodes`` (list or
    name->node map) enables upstream's node checks (pods on unknown nodes are skipped
    unless publishNotReadyAddresses) and ``zone``.  New slices get a ``metadata.name``
    (``generateName`` + 5 chars from ``rng``) not clashing with existing ones.
    """
    spec = _spec(service)
    selector = spec.get("selector")
    if not selector or spec.get("type") == "ExternalName":
        return [], [], []
    sm = _meta(service)
    ns = sm.get("namespace", "")
    node_map: dict[str, Mapping] | None = None
    if nodes is not None:
        node_map = dict(nodes) if isinstance(nodes, Mapping) else {_meta(n).get("name", ""): n for n in nodes}
    all_existing = list(existing_slices)
    taken_names = {_meta(s).get("name") for s in all_existing}
    existing = [s for s in all_existing if is_managed_slice_for(s, service, controller)]
    publish = bool(spec.get("publishNotReadyAddresses"))
    matching = [
        p for p in pods
        if _meta(p).get("namespace", "") == ns and matches_set(selector, _meta(p).get("labels"))
    ]

    supported = address_types(service)
    creates: list[dict] = []
    updates: list[dict] = []
    deletes: list[dict] = []
    by_type: dict[str, list[dict]] = defaultdict(list)
    for s in existing:
        if s.get("addressType") not in supported:
            deletes.append(s)
        else:
            by_type[s["addressType"]].append(s)

    for at in supported:
        ex = by_type.get(at, [])
        t_create: list[dict] = []
        t_update: list[dict] = []
        t_delete: list[dict] = []
        ex_by_ports: dict[tuple, list[dict]] = defaultdict(list)
        for s in ex:
            if owned_by(s, service):
                ex_by_ports[_port_key(s.get("ports"))].append(s)
            else:
                t_delete.append(s)
        desired_by_ports: dict[tuple, dict] = {}
        ports_by_key: dict[tuple, list[dict]] = {}
        for pod in matching:
            if not should_pod_be_in_endpoints(pod, True):
                continue
            ports = endpoint_ports(service, pod)
            key = _port_key(ports)
            desired_by_ports.setdefault(key, {})
            ports_by_key.setdefault(key, ports)
            node = None
            if node_map is not None:
                node = node_map.get(_spec(pod).get("nodeName", ""))
                if node is None and not publish:
                    continue
            ep = pod_to_endpoint(pod, node, service, at)
            if ep["addresses"]:
                desired_by_ports[key][_endpoint_key(ep)] = ep
        for key, desired in desired_by_ports.items():
            c, u, d = _reconcile_port_mapping(service, ex_by_ports.get(key, []), desired, ports_by_key[key], at, max_endpoints_per_slice)
            t_create += c
            t_update += u
            t_delete += d
        for key, slices in ex_by_ports.items():
            if key not in desired_by_ports:
                t_delete += slices
        if len(ex) == len(t_delete) and not t_create:
            placeholder = new_endpoint_slice(service, [], at)
            if len(t_delete) == 1 and _is_placeholder(t_delete[0], placeholder):
                t_delete = []
            else:
                t_create.append(placeholder)
        # finalize(): turn creates into updates of slices that would be deleted
        i = 0
        while i < len(t_delete) and t_create:
            victim = t_delete[i]
            if victim.get("addressType") == at and owned_by(victim, service):
                sl = t_create.pop()
                sl["metadata"]["name"] = _meta(victim).get("name")
                t_update.append(sl)
                t_delete.pop(i)
            else:
                i += 1
        creates += t_create
        updates += t_update
        deletes += t_delete

    if sm.get("deletionTimestamp"):
        creates = []
    r = rng or _default_rng
    for sl in creates:
        prefix = sl["metadata"]["generateName"]
        while True:
            name = prefix + "".join(r.choice(_NAME_ALPHABET) for _ in range(5))
            if name not in taken_names:
                break
        taken_names.add(name)
        sl["metadata"]["name"] = name
    return creates, updates, deletes


class PodIndex:
    """Index of pods by (namespace, label key, value) to find a Service's pods without
    scanning every pod (use with :func:`desired_slices` for many Services)."""

    def __init__(self, pods: Iterable[Mapping]):
        self.by_label: dict[tuple[str, str, str], list[Mapping]] = defaultdict(list)
        for p in pods:
            m = _meta(p)
            ns = m.get("namespace", "")
            for k, v in (m.get("labels") or {}).items():
                self.by_label[(ns, k, v)].append(p)

    def for_service(self, service: Mapping) -> list[Mapping]:
        sel = _spec(service).get("selector") or {}
        if not sel:
            return []
        ns = _meta(service).get("namespace", "")
        candidates = min((self.by_label.get((ns, k, v), []) for k, v in sel.items()), key=len)
        return [p for p in candidates if matches_set(sel, _meta(p).get("labels"))]


# --- v1 Endpoints -----------------------------------------------------------------


def endpoints_mirror(service: Mapping, slices: Iterable[Mapping]) -> dict | None:
    """The v1 ``Endpoints`` object the endpoints controller would write for ``service``,
    derived from its EndpointSlices.  Ready endpoints go to ``addresses``, others to
    ``notReadyAddresses``; terminating ones are left out unless publishNotReadyAddresses.
    Returns ``None`` for Services the controller does not manage (no selector,
    ExternalName)."""
    spec = _spec(service)
    if not spec.get("selector") or spec.get("type") == "ExternalName":
        return None
    sm = _meta(service)
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, dict] = {}
    for sl in sorted(slices, key=lambda s: _meta(s).get("name", "")):
        m = _meta(sl)
        if m.get("namespace", "") != sm.get("namespace", "") or (m.get("labels") or {}).get(LABEL_SERVICE_NAME) != sm.get("name"):
            continue
        if sl.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = []
        for p in sl.get("ports") or []:
            if p.get("port") is None:
                continue
            ep_port = {"name": p.get("name") or "", "port": p["port"], "protocol": p.get("protocol") or "TCP"}
            if not ep_port["name"]:
                del ep_port["name"]
            if p.get("appProtocol") is not None:
                ep_port["appProtocol"] = p["appProtocol"]
            ports.append(ep_port)
        ports.sort(key=lambda p: (p.get("name", ""), p["port"], p["protocol"]))
        key = _port_key(ports)
        g = groups.setdefault(key, {"ports": ports, "ready": {}, "notready": {}})
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("terminating") and not publish:
                continue
            ready = cond.get("ready") is not False
            for ip in ep.get("addresses") or []:
                addr: dict[str, Any] = {"ip": ip}
                if ep.get("hostname"):
                    addr["hostname"] = ep["hostname"]
                if ep.get("nodeName"):
                    addr["nodeName"] = ep["nodeName"]
                if ep.get("targetRef"):
                    addr["targetRef"] = dict(ep["targetRef"])
                uid = (ep.get("targetRef") or {}).get("uid", "")
                akey = (ip, uid)
                if ready or publish:
                    g["ready"][akey] = addr
                    g["notready"].pop(akey, None)
                elif akey not in g["ready"]:
                    g["notready"][akey] = addr
    subsets = []
    total = 0
    for key in sorted(groups):
        g = groups[key]
        ready = [g["ready"][k] for k in sorted(g["ready"], key=_ip_sort_key)]
        notready = [g["notready"][k] for k in sorted(g["notready"], key=_ip_sort_key)]
        if not ready and not notready:
            continue
        ss: dict[str, Any] = {}
        if ready:
            ss["addresses"] = ready
        if notready:
            ss["notReadyAddresses"] = notready
        if g["ports"]:
            ss["ports"] = g["ports"]
        total += len(ready) + len(notready)
        subsets.append(ss)
    labels = dict(sm.get("labels") or {})
    if _is_service_ip_set(service):
        labels.pop(LABEL_HEADLESS, None)
    else:
        labels[LABEL_HEADLESS] = ""
    out: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": sm.get("name", ""), "namespace": sm.get("namespace", ""), "labels": labels},
    }
    if total > MAX_ENDPOINTS_ADDRESSES:
        out["metadata"]["annotations"] = {ANNOTATION_OVER_CAPACITY: "truncated"}
        subsets = _truncate(subsets, MAX_ENDPOINTS_ADDRESSES)
    if subsets:
        out["subsets"] = subsets
    return out


def _ip_sort_key(k: tuple[str, str]) -> tuple:
    import ipaddress

    try:
        return (0, ipaddress.ip_address(k[0]).packed, k[1])
    except ValueError:
        return (1, k[0].encode(), k[1])


def _truncate(subsets: list[dict], limit: int) -> list[dict]:
    out = []
    left = limit
    for ss in subsets:
        ss = dict(ss)
        for f in ("addresses", "notReadyAddresses"):
            if f in ss:
                ss[f] = ss[f][: max(left, 0)]
                left -= len(ss[f])
                if not ss[f]:
                    del ss[f]
        if "addresses" in ss or "notReadyAddresses" in ss:
            out.append(ss)
    return out
