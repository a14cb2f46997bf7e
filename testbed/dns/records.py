"""The Kubernetes DNS specification (schema 1.1.0) answered from API objects (pure).

``ClusterIndex`` holds Services, EndpointSlices and Namespaces as the API serves them (plain
dicts, fed by watch events) and ``answer(index, k8s, qname, qtype)`` returns what CoreDNS's
kubernetes plugin answers, including its choice between NXDOMAIN and NODATA:

* ``<svc>.<ns>.svc.<zone>`` A/AAAA: the ClusterIPs; for a headless Service every ready
  endpoint's address; NXDOMAIN for a headless Service without ready endpoints;
* ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` and ``<svc>.<ns>.svc.<zone>`` SRV: one per
  named port (ClusterIP) or per ready endpoint and port (headless), targets in additional;
* ``<hostname>.<svc>.<ns>.svc.<zone>``: an endpoint by its ``hostname``, or by its address
  with dashes when it has none (CoreDNS's extension of the spec);
* ExternalName: a CNAME (the caller resolves the target); no SRV for it (NODATA);
* PTR for ClusterIPs and for endpoint addresses, ``<a-b-c-d>.<ns>.pod.<zone>`` with
  ``pods insecure``, ``dns-version.<zone>`` TXT ``1.1.0``, SOA/NS at the apex;
* a namespace that does not exist makes its names NXDOMAIN; a name that exists but has no
  record of the asked type is NODATA (NOERROR, SOA in authority).
Names are compared case-insensitively; the owner name is the question as asked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .corefile import Kubernetes, in_zone

SCHEMA_VERSION = "1.1.0"
NOERROR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 2, 3, 4, 5
_WILD = ("*", "any")
FALLTHROUGH = -1  # not a DNS rcode: hand the query to the next plugin (forward)


@dataclass(frozen=True)
class RR:
    name: str
    type: str
    ttl: int
    rdata: str


@dataclass
class Answer:
    rcode: int = NOERROR
    answer: list[RR] = field(default_factory=list)
    extra: list[RR] = field(default_factory=list)
    soa: bool = False  # SOA of the zone in authority (negative answers)
    cname_target: str | None = None  # ExternalName: resolve this outside the cluster zone


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class Endpoint:
    ip: str
    hostname: str  # spec hostname, or the address with dashes


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str
    cluster_ips: tuple[str, ...]
    external_name: str
    ports: tuple[Port, ...]

    @property
    def headless(self) -> bool:
        return self.cluster_ips == ("None",) or not self.cluster_ips


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _service(obj: dict) -> Service:
    m, s = obj.get("metadata") or {}, obj.get("spec") or {}
    ips = tuple(s.get("clusterIPs") or ([s["clusterIP"]] if s.get("clusterIP") else []))
    ports = tuple(Port(p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
                  for p in s.get("ports") or [])
    return Service(m.get("namespace") or "default", m.get("name") or "", s.get("type") or "ClusterIP",
                   ips, s.get("externalName") or "", ports)


class ClusterIndex:
    """Services, slices and namespaces by key, with the lookups the answers need."""

    def __init__(self, endpoint_pod_names: bool = False):
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], tuple[str, tuple[Endpoint, ...], tuple[Port, ...]]] = {}
        self.namespaces: set[str] = set()
        self.pods: dict[tuple[str, str], set[str]] = {}  # (namespace, name) -> IPs, for `pods verified`
        self._pod_ips: set[tuple[str, str]] | None = None
        self.endpoint_pod_names = endpoint_pod_names
        self.generation = 0  # bumped on every change: answers derived before it are stale
        self._by_svc: dict[tuple[str, str], list[tuple[tuple[Endpoint, ...], tuple[Port, ...]]]] | None = None
        self._reverse: dict[str, list[str]] | None = None

    # --- feeding ----------------------------------------------------------------

    def apply(self, kind: str, event_type: str, obj: dict) -> set[tuple[str, str]] | None:
        """Apply one watch event; return the (namespace, service) names whose answers may have
        changed, or None when any answer may have (a namespace came or went)."""
        m = obj.get("metadata") or {}
        key = (m.get("namespace") or "default", m.get("name") or "")
        deleted = event_type == "DELETED"
        affected: set[tuple[str, str]] | None = {key}
        if kind == "Namespace":
            (self.namespaces.discard if deleted else self.namespaces.add)(m.get("name") or "")
            affected = None
        elif kind == "Service":
            if deleted:
                self.services.pop(key, None)
            else:
                self.services[key] = _service(obj)
        elif kind == "Pod":
            # CoreDNS drops a terminating pod from its index
            ips = {p["ip"] for p in (obj.get("status") or {}).get("podIPs") or [] if p.get("ip")}
            ips |= {(obj.get("status") or {}).get("podIP")} - {None, ""}
            if deleted or m.get("deletionTimestamp") or not ips:
                self.pods.pop(key, None)
            else:
                self.pods[key] = ips
            self._pod_ips = None
            self.generation += 1
            return {(key[0], "pod")}
        elif kind == "EndpointSlice":
            old = self.slices.pop(key, None)
            affected = {(key[0], old[0])} if old else set()
            if not deleted:
                self.slices[key] = self._slice(obj)
                affected.add((key[0], self.slices[key][0]))
        else:
            raise ValueError(f"kind {kind!r} is not indexed for DNS")
        self.generation += 1
        self._by_svc = self._reverse = None
        return affected

    def _slice(self, obj: dict):
        svc = ((obj.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name", "")
        eps = []
        for ep in obj.get("endpoints") or []:
            # CoreDNS publishes an endpoint unless it is explicitly not ready.
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            ref = (ep.get("targetRef") or {}).get("name") or ""
            for ip in ep.get("addresses") or []:
                host = ep.get("hostname") or (self.endpoint_pod_names and ref) or dashed(ip)
                eps.append(Endpoint(ip, host))
        ports = tuple(Port(p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0))
                      for p in obj.get("ports") or [])
        # No ports: the addresses still answer A queries (CoreDNS's port -1 sentinel).
        return svc, tuple(eps), ports or (Port("", "", -1),)

    # --- lookups ----------------------------------------------------------------

    def has_pod_ip(self, namespace: str, ip: str) -> bool:
        if self._pod_ips is None:
            self._pod_ips = {(ns, a) for (ns, _), ips in self.pods.items() for a in ips}
        return (namespace, ip) in self._pod_ips

    def endpoints(self, namespace: str, service: str):
        if self._by_svc is None:
            by: dict = {}
            for (ns, _), (svc, eps, ports) in self.slices.items():
                by.setdefault((ns, svc), []).append((eps, ports))
            self._by_svc = by
        return self._by_svc.get((namespace, service), [])

    def reverse(self, ip: str, zone: str) -> list[str]:
        if self._reverse is None:
            rev: dict[str, list[str]] = {}
            for s in self.services.values():
                if not s.headless:
                    for cip in s.cluster_ips:
                        rev.setdefault(cip, []).append(f"{s.name}.{s.namespace}.svc.")
            eps_rev: dict[str, list[str]] = {}
            for (ns, _), (svc, eps, _) in self.slices.items():
                for e in eps:
                    eps_rev.setdefault(e.ip, []).append(f"{e.hostname}.{svc}.{ns}.svc.")
            for addr, names in eps_rev.items():
                rev.setdefault(addr, names)  # a ClusterIP wins, as in CoreDNS
            self._reverse = rev
        return [n + zone for n in self._reverse.get(ip, [])]


# --- answering -----------------------------------------------------------------------


def _match(asked: str, have: str) -> bool:
    return asked in _WILD or asked == have.lower()


def _strip(label: str) -> str:
    return label[1:] if label.startswith("_") else label


@dataclass
class _Request:
    pod_or_svc: str = ""
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = "*"
    protocol: str = "*"


class _Invalid(Exception):
    pass


def _parse(base: list[str]) -> _Request:
    r = _Request()
    if not base:
        return r
    if base == ["svc"] or base == ["pod"]:
        return r
    segs = list(base)
    r.pod_or_svc = segs.pop()
    if r.pod_or_svc not in ("svc", "pod"):
        raise _Invalid
    if segs:
        r.namespace = segs.pop()
    if segs:
        r.service = segs.pop()
    if len(segs) == 1:
        r.endpoint = segs[0]
    elif len(segs) == 2:
        r.port, r.protocol = _strip(segs[0]), _strip(segs[1])
    elif segs:
        raise _Invalid
    return r


@dataclass(frozen=True)
class _Rec:
    host: str  # an IP or, for ExternalName, a name
    port: int
    key: str  # the owner the record lives at (SRV target), without the zone


def _ns_exposed(index: ClusterIndex, k8s: Kubernetes, ns: str) -> bool:
    return (not k8s.namespaces or ns in k8s.namespaces) and ns in index.namespaces


def _records(index: ClusterIndex, k8s: Kubernetes, r: _Request) -> list[_Rec] | None:
    """CoreDNS's ``Records``: the matching services, [] for NODATA, None for NXDOMAIN."""
    if not r.pod_or_svc:
        return []
    if not _ns_exposed(index, k8s, r.namespace) and r.namespace:
        return None
    if r.pod_or_svc == "pod":
        return _pods(index, k8s, r)
    if not r.namespace or not r.service:
        return [] if not r.namespace or _ns_exposed(index, k8s, r.namespace) else None
    # Object names are lowercase DNS labels (API validation), so the lowered question is the key.
    svc = index.services.get((r.namespace, r.service))
    if svc is None:
        return None
    key = f"{svc.name}.{svc.namespace}.svc"
    if svc.type == "ExternalName":
        return [_Rec(svc.external_name.rstrip(".") + ".", 0, key)] if svc.external_name else None
    out: list[_Rec] = []
    if svc.headless or r.endpoint:
        for eps, ports in index.endpoints(svc.namespace, svc.name):
            for e in eps:
                if r.endpoint and r.endpoint != e.hostname.lower():
                    continue
                for p in ports:
                    if _match(r.port, p.name) and _match(r.protocol, p.protocol):
                        out.append(_Rec(e.ip, p.port, f"{e.hostname}.{key}"))
        return out or None
    for p in svc.ports:
        if _match(r.port, p.name) and _match(r.protocol, p.protocol):
            out += [_Rec(ip, p.port, key) for ip in svc.cluster_ips]
    return out or None


