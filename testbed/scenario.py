"""Scenario files: parse and validate (pure; every problem is reported at once).

    apiVersion: testbed/v1
    kind: Scenario
    metadata: {name: quickstart}
    spec:
      nodes: 3                      # or [{name: node1, labels: {...}}, ...]
      podNetwork: 10.244.0.0/16
      serviceNetwork: 10.96.0.0/12
      underlay: {network: 172.20.10.0/24, mtu: 1500}
      backend: vxlan                # vxlan | host-gw
      hairpinMode: hairpin-veth     # hairpin-veth | promiscuous-bridge | none
      proxyMode: iptables
      proxy: {minSyncPeriod: 1s, syncPeriod: 30s}   # kube-proxy timing (Go durations)
      externals: 1                  # or [{name: client}, ...]
      addons: [coredns]             # cluster add-ons applied at up (default [coredns]; [] for none)
    manifests:                      # Kubernetes objects, inline or {file: path}
      - {apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {...}}
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem, ValidationError, unreadable as _unreadable, yaml_problem
from .k8s import admission as k8s_admission, errors as k8s_errors, kinds, schema, schemas
from .addons import DEFAULT as ADDON_DEFAULT, NAMES as ADDON_NAMES
from .proxy.modes import NAMES as _PROXY_MODE_NAMES

API_VERSION = "testbed/v1"
BACKENDS = ("vxlan", "host-gw")
HAIRPIN_MODES = ("hairpin-veth", "promiscuous-bridge", "none")
STORES = ("embedded", "etcd")   # the API server's store: its own, or an etcd member per cluster
PROXY_MODES = (*_PROXY_MODE_NAMES, "none")   # the registered proxy modes, or no kube-proxy
IFNAMSIZ = 15
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_CLUSTER_NAME = 20

DEFAULTS = {
    "podNetwork": "10.244.0.0/16",
    "nodeSubnetPrefix": 24,
    "serviceNetwork": "10.96.0.0/12",
    "underlay": {"network": "172.20.10.0/24", "mtu": 1500},
    "backend": "vxlan",
    "hairpinMode": "hairpin-veth",
    "proxyMode": "iptables",
    "store": "embedded",
    "nodes": 2,
    "externals": 1,
}
SPEC_FIELDS = set(DEFAULTS) | {"nodePortRange", "loadBalancerPool", "proxy", "addons"}
PROXY_FIELDS = {"minSyncPeriod", "syncPeriod"}
PROXY_DEFAULTS = {"minSyncPeriod": 1.0, "syncPeriod": 30.0}   # upstream kube-proxy defaults, seconds
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: Any) -> float | None:
    """A Go duration (``1s``, ``250ms``, ``1m30s``; a bare number is seconds) in seconds, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str) or not value:
        return None
    text, total, pos = value.strip(), 0.0, 0
    if text == "0":
        return 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None
