"""The ``checks:`` section of a scenario: parse and validate (pure; every problem at once).

    checks:
      - name: clusterip-across-nodes        # unique; lower-case letters, digits, '-'
        description: free text
        from: pod/client                    # pod/[NAMESPACE/]NAME | node/NAME | external/NAME
        to: {service: web, port: 80}        # see DESTINATIONS below
        protocol: TCP                       # TCP | UDP
        retries: 0                          # re-run a failing check up to N times (declared, not coded)
        expect:
          reach: answered                   # answered | refused | dropped
          backends: {requests: 30, pods: [web-1, web-2], distinct: 2, silent: [web-3]}
          dnat: true                        # the backend's veth shows pod IP:targetPort, not the front end
          source: client                    # client | masquerade | gateway | an IPv4 address
          vxlan: {ttl: 63, mtu: true}       # or true
          hairpin: true                     # true | false
          rules: absent                     # present | absent (KUBE-SVC chains of to.service on every node)
          status: 200                       # HTTP status of a health check port (to.via: healthCheck)
          steady: {...}                     # traffic across an action (rolling update, pod replacement)
          doctor: {selector: fail}          # what ``testbed doctor`` finds for to.service / to.pod:
                                            # check name -> ok | warn | fail (no request is sent)
          http:                             # an HTTP(S) request, e.g. through an ingress controller
            request: {host: foo.example.com, path: /api, scheme: https, sni: foo.example.com,
                      auth: {username: foo, password: bar}, headers: {X-Name: value}}
            status: 200                     # the response's status (default 200)
            answeredBy: [echo-a]            # the pod that answered (the echoserver's "hostname")
            headers: {location: "https://foo.example.com/"}   # response headers ("*": present)
            backendHeaders: {x-forwarded-proto: https}        # request headers the backend saw
            certificate: {subject: CN=foo.example.com}        # the server certificate (https)

A DNS check has ``dns:`` instead of ``to:`` (module ``verify.dns``):
      - name: web-resolves
        from: pod/client
        dns: {name: web, type: A, server: 10.96.0.10, protocol: UDP}   # no server: the pod's resolv.conf
        expect:
          rcode: NOERROR                    # NOERROR | NXDOMAIN | SERVFAIL | REFUSED | timeout
          answers: [service/web]            # rdata as text, or service/[NS/]NAME (its ClusterIP), pod/[NS/]NAME (its IP)

Destinations (``to``), exactly one of ``service``, ``pod`` or ``ip``:
  {service: NAME, namespace: default, port: 80|NAME, via: clusterIP|nodePort|externalIP|loadBalancer|healthCheck, node: NODE}
  {pod: NAME, namespace: default, port: 8080}
  {ip: 10.96.0.1, port: 443}
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PROTOCOLS = ("TCP", "UDP")
REACH = ("answered", "refused", "dropped")
VIA = ("clusterIP", "nodePort", "externalIP", "loadBalancer", "healthCheck")
SOURCE_WORDS = ("client", "masquerade", "gateway")
RULES = ("present", "absent")
SOCKET_MODES = ("shared", "per-request")
CHECK_FIELDS = ("name", "description", "from", "to", "dns", "protocol", "retries", "expect")
DNS_FIELDS = ("name", "type", "server", "protocol")
DNS_EXPECT = ("rcode", "answers")
DNS_TYPES = ("A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "SOA", "NS", "MX", "ANY")
RCODES = ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR", "timeout")
# the doctor's checks (testbed/troubleshoot/checks.py) and their levels
DOCTOR_CHECKS = ("service", "selector", "pod-ready", "target-port", "endpointslices", "kube-proxy", "rules",
                 "hairpin", "dns", "conntrack", "arp")
DOCTOR_LEVELS = ("ok", "warn", "fail")
EXPECT_FIELDS = ("reach", "backends", "dnat", "source", "vxlan", "hairpin", "rules", "status", "steady", "doctor",
                 "http")
HTTP_FIELDS = ("request", "status", "answeredBy", "headers", "backendHeaders", "certificate")
HTTP_REQUEST_FIELDS = ("host", "path", "scheme", "sni", "auth", "headers")
HTTP_SCHEMES = ("http", "https")
AUTH_FIELDS = ("username", "password")
CERT_FIELDS = ("subject",)
HOST = re.compile(r"^[A-Za-z0-9*]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
BACKENDS_FIELDS = ("requests", "pods", "distinct", "silent")
VXLAN_FIELDS = ("ttl", "mtu")
STEADY_FIELDS = ("action", "until", "maxFailures", "socket", "rate", "timeout")
ACTION_FIELDS = ("apply", "delete")
UNTIL_FIELDS = ("answeredBy", "version", "rollout")
TO_FIELDS = ("service", "pod", "ip", "namespace", "port", "via", "node")
NEEDS_ANSWER = ("backends", "dnat", "source", "vxlan", "hairpin", "steady", "http")


@dataclass(frozen=True)
class Endpoint:
    """A check's source: ``pod/[ns/]name``, ``node/name`` or ``external/name``."""
    kind: str  # pod | node | external
    name: str
    namespace: str = "default"

    def __str__(self) -> str:
        if self.kind == "pod" and self.namespace != "default":
            return f"pod/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Destination:
    service: str | None = None
    pod: str | None = None
    ip: str | None = None
    namespace: str = "default"
    port: int | str | None = None
    via: str = "clusterIP"
    node: str | None = None

    def __str__(self) -> str:
        if self.service:
            port = f":{self.port}" if self.port is not None else ""
            where = "" if self.via == "clusterIP" else f" via {self.via}" + (f" on {self.node}" if self.node else "")
            return f"service {self.service}{port}{where}"
        if self.pod:
            return f"pod {self.pod}:{self.port or 8080}"
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Backends:
    requests: int = 30
    pods: tuple[str, ...] = ()
    distinct: int | None = None  # None: every listed pod must answer
    silent: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vxlan:
    ttl: int = 63
    mtu: bool = False