def _pods(index: ClusterIndex, k8s: Kubernetes, r: _Request) -> list[_Rec] | None:
    if k8s.pods == "disabled":
        return None
    if not r.service:
        return []
    name = r.service
    ip = name.replace("-", ".") if name.count("-") == 3 and "--" not in name else name.replace("-", ":")
    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        return None
    if k8s.pods == "verified" and not index.has_pod_ip(r.namespace, ip):
        return None
    return [_Rec(ip, 0, f"{name}.{r.namespace}.pod")]


def cache_tag(qname: str, k8s: Kubernetes) -> tuple[str, str] | None:
    """The (namespace, service) a forward-zone answer depends on alone, for invalidation;
    None when it may depend on anything (apex, namespace level, reverse, pods)."""
    zone = zone_of(qname, k8s)
    if zone is None or zone == qname:
        return None
    labels = qname[: -len(zone) - 1].split(".")
    if len(labels) >= 3 and labels[-1] == "svc" and 3 <= len(labels) <= 5:
        return labels[-2], labels[-3]
    if len(labels) == 3 and labels[-1] == "pod":
        return labels[-2], "pod"  # shared with a Service named "pod": that only invalidates more
    return None


def _family(host: str) -> str:
    try:
        return "AAAA" if ipaddress.ip_address(host).version == 6 else "A"
    except ValueError:
        return "CNAME"