TOP_FIELDS = {"apiVersion", "kind", "metadata", "spec", "manifests", "checks"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExternalSpec:
    name: str


@dataclass
class Scenario:
    name: str
    nodes: list[NodeSpec]
    externals: list[ExternalSpec]
    pod_network: ipaddress.IPv4Network
    node_prefix: int
    service_network: ipaddress.IPv4Network
    underlay_network: ipaddress.IPv4Network
    underlay_mtu: int
    backend: str
    hairpin_mode: str
    proxy_mode: str
    store: str = "embedded"
    node_port_range: tuple[int, int] = (30000, 32767)
    lb_pool: ipaddress.IPv4Network | None = None
    proxy_min_sync_period: float = 1.0
    proxy_sync_period: float = 30.0
    addons: list[str] = field(default_factory=lambda: list(ADDON_DEFAULT))
    manifests: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    source: str = "<scenario>"
    description: str = ""
    manifest_origins: list[str] = field(default_factory=list)  # "manifests[2] (web.yaml document 1)"

    @property
    def pod_mtu(self) -> int:
        return self.underlay_mtu - 50 if self.backend == "vxlan" else self.underlay_mtu


def load(path: str, *, name: str | None = None) -> Scenario:
    """Read and validate a scenario file; raises ``ValidationError`` naming every problem."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise ValidationError(path, [Problem("", _unreadable(exc))]) from None
    except yaml.YAMLError as exc:
        raise ValidationError(path, [Problem("", yaml_problem(exc))]) from None
    if doc is None:
        raise ValidationError(path, [Problem("", f"the file is empty; a scenario starts with "
                                                 f"apiVersion: {API_VERSION} and kind: Scenario")])
    return parse(doc, source=path, base_dir=os.path.dirname(os.path.abspath(path)), name=name)


def check_manifests(scenario: Scenario) -> None:
    """Everything the API server would refuse in the scenario's manifests, found before a
    cluster is built: each object goes through the same defaulting, validation and
    ClusterIP/node-port allocation as at ``up``; raises ``ValidationError`` naming each
    object's place.  Topology-only clusters (no API server) skip this."""
    admission = k8s_admission.Admission(k8s_admission.AdmissionConfig(
        service_network=str(scenario.service_network), pod_network=str(scenario.pod_network),
        nodeport_range="{}-{}".format(*scenario.node_port_range)))
    origins = scenario.manifest_origins or [f"manifests[{i}]" for i in range(len(scenario.manifests))]
    problems = []
    for obj, where in zip(scenario.manifests, origins):
        try:
            admission.admit_create(copy.deepcopy(obj))  # admission defaults in place
        except k8s_errors.APIError as exc:
            problems.append(Problem(where, exc.message))
    if problems:
        raise ValidationError(scenario.source, problems)


def parse(doc: Any, *, source: str = "<scenario>", base_dir: str = ".", name: str | None = None) -> Scenario:
    p = _Parser(source, base_dir)
    scenario = p.scenario(doc, name)
    if p.problems:
        raise ValidationError(source, p.problems)
    return scenario


class _Parser:
    def __init__(self, source: str, base_dir: str):
        self.source = source
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self.origins: list[str] = []  # where each manifest was written, for later errors

    def err(self, path: str, msg: str) -> None:
        self.problems.append(Problem(path, msg))

    def unknown(self, obj: dict, allowed: set[str], path: str) -> None:
        for key in obj:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.err(where, f"unknown field; allowed: {', '.join(sorted(allowed))}")

    def mapping(self, value: Any, path: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def scenario(self, doc: Any, name_override: str | None) -> Scenario:
        doc = self.mapping(doc, "")
        self.unknown(doc, TOP_FIELDS, "")
        if doc.get("apiVersion") != API_VERSION:
            self.err("apiVersion", f"must be {API_VERSION!r}, got {doc.get('apiVersion')!r}")
        if doc.get("kind") != "Scenario":
            self.err("kind", f"must be 'Scenario', got {doc.get('kind')!r}")
        meta = self.mapping(doc.get("metadata"), "metadata")
        self.unknown(meta, {"name", "description"}, "metadata")
        stem = os.path.splitext(os.path.basename(self.source))[0]
        name = name_override or meta.get("name") or re.sub(r"[^a-z0-9-]", "-", stem.lower()).strip("-") or "testbed"
        self.cluster_name(name, "--name" if name_override else "metadata.name")
        spec = self.mapping(doc.get("spec"), "spec")
        self.unknown(spec, SPEC_FIELDS, "spec")
        s = {**DEFAULTS, **spec}

        pod_net = self.cidr(s["podNetwork"], "spec.podNetwork")
        svc_net = self.cidr(s["serviceNetwork"], "spec.serviceNetwork")
        underlay = self.mapping(s["underlay"], "spec.underlay")
        self.unknown(underlay, {"network", "mtu"}, "spec.underlay")
        und_net = self.cidr(underlay.get("network", DEFAULTS["underlay"]["network"]), "spec.underlay.network")
        mtu = self.integer(underlay.get("mtu", 1500), "spec.underlay.mtu", 1280, 9000)
        prefix = self.integer(s["nodeSubnetPrefix"], "spec.nodeSubnetPrefix", 16, 28)
        backend = self.enum(s["backend"], "spec.backend", BACKENDS)
        hairpin = self.enum(s["hairpinMode"], "spec.hairpinMode", HAIRPIN_MODES)
        proxy = self.enum(s["proxyMode"], "spec.proxyMode", PROXY_MODES)
        store = self.enum(s["store"], "spec.store", STORES)
        nodes = self.nodes(s["nodes"])
        externals = self.externals(s["externals"])
        np_range = self.port_range(spec.get("nodePortRange", "30000-32767"), "spec.nodePortRange")
        lb_pool = self.cidr(spec["loadBalancerPool"], "spec.loadBalancerPool") if "loadBalancerPool" in spec else None
        min_sync, sync = self.proxy_timing(spec.get("proxy"))
        addons = self.addons(spec.get("addons", list(ADDON_DEFAULT)))

        names: dict[str, str] = {}
        for i, n in enumerate(nodes):
            names.setdefault(n.name, f"spec.nodes[{i}]")
        for i, e in enumerate(externals):
            if e.name in names:
                self.err(f"spec.externals[{i}].name", f"{e.name!r} is already used by {names[e.name]}")
            names.setdefault(e.name, f"spec.externals[{i}]")

        nets = {"spec.podNetwork": pod_net, "spec.serviceNetwork": svc_net, "spec.underlay.network": und_net}
        if lb_pool is not None:
            nets["spec.loadBalancerPool"] = lb_pool
        keys = [k for k, v in nets.items() if v is not None]
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if nets[a].overlaps(nets[b]) and not (b == "spec.loadBalancerPool" and a == "spec.underlay.network"):
                    self.err(b, f"{nets[b]} overlaps {a} {nets[a]}")
        if pod_net is not None and prefix is not None:
            if prefix < pod_net.prefixlen:
                self.err("spec.nodeSubnetPrefix", f"/{prefix} is larger than spec.podNetwork {pod_net}")
            else:
                available = 2 ** (prefix - pod_net.prefixlen)
                if len(nodes) > available:
                    self.err("spec.nodes", f"{len(nodes)} nodes need {len(nodes)} /{prefix} subnets but "
                             f"spec.podNetwork {pod_net} has only {available}")
        if und_net is not None:
            hosts = und_net.num_addresses - 2
            if len(nodes) + 1 > min(hosts, 99):
                self.err("spec.nodes", f"{len(nodes)} nodes do not fit spec.underlay.network {und_net} "
                         f"(nodes take .2 to .99; use a larger network or fewer nodes)")
            if 100 + len(externals) > hosts:
                self.err("spec.externals", f"{len(externals)} external clients do not fit "
                         f"spec.underlay.network {und_net} (externals take .100 upward)")
        if lb_pool is not None and und_net is not None and lb_pool.overlaps(und_net):
            self.err("spec.loadBalancerPool", f"{lb_pool} overlaps spec.underlay.network {und_net}: load-balancer "
                     f"addresses are routed from the underlay to the nodes, so the pool must be outside it")

        before = len(self.problems)
        manifests = self.manifests(doc.get("manifests") or [], [n.name for n in nodes])
        manifests_ok = len(self.problems) == before
        checks = doc.get("checks") or []
        if not isinstance(checks, list):
            self.err("checks", "must be a list")
            checks = []
        scenario = Scenario(
            name=name, nodes=nodes, externals=externals, pod_network=pod_net or ipaddress.IPv4Network("10.244.0.0/16"),
            node_prefix=prefix or 24, service_network=svc_net or ipaddress.IPv4Network("10.96.0.0/12"),
            underlay_network=und_net or ipaddress.IPv4Network("172.20.10.0/24"), underlay_mtu=mtu or 1500,
            backend=backend or "vxlan", hairpin_mode=hairpin or "hairpin-veth", proxy_mode=proxy or "iptables",
            store=store or "embedded",
            node_port_range=np_range or (30000, 32767), lb_pool=lb_pool, manifests=manifests, checks=checks,
            proxy_min_sync_period=min_sync, proxy_sync_period=sync, addons=addons,
            source=self.source, description=str(meta.get("description", "")),
            manifest_origins=self.origins,
        )
        if manifests_ok and checks:  # hook: testbed.verify owns the checks format; it reads the
            # manifests too, so it only sees them once they are known to be well formed, and the
            # add-ons' objects (a check may target ingress-nginx's Service)
            from .addons import REGISTRY, objects
            from .verify.model import scenario_problems
            installed = objects([a for a in addons if a in REGISTRY], scenario)
            self.problems += scenario_problems(checks, installed + manifests, [n.name for n in nodes],
                                               [e.name for e in externals])
        return scenario

    def proxy_timing(self, value: Any) -> tuple[float, float]:
        """``spec.proxy``: kube-proxy's ``minSyncPeriod`` and ``syncPeriod`` (upstream's rules:
        minSyncPeriod >= 0, syncPeriod > 0 and >= minSyncPeriod)."""
        proxy = self.mapping(value, "spec.proxy")
        self.unknown(proxy, PROXY_FIELDS, "spec.proxy")
        out = {}
        for key, default in PROXY_DEFAULTS.items():
            raw = proxy.get(key, default)
            d = parse_duration(raw)
            if d is None:
                self.err(f"spec.proxy.{key}", f"{raw!r} is not a duration (e.g. 1s, 250ms, 1m30s)")
                d = default
            out[key] = d
        if "syncPeriod" in proxy and out["syncPeriod"] <= 0:
            self.err("spec.proxy.syncPeriod", f"{proxy['syncPeriod']!r}: must be greater than 0")
            out["syncPeriod"] = PROXY_DEFAULTS["syncPeriod"]
        elif out["syncPeriod"] < out["minSyncPeriod"]:
            self.err("spec.proxy.syncPeriod", f"{proxy.get('syncPeriod', '30s')!r}: must be greater than or equal "
                     f"to spec.proxy.minSyncPeriod {proxy.get('minSyncPeriod', '1s')!r}")
        return out["minSyncPeriod"], out["syncPeriod"]

    # --- leaves -------------------------------------------------------------------------------
    def addons(self, value: Any) -> list[str]:
        """``spec.addons``: names from the add-on registry, each at most once."""
        if not isinstance(value, list):
            self.err("spec.addons", f"must be a list of add-on names; allowed: {', '.join(ADDON_NAMES)}")
            return list(ADDON_DEFAULT)
        out: list[str] = []
        for i, name in enumerate(value):
            if name not in ADDON_NAMES:
                self.err(f"spec.addons[{i}]", f"unknown add-on {name!r}; allowed: {', '.join(ADDON_NAMES)}")
            elif name in out:
                self.err(f"spec.addons[{i}]", f"duplicate add-on {name!r}")
            else:
                out.append(name)
        return out

    def cluster_name(self, name: Any, path: str) -> None:
        if not isinstance(name, str) or not DNS_LABEL.match(name) or len(name) > MAX_CLUSTER_NAME:
            self.err(path, f"{name!r} is not a valid cluster name: lower-case letters, digits and '-', "
                     f"starting and ending with a letter or digit, at most {MAX_CLUSTER_NAME} characters")

    def cidr(self, value: Any, path: str) -> ipaddress.IPv4Network | None:
        try:
            return ipaddress.IPv4Network(str(value), strict=True)
        except ValueError as exc:
            self.err(path, f"{value!r} is not an IPv4 network in CIDR notation ({exc})")
            return None

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            self.err(path, f"must be an integer from {lo} to {hi}, got {value!r}")
            return None
        return value

    def enum(self, value: Any, path: str, allowed: tuple[str, ...]) -> str | None:
        if value not in allowed:
            self.err(path, f"unsupported value {value!r}; allowed: {', '.join(allowed)}")
            return None
        return value

    def port_range(self, value: Any, path: str) -> tuple[int, int] | None:
        m = re.fullmatch(r"(\d+)-(\d+)", str(value))
        if not m or not 1 <= int(m[1]) <= int(m[2]) <= 65535:
            self.err(path, f"must be 'FIRST-LAST' with 1 <= FIRST <= LAST <= 65535, got {value!r}")
            return None
        return int(m[1]), int(m[2])

    def host_name(self, name: Any, path: str) -> bool:
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            self.err(path, f"{name!r} is not a valid name: lower-case letters, digits and '-'")
            return False
        if len(name) > IFNAMSIZ:
            self.err(path, f"{name!r} is {len(name)} characters; at most {IFNAMSIZ} (it names the "
                     f"node's interface on the underlay bridge, and Linux limits interface names to {IFNAMSIZ})")
            return False
        return True

    def nodes(self, value: Any) -> list[NodeSpec]:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 250:
                self.err("spec.nodes", f"node count must be from 1 to 250, got {value}")
                return []
            return [NodeSpec(f"node{i + 1}", {"kubernetes.io/hostname": f"node{i + 1}"}) for i in range(value)]
        if not isinstance(value, list) or not value:
            self.err("spec.nodes", "must be a count or a non-empty list of {name, labels}")
            return []
        out, seen = [], set()
        for i, item in enumerate(value):
            path = f"spec.nodes[{i}]"
            item = {"name": item} if isinstance(item, str) else self.mapping(item, path)
            self.unknown(item, {"name", "labels"}, path)
            name = item.get("name")
            if not self.host_name(name, f"{path}.name"):
                continue
            if name in seen:
                self.err(f"{path}.name", f"duplicate node name {name!r}")
                continue
            seen.add(name)
            labels = self.mapping(item.get("labels"), f"{path}.labels")
            bad = [k for k, v in labels.items() if not isinstance(k, str) or not isinstance(v, (str, int, float, bool))]
            for k in bad:
                self.err(f"{path}.labels.{k}", "label values must be strings")
            labels = {str(k): str(v) for k, v in labels.items()}
            labels.setdefault("kubernetes.io/hostname", name)
            out.append(NodeSpec(name, labels))
        return out

    def externals(self, value: Any) -> list[ExternalSpec]:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= 50:
                self.err("spec.externals", f"external client count must be from 0 to 50, got {value}")
                return []
            return [ExternalSpec("client" if value == 1 else f"client{i + 1}") for i in range(value)]
        if not isinstance(value, list):
            self.err("spec.externals", "must be a count or a list of {name}")
            return []
        out, seen = [], set()
        for i, item in enumerate(value):
            path = f"spec.externals[{i}]"
            item = {"name": item} if isinstance(item, str) else self.mapping(item, path)
            self.unknown(item, {"name"}, path)
            name = item.get("name")
            if self.host_name(name, f"{path}.name"):
                if name in seen:
                    self.err(f"{path}.name", f"duplicate external name {name!r}")
                    continue
                seen.add(name)
                out.append(ExternalSpec(name))
        return out

    def manifests(self, value: Any, node_names: list[str]) -> list[dict]:
        if not isinstance(value, list):
            self.err("manifests", "must be a list of Kubernetes objects or {file: PATH}")
            return []
        out: list[dict] = []
        for i, item in enumerate(value):
            path = f"manifests[{i}]"
            if isinstance(item, str) or (isinstance(item, dict) and set(item) == {"file"}):
                rel = item if isinstance(item, str) else item["file"]
                full = rel if os.path.isabs(rel) else os.path.join(self.base_dir, rel)
                try:
                    with open(full) as f:
                        docs = [d for d in yaml.safe_load_all(f) if d]
                except FileNotFoundError:
                    self.err(f"{path}.file", f"{rel!r} not found (relative to {self.base_dir})")
                    continue
                except OSError as exc:
                    self.err(f"{path}.file", f"{rel!r} {_unreadable(exc)}")
                    continue
                except yaml.YAMLError as exc:
                    self.err(f"{path}.file", f"{rel!r} is {yaml_problem(exc)}")
                    continue
                for j, d in enumerate(docs):
                    out += self.objects(d, f"{path} ({rel} document {j + 1})")
            elif isinstance(item, dict):
                out += self.objects(item, path)
            else:
                self.err(path, "must be a Kubernetes object or {file: PATH}")
        placed = [(o, o.pop("__where__")) for o in out]
        for obj, where in placed:
            self.pod_basics(obj, where, node_names)
        self.duplicates(placed)
        self.shapes(placed)
        self.origins = [where for _, where in placed]
        return out

    def duplicates(self, placed: list[tuple[dict, str]]) -> None:
        """The same kind/namespace/name twice would silently keep the last one."""
        first: dict[tuple[str, str, str], str] = {}
        for obj, where in placed:
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            name = meta.get("name")
            if not isinstance(name, str) or not name:
                continue  # generateName: every create is a new object
            info = kinds.by_kind(str(obj.get("kind")))
            ns = "" if info is not None and not info.namespaced else str(meta.get("namespace") or "default")
            key = (str(obj.get("kind")), ns, name)
            if key in first:
                ident = f"{key[0].lower()} {ns + '/' if ns else ''}{name}"
                self.err(where, f"{ident}: defined twice; first at {first[key]}")
            else:
                first[key] = where

    def shapes(self, placed: list[tuple[dict, str]]) -> None:
        """Types and known fields, with the API server's words, before plan or kubelet code
        reads a pod (also for topology-only clusters, where no API server sees them)."""
        for obj, where in placed:
            info = kinds.of(obj)
            if info is None:
                self.err(where, f'no matches for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"; '
                                f"supported: {kinds.supported_list()}")
                continue
            found = schema.check(obj, schemas.BY_KIND[info.kind])
            self.problems += [Problem(f"{where}.{e.field}", e.body()) for e in found.type_errors]
            if found.unknown and not found.type_errors:
                self.err(where, schema.strict_decoding_message(info.kind, info.api_version, found.unknown))

    def objects(self, doc: Any, path: str) -> list[dict]:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            self.err(path, "a Kubernetes object needs apiVersion and kind")
            return []
        if doc["kind"] == "List" or str(doc["kind"]).endswith("List") and "items" in doc:
            items = []
            for k, it in enumerate(doc.get("items") or []):
                items += self.objects(it, f"{path}.items[{k}]")
            return items
        return [{**doc, "__where__": path}]

    def pod_basics(self, obj: dict, where: str, node_names: list[str]) -> None:
        if obj.get("kind") != "Pod":
            return
        meta, spec = obj.get("metadata"), obj.get("spec") or {}
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            return  # reported with the API's words by shapes()
        name = meta.get("name")
        if not isinstance(name, str) or not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            self.err(f"{where}.metadata.name", f"Pod name {name!r} must be a DNS-1123 subdomain")
        ns = meta.get("namespace", "default")
        if not isinstance(ns, str) or not DNS_LABEL.match(ns):
            self.err(f"{where}.metadata.namespace", f"namespace {ns!r} must be a DNS-1123 label")
        node = spec.get("nodeName")
        if node is not None and node not in node_names:
            self.err(f"{where}.spec.nodeName", f"unknown node {node!r}; nodes: {', '.join(node_names)}")