@dataclass(frozen=True)
class Steady:
    apply: tuple[dict, ...] = ()
    delete: tuple[str, ...] = ()
    until: dict = field(default_factory=dict)
    max_failures: int | None = 0
    socket: str = "per-request"
    rate: float = 50.0
    timeout: float = 60.0


@dataclass(frozen=True)
class DnsQuery:
    name: str
    type: str = "A"
    server: str | None = None   # None: the source pod's own /etc/resolv.conf (search list, ndots)
    protocol: str = "UDP"

    def __str__(self) -> str:
        via = f"@{self.server}" if self.server else "via resolv.conf"
        return f"{self.type} {self.name} {via} ({self.protocol})"


@dataclass(frozen=True)
class HttpRequest:
    host: str | None = None  # the Host header (and SNI for https unless ``sni`` says otherwise)
    path: str = "/"
    scheme: str = "http"
    sni: str | None = None
    auth: tuple[str, str] | None = None  # basic-auth (username, password)
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def server_name(self) -> str | None:
        return self.sni or (self.host.rsplit(":", 1)[0] if self.host else None)


@dataclass(frozen=True)
class Http:
    request: HttpRequest = field(default_factory=HttpRequest)
    status: int = 200
    answered_by: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # lower-case names
    backend_headers: tuple[tuple[str, str], ...] = ()
    certificate_subject: str | None = None


@dataclass(frozen=True)
class Check:
    name: str
    source: Endpoint | None
    to: Destination | None
    protocol: str = "TCP"
    retries: int = 0
    description: str = ""
    reach: str | None = None
    backends: Backends | None = None
    dnat: bool = False
    expect_source: str | None = None
    vxlan: Vxlan | None = None
    hairpin: bool | None = None
    rules: str | None = None
    steady: Steady | None = None
    status: int | None = None
    dns: DnsQuery | None = None
    rcode: str | None = None
    answers: tuple[str, ...] | None = None
    doctor: tuple[tuple[str, str], ...] = ()   # (doctor check, level)
    http: Http | None = None

    @property
    def expected_reach(self) -> str | None:
        if self.reach:
            return self.reach
        if any(getattr(self, a) for a in ("backends", "dnat", "expect_source", "vxlan", "steady", "http")) \
                or self.hairpin:
            return "answered"
        return None


