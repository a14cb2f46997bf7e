"""Desired nginx configuration as data, built from Ingresses, Services, EndpointSlices and
Secrets the way ingress-nginx's ``createServers``/``createUpstreams`` do (pure).

* :func:`resolve` checks one Ingress against the Secrets it names (TLS material, htpasswd)
  and parses its annotations; a missing Secret or an invalid certificate makes it *bad*, and
  the controller keeps serving that Ingress's last good resolution.
* :func:`build` turns the resolved Ingresses plus Services/EndpointSlices into a
  :class:`Config`: one :class:`Server` per host (``_`` is the default server), locations
  ordered as nginx will pick them, upstreams holding the ready endpoints of each backend.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import annotations as ann
from .certs import CertError, check_pair

DEFAULT_SERVER = "_"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


@dataclass(frozen=True)
class Backend:
    namespace: str
    service: str
    port: int | str  # Service port number or name

    @property
    def upstream(self) -> str:
        return f"{self.namespace}-{self.service}-{self.port}"


@dataclass(frozen=True)
class Resolved:
    """An Ingress with everything it needs from Secrets, ready to be rendered."""

    namespace: str
    name: str
    spec: dict
    annotations: ann.Annotations
    tls: dict[str, str] = field(default_factory=dict)  # host ("" = all rule hosts) -> pem file name
    pem: dict[str, str] = field(default_factory=dict)  # pem file name -> cert + key
    htpasswd: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Location:
    path: str
    path_type: str       # Exact, Prefix, ImplementationSpecific
    match: str           # what follows "location": "= /x", "/x/", '~* "^/x"'
    backend: Backend | None
    ingress: str         # namespace/name, for the comment above the location
    annotations: ann.Annotations
    htpasswd_file: str | None
    ssl_redirect: bool


@dataclass(frozen=True)
class Server:
    name: str
    pem: str | None                  # file under ssl/, None = the default certificate
    locations: tuple[Location, ...]


@dataclass(frozen=True)
class Upstream:
    name: str
    endpoints: tuple[str, ...]  # "ip:port", sorted


@dataclass(frozen=True)
class Config:
    servers: tuple[Server, ...]
    upstreams: tuple[Upstream, ...]
    files: dict[str, str]   # relative path -> content (certificates, htpasswd files)


class ResolveError(Exception):
    """Why an Ingress cannot be served now (reason for the event, message)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _meta(o: Mapping) -> Mapping:
    return o.get("metadata") or {}


def _secret_bytes(secret: Mapping, key: str) -> bytes | None:
    value = (secret.get("data") or {}).get(key)
    return base64.b64decode(value) if isinstance(value, str) else None


def owns(ing: Mapping, class_name: str, is_default_class: bool) -> bool:
    """Whether the controller of IngressClass *class_name* serves this Ingress."""
    cls = (ing.get("spec") or {}).get("ingressClassName")
    if cls:
        return cls == class_name
    legacy = (_meta(ing).get("annotations") or {}).get(CLASS_ANNOTATION)
    if legacy:
        return legacy == class_name
    return is_default_class


def resolve(ing: Mapping, secrets: Mapping[tuple[str, str], Mapping]) -> tuple[Resolved, list[str]]:
    """Resolve one Ingress; raises :class:`ResolveError` when it cannot be served. Returns the
    resolution and warnings (bad annotations) that do not stop it."""
    ns, name = _meta(ing).get("namespace") or "default", _meta(ing)["name"]
    spec = ing.get("spec") or {}
    parsed, warnings = ann.parse(_meta(ing).get("annotations"))
    tls: dict[str, str] = {}
    pem: dict[str, str] = {}
    for entry in spec.get("tls") or []:
        secret_name = entry.get("secretName")
        if not secret_name:
            continue  # upstream: TLS without a Secret uses the default certificate
        secret = secrets.get((ns, secret_name))
        if secret is None:
            raise ResolveError("SecretNotFound", f'secret "{ns}/{secret_name}" not found')
        crt, key = _secret_bytes(secret, "tls.crt"), _secret_bytes(secret, "tls.key")
        if crt is None or key is None:
            raise ResolveError("InvalidCertificate", f'secret "{ns}/{secret_name}" has no tls.crt/tls.key')
        try:
            check_pair(crt, key)
        except CertError as e:
            raise ResolveError("InvalidCertificate", f'secret "{ns}/{secret_name}": {e}') from None
        file = f"{ns}-{secret_name}.pem"
        pem[file] = crt.decode().rstrip("\n") + "\n" + key.decode().rstrip("\n") + "\n"
        for host in entry.get("hosts") or [""]:
            tls[host] = file
    htpasswd = None
    if parsed.auth_type == "basic":
        sns, _, sname = parsed.auth_secret.rpartition("/")
        secret = secrets.get((sns or ns, sname))
        if secret is None:
            raise ResolveError("SecretNotFound", f'auth secret "{sns or ns}/{sname}" not found')
        auth = _secret_bytes(secret, "auth")
        if auth is None:
            raise ResolveError("InvalidSecret", f'auth secret "{sns or ns}/{sname}" has no key "auth"')
        htpasswd = auth.decode(errors="replace").rstrip("\n") + "\n"
    return Resolved(ns, name, spec, parsed, tls, pem, htpasswd), warnings