def zone_of(qname: str, k8s: Kubernetes) -> str | None:
    best = None
    for z in k8s.zones:
        if in_zone(qname, z) and (best is None or len(z) > len(best)):
            best = z
    return best


def answer(index: ClusterIndex, k8s: Kubernetes, qname: str, qtype: str) -> Answer:
    """Answer ``qname``/``qtype`` (owner names as asked; matching case-insensitive)."""
    name = qname.lower()
    zone = zone_of(name, k8s)
    if zone is None:
        return Answer(rcode=FALLTHROUGH)
    ttl = k8s.ttl
    base = name[: -len(zone)].rstrip(".").split(".") if name != zone else []
    base = [] if base == [""] else base
    if name.endswith(".arpa."):
        return _reverse(index, k8s, qname, qtype, zone)
    if qtype == "SOA" and not base:
        return Answer(answer=[soa_rr(zone, ttl)])
    if qtype == "NS" and not base:
        return _ns(index, qname, zone, ttl)
    if base == ["ns", "dns"] and qtype in ("A", "AAAA"):
        return _ns_addr(index, qname, zone, ttl, qtype)
    if qtype == "TXT" and base == ["dns-version"]:
        return Answer(answer=[RR(qname, "TXT", 28800, f'"{SCHEMA_VERSION}"')])
    try:
        recs = _records(index, k8s, _parse(base))
    except _Invalid:
        recs = None
    if recs is None:
        return Answer(rcode=NXDOMAIN, soa=True) if not k8s.falls_through(name) else Answer(rcode=FALLTHROUGH)
    if qtype == "TXT":
        # CoreDNS: only dns-version has a TXT; other existing names are NODATA, the rest NXDOMAIN.
        return Answer(soa=True) if recs else Answer(rcode=NXDOMAIN, soa=True)
    out = Answer()
    if qtype in ("A", "AAAA"):
        seen = set()
        for rec in recs:
            fam = _family(rec.host)
            if fam == "CNAME":
                if rec.host.lower() != name:
                    out.answer.append(RR(qname, "CNAME", ttl, rec.host))
                    out.cname_target = rec.host
                break
            if fam == qtype and rec.host not in seen:
                seen.add(rec.host)
                out.answer.append(RR(qname, qtype, ttl, rec.host))
    elif qtype == "SRV":
        internal = [rec for rec in recs if _family(rec.host) != "CNAME"]
        weight = max(1, 100 // len(internal)) if internal else 0
        seen_srv, seen_addr = set(), set()
        for rec in internal:
            if rec.port == -1:
                continue
            target = f"{rec.key}.{zone}"
            if (target, rec.port) not in seen_srv:
                seen_srv.add((target, rec.port))
                out.answer.append(RR(qname, "SRV", ttl, f"0 {weight} {rec.port} {target}"))
            if (target, rec.host) not in seen_addr:
                seen_addr.add((target, rec.host))
                out.extra.append(RR(target, _family(rec.host), ttl, rec.host))
    elif qtype == "CNAME":
        out.answer += [RR(qname, "CNAME", ttl, rec.host) for rec in recs if _family(rec.host) == "CNAME"]
    if not out.answer:
        out.soa = True
    return out


def _reverse(index: ClusterIndex, k8s: Kubernetes, qname: str, qtype: str, zone: str) -> Answer:
    ip = _ip_from_reverse(qname.lower())
    names = index.reverse(ip, k8s.zones[0]) if ip else []
    if not names:
        return Answer(rcode=FALLTHROUGH) if k8s.falls_through(qname.lower()) else Answer(rcode=NXDOMAIN, soa=True)
    if qtype != "PTR":
        return Answer(soa=True)
    return Answer(answer=[RR(qname, "PTR", k8s.ttl, n) for n in names])


def _ip_from_reverse(name: str) -> str | None:
    labels = name.rstrip(".").split(".")
    try:
        if name.endswith(".in-addr.arpa.") and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if name.endswith(".ip6.arpa.") and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except ValueError:
        return None
    return None


def _dns_ips(index: ClusterIndex, qtype: str) -> list[str]:
    svc = index.services.get(("kube-system", "kube-dns"))
    return [ip for ip in (svc.cluster_ips if svc and not svc.headless else ()) if _family(ip) == qtype]


def _ns(index: ClusterIndex, qname: str, zone: str, ttl: int) -> Answer:
    target = f"ns.dns.{zone}"
    return Answer(answer=[RR(qname, "NS", ttl, target)],
                  extra=[RR(target, "A", ttl, ip) for ip in _dns_ips(index, "A")])


def _ns_addr(index: ClusterIndex, qname: str, zone: str, ttl: int, qtype: str) -> Answer:
    return Answer(answer=[RR(qname, qtype, ttl, ip) for ip in _dns_ips(index, qtype)],
                  soa=not _dns_ips(index, qtype))


def soa_rr(zone: str, ttl: int, serial: int = 1) -> RR:
    return RR(zone, "SOA", ttl, f"ns.dns.{zone} hostmaster.{zone} {serial} 7200 1800 86400 {ttl}")