@dataclass
class Context:
    """Names the scenario declares (for cross-references); None disables that check."""
    pods: set[str] | None = None
    services: dict[str, dict] | None = None  # "ns/name" -> Service object
    nodes: set[str] | None = None
    externals: set[str] | None = None


class _V:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.problems: list[Problem] = []

    def err(self, path: str, msg: str) -> None:
        self.problems.append(Problem(path, msg))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict | None:
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping with fields {', '.join(allowed)}, got {type(value).__name__}")
            return None
        for k in value:
            if k not in allowed:
                self.err(f"{path}.{k}", f"unknown field; allowed: {', '.join(allowed)}")
        return value

    def enum(self, value: Any, path: str, allowed: tuple[str, ...]) -> str | None:
        if value not in allowed:
            self.err(path, f"unsupported value {value!r}; allowed: {', '.join(allowed)}")
            return None
        return value

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            self.err(path, f"must be an integer from {lo} to {hi}, got {value!r}")
            return None
        return value

    def number(self, value: Any, path: str, lo: float, hi: float) -> float | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
            self.err(path, f"must be a number from {lo:g} to {hi:g}, got {value!r}")
            return None
        return float(value)

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.err(path, f"must be true or false, got {value!r}")
            return None
        return value

    def pod_names(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.err(path, "must be a list of pod names")
            return ()
        if self.ctx.pods is not None:
            for i, v in enumerate(value):
                if v not in self.ctx.pods:
                    self.err(f"{path}[{i}]", f"unknown pod {v!r}; pods: {', '.join(sorted(self.ctx.pods)) or 'none'}")
        return tuple(value)

    # --- pieces --------------------------------------------------------------------------------
    def source(self, value: Any, path: str) -> Endpoint | None:
        m = re.fullmatch(r"(pod|node|external)/(?:([a-z0-9-]+)/)?([a-z0-9][-a-z0-9.]*)", str(value)) \
            if isinstance(value, str) else None
        if not m or (m[2] and m[1] != "pod"):
            self.err(path, f"{value!r} is not a source; allowed: pod/NAME, pod/NAMESPACE/NAME, node/NAME, external/NAME")
            return None
        ep = Endpoint(m[1], m[3], m[2] or "default")
        known = {"pod": self.ctx.pods, "node": self.ctx.nodes, "external": self.ctx.externals}[ep.kind]
        if known is not None and ep.name not in known:
            self.err(path, f"unknown {ep.kind} {ep.name!r}; {ep.kind}s: {', '.join(sorted(known)) or 'none'}")
        return ep

    def destination(self, value: Any, path: str) -> Destination | None:
        d = self.mapping(value, path, TO_FIELDS)
        if d is None:
            return None
        which = [k for k in ("service", "pod", "ip") if k in d]
        if len(which) != 1:
            self.err(path, f"needs exactly one of service, pod, ip (got {', '.join(which) or 'none'})")
            return None
        kind = which[0]
        # names are looked up in the scenario's sets: a list or mapping there is a type error, not a name
        for k in ("service", "pod", "node"):
            if k in d and not (isinstance(d[k], str) and NAME.match(d[k])):
                self.err(f"{path}.{k}", f"{d[k]!r} is not a {k} name: lower-case letters, digits and '-'")
                return None
        ns = d.get("namespace", "default")
        if not isinstance(ns, str) or not NAME.match(ns):
            self.err(f"{path}.namespace", f"{ns!r} is not a namespace name")
        port = d.get("port")
        via = d.get("via", "clusterIP")
        node = d.get("node")
        if kind != "service":
            for k in ("via", "node"):
                if k in d:
                    self.err(f"{path}.{k}", f"only with {path}.service")
        if kind == "ip":
            try:
                ipaddress.IPv4Address(str(d["ip"]))
            except ValueError:
                self.err(f"{path}.ip", f"{d['ip']!r} is not an IPv4 address")
            if port is None:
                self.err(f"{path}.port", "required with ip")
        if port is not None and not (isinstance(port, str) and kind == "service" and NAME.match(port)):
            self.integer(port, f"{path}.port", 1, 65535)
        if kind == "pod":
            name = d["pod"]
            if self.ctx.pods is not None and name not in self.ctx.pods:
                self.err(f"{path}.pod", f"unknown pod {name!r}; pods: {', '.join(sorted(self.ctx.pods)) or 'none'}")
        if kind == "service":
            self.enum(via, f"{path}.via", VIA)
            if via in ("nodePort", "healthCheck") and node is None:
                self.err(f"{path}.node", f"required with via {via} (which node's address to use)")
            if node is not None and via not in ("nodePort", "healthCheck"):
                self.err(f"{path}.node", f"only with via nodePort or healthCheck (got via {via})")
            if node is not None and self.ctx.nodes is not None and node not in self.ctx.nodes:
                self.err(f"{path}.node", f"unknown node {node!r}; nodes: {', '.join(sorted(self.ctx.nodes))}")
            svc = None
            if self.ctx.services is not None:
                svc = self.ctx.services.get(f"{ns}/{d['service']}")
                if svc is None:
                    known = sorted(k.split("/", 1)[1] if k.startswith("default/") else k for k in self.ctx.services)
                    self.err(f"{path}.service", f"unknown service {d['service']!r}; services: {', '.join(known) or 'none'}")
            if svc is not None and port is not None:
                ports = (svc.get("spec") or {}).get("ports") or []
                if not any(port in (p.get("port"), p.get("name")) for p in ports):
                    allowed = ", ".join(str(p.get("name") or p.get("port")) for p in ports)
                    self.err(f"{path}.port", f"service {d['service']!r} has no port {port!r}; ports: {allowed or 'none'}")
        return Destination(service=d.get("service"), pod=d.get("pod"), ip=str(d["ip"]) if "ip" in d else None,
                           namespace=ns if isinstance(ns, str) else "default",
                           port=port, via=via if via in VIA else "clusterIP", node=node)

    def backends(self, value: Any, path: str) -> Backends | None:
        b = self.mapping(value, path, BACKENDS_FIELDS)
        if b is None:
            return None
        requests = self.integer(b.get("requests", 30), f"{path}.requests", 1, 10000)
        if "pods" not in b:
            self.err(f"{path}.pods", "required: the pods allowed to answer")
        pods = self.pod_names(b.get("pods", []), f"{path}.pods")
        distinct = None
        if "distinct" in b:
            distinct = self.integer(b["distinct"], f"{path}.distinct", 1, max(1, len(pods)))
        silent = self.pod_names(b.get("silent", []), f"{path}.silent")
        for s in set(silent) & set(pods):
            self.err(f"{path}.silent", f"pod {s!r} is both in pods and silent")
        return Backends(requests or 30, pods, distinct, silent)

    def steady(self, value: Any, path: str) -> Steady | None:
        s = self.mapping(value, path, STEADY_FIELDS)
        if s is None:
            return None
        action = self.mapping(s.get("action", {}), f"{path}.action", ACTION_FIELDS) or {}
        apply = action.get("apply", [])
        if not isinstance(apply, list) or not all(isinstance(o, dict) and "kind" in o and "apiVersion" in o
                                                  and "name" in (o.get("metadata") or {}) for o in apply):
            self.err(f"{path}.action.apply", "must be a list of Kubernetes objects (apiVersion, kind, metadata.name)")
            apply = []
        delete = action.get("delete", [])
        if not isinstance(delete, list) or not all(isinstance(x, str) and re.fullmatch(r"[a-z]+/[-a-z0-9.]+", x)
                                                   for x in delete):
            self.err(f"{path}.action.delete", "must be a list of KIND/NAME (pod/web-1, deployment/web)")
            delete = []
        if not apply and not delete:
            self.err(f"{path}.action", "needs apply or delete (what happens while traffic runs)")
        until = self.mapping(s.get("until"), f"{path}.until", UNTIL_FIELDS) if "until" in s else None
        if until is None:
            if "until" not in s:
                self.err(f"{path}.until", f"required: one of {', '.join(UNTIL_FIELDS)}")
            until = {}
        elif len(until) != 1:
            self.err(f"{path}.until", f"needs exactly one of {', '.join(UNTIL_FIELDS)}")
        if "answeredBy" in until:
            until = {**until, "answeredBy": list(self.pod_names_free(until["answeredBy"], f"{path}.until.answeredBy"))}
        if "rollout" in until and not (isinstance(until["rollout"], str)
                                       and re.fullmatch(r"deployment/[-a-z0-9.]+", until["rollout"])):
            self.err(f"{path}.until.rollout", "must be deployment/NAME")
        if "version" in until and not isinstance(until["version"], str):
            self.err(f"{path}.until.version", "must be a string (what /version answers)")
        mf = s.get("maxFailures", 0)
        if mf is not None:
            mf = self.integer(mf, f"{path}.maxFailures", 0, 1_000_000)
        sock = self.enum(s.get("socket", "per-request"), f"{path}.socket", SOCKET_MODES)
        rate = self.number(s.get("rate", 50), f"{path}.rate", 1, 1000)
        timeout = self.number(s.get("timeout", 60), f"{path}.timeout", 1, 600)
        return Steady(tuple(apply), tuple(delete), dict(until), mf, sock or "per-request", rate or 50.0,
                      timeout or 60.0)

    def header_map(self, value: Any, path: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict) or not all(isinstance(k, str) and HEADER_NAME.match(k) and isinstance(v, str)
                                                  for k, v in value.items()):
            self.err(path, "must be a mapping of header names to string values")
            return ()
        return tuple((k.lower(), v) for k, v in value.items())

    def http(self, value: Any, path: str) -> Http | None:
        h = self.mapping(value, path, HTTP_FIELDS)
        if h is None:
            return None
        req = HttpRequest()
        if "request" in h:
            r = self.mapping(h["request"], f"{path}.request", HTTP_REQUEST_FIELDS) or {}
            host = r.get("host")
            if host is not None and not (isinstance(host, str) and HOST.match(host)):
                self.err(f"{path}.request.host", f"{host!r} is not a host name (Host header)")
                host = None
            sni = r.get("sni")
            if sni is not None and not (isinstance(sni, str) and HOST.match(sni) and ":" not in sni):
                self.err(f"{path}.request.sni", f"{sni!r} is not a server name")
                sni = None
            target = r.get("path", "/")
            if not isinstance(target, str) or not target.startswith("/") or any(c in target for c in " \r\n"):
                self.err(f"{path}.request.path", f"{target!r} is not an absolute path (/..., no spaces)")
                target = "/"
            scheme = self.enum(r.get("scheme", "http"), f"{path}.request.scheme", HTTP_SCHEMES) or "http"
            if sni is not None and scheme != "https":
                self.err(f"{path}.request.sni", "only with scheme https")
            auth = None
            if "auth" in r:
                a = self.mapping(r["auth"], f"{path}.request.auth", AUTH_FIELDS)
                if a is not None:
                    if not all(isinstance(a.get(k), str) for k in AUTH_FIELDS):
                        self.err(f"{path}.request.auth", "needs username and password (strings)")
                    else:
                        auth = (a["username"], a["password"])
            headers = self.header_map(r["headers"], f"{path}.request.headers") if "headers" in r else ()
            req = HttpRequest(host, target, scheme, sni, auth, headers)
        status = self.integer(h.get("status", 200), f"{path}.status", 100, 599) or 200
        answered = self.pod_names_free(h["answeredBy"], f"{path}.answeredBy") if "answeredBy" in h else ()
        headers = self.header_map(h["headers"], f"{path}.headers") if "headers" in h else ()
        backend = self.header_map(h["backendHeaders"], f"{path}.backendHeaders") if "backendHeaders" in h else ()
        subject = None
        if "certificate" in h:
            cert = self.mapping(h["certificate"], f"{path}.certificate", CERT_FIELDS) or {}
            subject = cert.get("subject")
            if not isinstance(subject, str) or "=" not in subject:
                self.err(f"{path}.certificate.subject", f"{subject!r} is not a subject (RFC 4514: CN=name,O=org)")
                subject = None
            elif req.scheme != "https":
                self.err(f"{path}.certificate", "only with request.scheme https")
        return Http(req, status, answered, headers, backend, subject)

    def pod_names_free(self, value: Any, path: str) -> tuple[str, ...]:
        """Pod names that may be created by the check's own action (not cross-referenced)."""
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            self.err(path, "must be a non-empty list of pod names")
            return ()
        return tuple(value)

    def dns_query(self, value: Any, path: str) -> DnsQuery | None:
        d = self.mapping(value, path, DNS_FIELDS)
        if d is None:
            return None
        name = d.get("name")
        if not isinstance(name, str) or not name or len(name) > 253:
            self.err(f"{path}.name", f"must be a domain name, got {name!r}")
        qtype = self.enum(d.get("type", "A"), f"{path}.type", DNS_TYPES)
        server = d.get("server")
        if server is not None:
            try:
                ipaddress.IPv4Address(str(server))
            except ValueError:
                self.err(f"{path}.server", f"{server!r} is not an IPv4 address")
        proto = self.enum(d.get("protocol", "UDP"), f"{path}.protocol", PROTOCOLS)
        return DnsQuery(str(name), qtype or "A", str(server) if server is not None else None, proto or "UDP")

    def dns_check(self, c: dict, path: str, name: str, retries: int) -> Check | None:
        n0 = len(self.problems)
        for k in ("to", "protocol"):
            if k in c:
                self.err(f"{path}.{k}", "not with dns (the query says where it goes: dns.server, dns.protocol)")
        src = self.source(c["from"], f"{path}.from") if "from" in c else None
        if "from" not in c:
            self.err(f"{path}.from", "required: pod/NAME (the pod whose resolver asks)")
        elif src is not None and src.kind != "pod":
            self.err(f"{path}.from", f"a DNS query is sent from a pod (pod/NAME), got {src}")
        q = self.dns_query(c["dns"], f"{path}.dns")
        e = self.mapping(c.get("expect"), f"{path}.expect", DNS_EXPECT) if "expect" in c else None
        if not e:
            self.err(f"{path}.expect", f"required with dns: one or more of {', '.join(DNS_EXPECT)}")
            e = {}
        rcode = self.enum(e["rcode"], f"{path}.expect.rcode", RCODES) if "rcode" in e else None
        answers = None
        if "answers" in e:
            if not isinstance(e["answers"], list) or not all(isinstance(a, str) for a in e["answers"]):
                self.err(f"{path}.expect.answers", "must be a list of strings (rdata, service/NAME or pod/NAME)")
            else:
                answers = tuple(e["answers"])
                if rcode not in (None, "NOERROR") and answers:
                    self.err(f"{path}.expect.answers", f"an answer needs rcode NOERROR, not {rcode}")
        if len(self.problems) > n0:
            return None
        return Check(name=name, source=src, to=None, retries=retries, description=str(c.get("description", "")),
                     dns=q, rcode=rcode or ("NOERROR" if answers is not None else None), answers=answers)

    # --- one check -------------------------------------------------------------------------------
    def check(self, raw: Any, path: str, seen: dict[str, str]) -> Check | None:
        c = self.mapping(raw, path, CHECK_FIELDS)
        if c is None:
            return None
        n0 = len(self.problems)
        name = c.get("name")
        if not isinstance(name, str) or not NAME.match(name) or len(name) > 63:
            self.err(f"{path}.name", f"{name!r} is not a check name: lower-case letters, digits and '-', at most 63")
        elif name in seen:
            self.err(f"{path}.name", f"duplicate check name {name!r} (also {seen[name]})")
        else:
            seen[name] = path
        retries = self.integer(c.get("retries", 0), f"{path}.retries", 0, 10) or 0
        if "dns" in c:
            check = self.dns_check(c, path, name, retries)
            return check if len(self.problems) == n0 else None
        protocol = self.enum(c.get("protocol", "TCP"), f"{path}.protocol", PROTOCOLS) or "TCP"
        e = self.mapping(c.get("expect"), f"{path}.expect", EXPECT_FIELDS) if "expect" in c else None
        if "expect" not in c:
            self.err(f"{path}.expect", f"required: one or more of {', '.join(EXPECT_FIELDS)}")
        e = e or {}
        if "expect" in c and isinstance(c.get("expect"), dict) and not e:
            self.err(f"{path}.expect", f"empty; give one or more of {', '.join(EXPECT_FIELDS)}")
        rules_only = bool(e) and set(e) <= {"rules", "doctor"}
        src = None
        if "from" in c:
            src = self.source(c["from"], f"{path}.from")
        elif not rules_only:
            self.err(f"{path}.from", "required: pod/NAME, node/NAME or external/NAME")
        to = None
        if "to" in c:
            to = self.destination(c["to"], f"{path}.to")
        else:
            self.err(f"{path}.to", "required: {service: NAME, port: P}, {pod: NAME, port: P} or {ip: A, port: P}")
        reach = self.enum(e["reach"], f"{path}.expect.reach", REACH) if "reach" in e else None
        backends = self.backends(e["backends"], f"{path}.expect.backends") if "backends" in e else None
        dnat = bool(self.boolean(e["dnat"], f"{path}.expect.dnat")) if "dnat" in e else False
        source = None
        if "source" in e:
            source = e["source"]
            if source not in SOURCE_WORDS:
                try:
                    ipaddress.IPv4Address(str(source))
                    source = str(source)
                except ValueError:
                    self.err(f"{path}.expect.source", f"unsupported value {source!r}; allowed: "
                             f"{', '.join(SOURCE_WORDS)} or an IPv4 address")
                    source = None
        vx = None
        if "vxlan" in e:
            v = e["vxlan"]
            if v is True:
                vx = Vxlan()
            elif v is False:
                self.err(f"{path}.expect.vxlan", "false is not an expectation; leave vxlan out")
            else:
                m = self.mapping(v, f"{path}.expect.vxlan", VXLAN_FIELDS)
                if m is not None:
                    ttl = self.integer(m.get("ttl", 63), f"{path}.expect.vxlan.ttl", 1, 255)
                    mtu = self.boolean(m.get("mtu", False), f"{path}.expect.vxlan.mtu")
                    vx = Vxlan(ttl or 63, bool(mtu))
        hairpin = self.boolean(e["hairpin"], f"{path}.expect.hairpin") if "hairpin" in e else None
        rules = self.enum(e["rules"], f"{path}.expect.rules", RULES) if "rules" in e else None
        steady = self.steady(e["steady"], f"{path}.expect.steady") if "steady" in e else None
        status = self.integer(e["status"], f"{path}.expect.status", 100, 599) if "status" in e else None
        doctor: tuple[tuple[str, str], ...] = ()
        if "doctor" in e:
            d = self.mapping(e["doctor"], f"{path}.expect.doctor", DOCTOR_CHECKS)
            if d is not None and not d:
                self.err(f"{path}.expect.doctor", f"empty; map one or more of {', '.join(DOCTOR_CHECKS)} to a level")
            doctor = tuple((k, lvl) for k, v in (d or {}).items()
                           if (lvl := self.enum(v, f"{path}.expect.doctor.{k}", DOCTOR_LEVELS)))
            if set(e) != {"doctor"}:
                self.err(f"{path}.expect.doctor", "cannot be combined with other expectations (it sends no request)")
            if to is not None and not (to.service or to.pod):
                self.err(f"{path}.expect.doctor", "needs a service or pod destination (to.service or to.pod)")
        http = self.http(e["http"], f"{path}.expect.http") if "http" in e else None
        if status is not None and (to is None or to.via != "healthCheck"):
            self.err(f"{path}.expect.status", "only with to.via healthCheck (the HTTP status of the health check port)")

        # combinations
        if reach in ("refused", "dropped"):
            for k in NEEDS_ANSWER:
                if k in e and not (k == "hairpin" and e[k] is False):
                    self.err(f"{path}.expect.{k}", f"needs an answered request; expect.reach is {reach}")
        if hairpin is not None and src is not None and src.kind != "pod":
            self.err(f"{path}.expect.hairpin", f"needs a pod source (from: pod/NAME), got {src}")
        if hairpin is False and reach is None:
            self.err(f"{path}.expect.reach", "required with hairpin: false (refused or dropped: what happens instead)")
        if rules is not None and to is not None and not to.service:
            self.err(f"{path}.expect.rules", "needs a service destination (to.service)")
        if to is not None and to.via == "healthCheck" and set(e) - {"reach", "status"}:
            self.err(f"{path}.expect", "a health check destination takes only expect.status and expect.reach")
        if protocol == "UDP" and to is not None and to.via == "healthCheck":
            self.err(f"{path}.protocol", "the health check port is HTTP over TCP")
        if vx is not None and vx.mtu and protocol != "UDP":
            self.err(f"{path}.expect.vxlan.mtu", "the MTU probe is a full-size UDP datagram; use protocol: UDP")
        if vx is not None and vx.mtu and src is not None and src.kind != "pod":
            self.err(f"{path}.expect.vxlan.mtu", f"the MTU probe is sent from a pod (from: pod/NAME), got {src}")
        if steady is not None and steady.socket == "shared" and protocol != "UDP":
            self.err(f"{path}.expect.steady.socket", "shared (one socket, one conntrack entry) needs protocol: UDP")
        if steady is not None and set(e) - {"steady", "reach", "http"}:
            self.err(f"{path}.expect.steady", "cannot be combined with other expectations (it changes the cluster)"
                     " except http (the request its traffic sends)")
        if http is not None and protocol != "TCP":
            self.err(f"{path}.expect.http", "HTTP runs over TCP; use protocol: TCP")
        if http is not None and set(e) - {"http", "reach", "steady", "rules"}:
            self.err(f"{path}.expect.http", "combines only with reach, rules and steady")
        if http is not None and to is not None and to.via == "healthCheck":
            self.err(f"{path}.expect.http", "not with to.via healthCheck (use expect.status)")
        if len(self.problems) > n0:
            return None
        return Check(name=name, source=src, to=to, protocol=protocol, retries=retries,
                     description=str(c.get("description", "")), reach=reach, backends=backends, dnat=dnat,
                     expect_source=source, vxlan=vx, hairpin=hairpin, rules=rules, steady=steady, status=status,
                     doctor=doctor, http=http)


def validate(raw: Any, ctx: Context | None = None, path: str = "checks") -> tuple[list[Check], list[Problem]]:
    """Parse the ``checks:`` list; returns the checks and every problem found."""
    v = _V(ctx or Context())
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [Problem(path, "must be a list of checks")]
    seen: dict[str, str] = {}
    out = []
    for i, item in enumerate(raw):
        c = v.check(item, f"{path}[{i}]", seen)
        if c is not None:
            out.append(c)
    return out, v.problems


def context_from_scenario(manifests: list[dict], nodes: list[str], externals: list[str]) -> Context:
    """Names declared by a scenario's manifests (Pods, Services) for cross-references.
    Pods created by controllers (Deployments) have generated names; checks name the
    scenario's own Pods."""
    pods = {(o.get("metadata") or {}).get("name") for o in manifests if o.get("kind") == "Pod"}
    services = {f"{(o.get('metadata') or {}).get('namespace', 'default')}/{(o.get('metadata') or {}).get('name')}": o
                for o in manifests if o.get("kind") == "Service"}
    return Context(pods={p for p in pods if p}, services=services, nodes=set(nodes), externals=set(externals))


def scenario_problems(checks: Any, manifests: list[dict], nodes: list[str], externals: list[str]) -> list[Problem]:
    """The hook testbed.scenario calls: every problem of the checks section."""
    return validate(checks, context_from_scenario(manifests, nodes, externals))[1]


def parse_checks(scenario) -> list[Check]:
    """Checks of a validated Scenario."""
    from ..addons import objects
    ctx = context_from_scenario(objects(scenario.addons, scenario) + scenario.manifests,
                                [n.name for n in scenario.nodes], [e.name for e in scenario.externals])
    checks, problems = validate(scenario.checks, ctx)
    if problems:
        from ..errors import ValidationError
        raise ValidationError(scenario.source, problems)
    return checks