def _backend(ns: str, b: Mapping | None) -> Backend | None:
    svc = (b or {}).get("service")
    if not svc:
        return None
    port = svc.get("port") or {}
    return Backend(ns, svc["name"], port.get("number") or port.get("name") or 0)


def ready_endpoints(backend: Backend, services: Mapping[tuple[str, str], Mapping],
                    slices: Iterable[Mapping]) -> tuple[str, ...]:
    """``ip:targetPort`` of the ready endpoints behind the Service port (not its ClusterIP)."""
    svc = services.get((backend.namespace, backend.service))
    if svc is None:
        return ()
    sp = next((p for p in (svc.get("spec") or {}).get("ports") or []
               if (isinstance(backend.port, int) and p.get("port") == backend.port)
               or (isinstance(backend.port, str) and p.get("name") == backend.port)), None)
    if sp is None:
        return ()
    out = set()
    for sl in slices:
        m = _meta(sl)
        if m.get("namespace") != backend.namespace or \
                (m.get("labels") or {}).get("kubernetes.io/service-name") != backend.service:
            continue
        port = next((p.get("port") for p in sl.get("ports") or [] if (p.get("name") or "") == (sp.get("name") or "")), None)
        if port is None:
            continue
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for addr in ep.get("addresses") or []:
                out.add(f"{addr}:{port}")
    return tuple(sorted(out))


def _locations(r: Resolved, rule_paths: list, htpasswd_file: str | None, tls: bool, regex: bool) -> list[Location]:
    out = []
    a = r.annotations
    redirect = tls and a.ssl_redirect
    for p in rule_paths:
        path, path_type = p.get("path") or "/", p.get("pathType") or "ImplementationSpecific"
        backend = _backend(r.namespace, p.get("backend"))

        def loc(match: str, pt: str, path: str = path) -> Location:
            return Location(path, pt, match, backend, r.key, a, htpasswd_file, redirect)

        if regex:
            out.append(loc(f'~* "^{path}"', path_type))
        elif path_type == "Exact":
            out.append(loc(f"= {path}", path_type))
        elif path.endswith("/"):
            out.append(loc(path, path_type))
        else:
            # Prefix by path element: /api is /api exactly or anything under /api/, never /apiv1
            out.append(loc(f"= {path}", path_type))
            out.append(loc(path + "/", path_type))
    return out


def build(resolved: Iterable[Resolved], services: Mapping[tuple[str, str], Mapping],
          slices: Iterable[Mapping]) -> Config:
    slices = list(slices)
    by_host: dict[str, list[Location]] = {}
    host_pem: dict[str, str] = {}
    regex_hosts: set[str] = set()
    files: dict[str, str] = {}
    resolved = sorted(resolved, key=lambda r: r.key)
    for r in resolved:
        for rule in r.spec.get("rules") or []:
            if r.annotations.rewrite_target or r.annotations.use_regex:
                regex_hosts.add(rule.get("host") or DEFAULT_SERVER)
    for r in resolved:
        files.update({f"ssl/{k}": v for k, v in r.pem.items()})
        hp = None
        if r.htpasswd is not None:
            hp = f"auth/{r.namespace}-{r.name}.passwd"
            files[hp] = r.htpasswd
        hosts = [rule.get("host") or DEFAULT_SERVER for rule in r.spec.get("rules") or []]
        for host in hosts:
            file = r.tls.get(host) or (r.tls.get("") if host != DEFAULT_SERVER else None)
            if file and host not in host_pem:
                host_pem[host] = file
        for rule in r.spec.get("rules") or []:
            host = rule.get("host") or DEFAULT_SERVER
            locs = by_host.setdefault(host, [])
            for new in _locations(r, (rule.get("http") or {}).get("paths") or [], hp, host in host_pem,
                                  host in regex_hosts):
                if all(old.match != new.match for old in locs):  # first (oldest key) wins, as upstream
                    locs.append(new)
        default = _backend(r.namespace, r.spec.get("defaultBackend"))
        if default is not None:
            for host in {DEFAULT_SERVER, *hosts}:
                locs = by_host.setdefault(host, [])
                match = '~* "^/"' if host in regex_hosts else "/"
                if all(old.match != match for old in locs):
                    locs.append(Location("/", "Prefix", match, default, r.key, ann.Annotations(), None,
                                         host in host_pem and r.annotations.ssl_redirect))
    by_host.setdefault(DEFAULT_SERVER, [])
    servers = []
    for host in sorted(by_host, key=lambda h: (h != DEFAULT_SERVER, h)):
        # regex locations are tried in order: longest path first, as ingress-nginx sorts them
        locs = sorted(by_host[host], key=lambda l: (-len(l.path), l.match))
        servers.append(Server(host, host_pem.get(host), tuple(locs)))
    backends = {l.backend for s in servers for l in s.locations if l.backend is not None}
    upstreams = tuple(Upstream(b.upstream, ready_endpoints(b, services, slices))
                      for b in sorted(backends, key=lambda b: b.upstream))
    return Config(tuple(servers), upstreams, files)
