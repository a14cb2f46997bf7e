"""Golden-case inputs: ``*.inputs.yaml`` (harness + objects) and ``*.steps.txt`` sequences.

``NAME.inputs.yaml`` is a multi-document YAML whose first document (``kind:
KubeProxyTestHarness``) holds the fake proxier's parameters and whose other documents are
Service and EndpointSlice objects. ``render_file`` renders the one full sync upstream writes
for it.

``NAME.steps.txt`` continues an inputs file over several syncs. Its header names the first
step's inputs (``Step 1 is BASE.{inputs.yaml,expected.txt}``); each following block starts with
``### step N: <what changes>`` and holds the expected restore text. The change description is a
small language, clauses joined by `` + `` (a clause without a verb reuses the previous verb):

- ``add Service NS/NAME (ClusterIP IP, port PNAME PORT/PROTO[, port ...])``
- ``delete Service NS/NAME``
- ``add EndpointSlice NS/SLICE {IP[, IP...], PNAME PORT/PROTO}`` (service = SLICE minus ``-N``)
- ``update EndpointSlice NS/SLICE: OLDIP -> NEWIP`` / ``add endpoint IP`` / ``remove endpoint IP``
- ``delete EndpointSlice NS/SLICE``
- ``sync again ...`` (no change)

Trailing prose (``, no endpoints yet``) is ignored. ``-> (after an injected partial-restore
failure) FULL resync`` means the partial sync's restore fails and the full resync that follows
is the step's output; ``FULL resync`` alone forces a full sync.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from testbed.errors import unreadable, yaml_problem
from testbed.proxy.iptables.render import IptablesConfig, IptablesRenderer, LocalDetector
from testbed.proxy.iptables.sortorder import sort_restore_text
from testbed.proxy.model import IPV4, LABEL_SERVICE_NAME
from testbed.proxy.tracker import ProxyState

HARNESS_KIND = "KubeProxyTestHarness"


# ----------------------------------------------------------------------------- inputs files

@dataclass
class HarnessInputs:
    harness: dict
    config: IptablesConfig | None
    objects: list[dict]


def config_from_harness(doc: dict) -> IptablesConfig:
    """``IptablesConfig`` from a ``KubeProxyTestHarness`` document."""
    mode = doc.get("mode", "iptables")
    if mode != "iptables":
        raise ValueError(f"harness mode {mode!r}: only 'iptables' is supported here")
    det = doc.get("localDetector")
    detector = None
    if det and det.get("mode") not in (None, "", "None"):
        dmode = det["mode"]
        key = {"ClusterCIDR": "clusterCIDR", "NodeCIDR": "nodeCIDR",
               "BridgeInterface": "bridgeInterface",
               "InterfaceNamePrefix": "interfaceNamePrefix"}.get(dmode)
        if key is None:
            raise ValueError(f"unknown localDetector mode {dmode!r}")
        detector = LocalDetector(dmode, det.get(key) or det.get("value") or "")
    node_ips = doc.get("nodeIPs") or ([doc["nodeIP"]] if doc.get("nodeIP") else [])
    nfacct = doc.get("nfacctCounters") or {}
    return IptablesConfig(
        node_name=doc.get("nodeName", ""),
        node_ips=tuple(node_ips),
        ip_family=doc.get("ipFamily", IPV4),
        local_detector=detector,
        masquerade_all=bool(doc.get("masqueradeAll", False)),
        masquerade_bit=int(doc.get("masqueradeBit", 14)),
        mark_format=doc.get("markFormat", "short"),
        localhost_nodeports=bool(doc.get("localhostNodePorts", True)),
        nodeport_addresses=tuple(doc.get("nodePortAddresses") or ()),
        conntrack_tcp_be_liberal=bool(doc.get("conntrackTCPBeLiberal", False)),
        nfacct_ct_state_invalid=bool(nfacct.get("ct_state_invalid_dropped_pkts", False)),
        nfacct_localhost_nodeports=bool(nfacct.get("localhost_nps_accepted_pkts", False)),
        random_fully=bool(doc.get("iptablesHasRandomFully", False)),
    )


def read_text(path: str | Path) -> str:
    """A golden input's text; an unreadable file is bad input (one line), not a traceback."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"{path}: {unreadable(exc)}") from None


def load_inputs(path: str | Path) -> HarnessInputs:
    try:
        docs = [d for d in yaml.safe_load_all(read_text(path)) if d]
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: {yaml_problem(exc)}") from None
    if not all(isinstance(d, dict) for d in docs):
        raise ValueError(f"{path}: every document must be a mapping (a {HARNESS_KIND} or a Kubernetes object)")
    harness = next((d for d in docs if d.get("kind") == HARNESS_KIND), None)
    if harness is None:
        raise ValueError(f"{path}: no {HARNESS_KIND} document (the fake proxier's parameters, as in "
                         f"tests/golden/*.inputs.yaml)")
    objects = [d for d in docs if d is not harness]
    # Other modes read the harness document themselves (testbed.proxy.nftables.golden).
    config = config_from_harness(harness) if harness.get("mode") != "nftables" else None
    return HarnessInputs(harness, config, objects)


def render_file(path: str | Path, *, sorted: bool = False) -> str:  # noqa: A002
    """The restore input of the (full) sync for an ``*.inputs.yaml`` file."""
    inputs = load_inputs(path)
    state = ProxyState(inputs.config.node_name, inputs.config.ip_family)
    state.apply(inputs.objects)
    text = IptablesRenderer(inputs.config).sync(state, now=0.0).text
    return sort_restore_text(text) if sorted else text


# ----------------------------------------------------------------------------- steps files

Event = tuple[str, dict]          # ("update" | "delete", object)
Operation = Callable[["ObjectStore"], list[Event]]


class ObjectStore:
    """Services and EndpointSlices by (kind, namespace, name); operations edit copies."""

    def __init__(self, objects: list[dict]) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        for obj in objects:
            meta = obj.get("metadata") or {}
            self.objects[(obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))] \
                = obj

    def get(self, kind: str, ns: str, name: str) -> dict:
        try:
            return self.objects[(kind, ns, name)]
        except KeyError:
            raise ValueError(f"step refers to unknown {kind} {ns}/{name}") from None

    def put(self, obj: dict) -> list[Event]:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj
        return [("update", obj)]

    def delete(self, kind: str, ns: str, name: str) -> list[Event]:
        return [("delete", self.objects.pop((kind, ns, name), None)
                 or self.get(kind, ns, name))]


@dataclass
class Step:
    number: int
    title: str
    operations: list[Operation] = field(default_factory=list)
    expected: str | None = None
    restore_failure: bool = False
    force_full: bool = False


@dataclass
class StepsFile:
    path: Path
    base_inputs: Path
    steps: list[Step]         # steps[0] is the base inputs' own sync


_NSNAME = r"(?P<ns>[^/\s]+)/(?P<name>[^\s:{(]+)"
_PORT = re.compile(r"^port\s+(?:(?P<pname>\S+)\s+)?(?P<port>\d+)/(?P<proto>[A-Za-z]+)$")
_FAILURE = re.compile(r"\s*->\s*\(after an injected partial-restore failure\)\s*FULL resync.*$")
_FULL = re.compile(r"\s*->?\s*\(?\bFULL resync\b.*$")


def _ports(items: list[str]) -> tuple[list[dict], list[str]]:
    ports, rest = [], []
    for item in items:
        m = _PORT.match(item) or _PORT.match("port " + item)
        if m:
            port = {"port": int(m["port"]), "protocol": m["proto"].upper()}
            if m["pname"]:
                port = {"name": m["pname"], **port}
            ports.append(port)
        else:
            rest.append(item)
    return ports, rest


def _split(body: str) -> list[str]:
    return [p.strip() for p in body.split(",") if p.strip()]


def _add_service(ns: str, name: str, body: str) -> Operation:
    ports, rest = _ports(_split(body))
    spec: dict = {"type": "ClusterIP", "ports": ports}
    for item in rest:
        word, _, value = item.partition(" ")
        if word == "ClusterIP":
            spec["clusterIP"] = value.strip()
        elif word == "type":
            spec["type"] = value.strip()
        else:
            raise ValueError(f"cannot parse service detail {item!r}")
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": ns, "name": name}, "spec": spec}
    return lambda store: store.put(copy.deepcopy(svc))


def _add_slice(ns: str, name: str, body: str) -> Operation:
    ports, ips = _ports(_split(body))
    service = re.sub(r"-\d+$", "", name)
    es = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"namespace": ns, "name": name,
                       "labels": {LABEL_SERVICE_NAME: service}},
          "addressType": "IPv6" if any(":" in ip for ip in ips) else "IPv4",
          "endpoints": [{"addresses": [ip]} for ip in ips], "ports": ports}
    return lambda store: store.put(copy.deepcopy(es))


def _edit_slice(ns: str, name: str, how: str) -> Operation:
    how = how.strip()
    m_replace = re.match(r"^(\S+)\s*->\s*(\S+)", how)
    m_add = re.match(r"^add endpoint (\S+)", how)
    m_remove = re.match(r"^remove endpoint (\S+)", how)
    if not (m_replace or m_add or m_remove):
        raise ValueError(f"cannot parse EndpointSlice update {how!r}")

    def op(store: ObjectStore) -> list[Event]:
        es = copy.deepcopy(store.get("EndpointSlice", ns, name))
        eps = es.setdefault("endpoints", [])
        if m_add:
            eps.append({"addresses": [m_add[1]]})
        else:
            old = (m_replace or m_remove)[1]
            idx = next((i for i, ep in enumerate(eps) if (ep.get("addresses") or [None])[0] == old),
                       None)
            if idx is None:
                raise ValueError(f"EndpointSlice {ns}/{name} has no endpoint {old}")
            if m_replace:
                eps[idx] = {**eps[idx], "addresses": [m_replace[2]]}
            else:
                del eps[idx]
        return store.put(es)
    return op


def parse_operations(title: str) -> tuple[list[Operation], bool, bool]:
    """Operations of a step title, and its (restore_failure, force_full) flags."""
    failure = bool(_FAILURE.search(title))
    text = _FAILURE.sub("", title)
    full = failure or bool(_FULL.search(text))
    text = _FULL.sub("", text).strip()
    ops: list[Operation] = []
    if re.match(r"^sync again\b", text) or not text:
        return ops, failure, full
    verb = None
    for clause in (c.strip() for c in text.split(" + ")):
        first = clause.split(" ", 1)[0]
        if first in ("add", "delete", "update"):
            verb, clause = first, clause[len(first):].strip()
        if verb is None:
            raise ValueError(f"no verb in step clause {clause!r}")
        m = re.match(rf"^(?P<kind>Service|EndpointSlice)\s+{_NSNAME}(?P<rest>.*)$", clause)
        if not m:
            raise ValueError(f"cannot parse step clause {clause!r}")
        kind, ns, name, rest = m["kind"], m["ns"], m["name"], m["rest"].strip()
        if verb == "delete":
            ops.append(lambda store, k=kind, n=ns, nm=name: store.delete(k, n, nm))
        elif verb == "add" and kind == "Service":
            body = re.match(r"^\((?P<body>[^)]*)\)", rest)
            if not body:
                raise ValueError(f"service details missing in {clause!r}")
            ops.append(_add_service(ns, name, body["body"]))
        elif verb == "add":
            body = re.match(r"^\{(?P<body>[^}]*)\}", rest)
            if not body:
                raise ValueError(f"endpoints missing in {clause!r}")
            ops.append(_add_slice(ns, name, body["body"]))
        elif verb == "update" and kind == "EndpointSlice":
            ops.append(_edit_slice(ns, name, rest.lstrip(":")))
        else:
            raise ValueError(f"unsupported step clause {clause!r}")
    return ops, failure, full


def parse_steps(path: str | Path) -> StepsFile:
    path = Path(path)
    text = read_text(path)
    m = re.search(r"Step 1 is (\S+?)\.\{inputs\.yaml", text)
    if not m:
        raise ValueError(f"{path}: header does not name the first step's inputs ('Step 1 is ...')")
    base = path.parent / f"{m[1]}.inputs.yaml"
    base_expected = path.parent / f"{m[1]}.expected.txt"
    steps = [Step(1, f"initial sync of {base.name}",
                  expected=base_expected.read_text() if base_expected.exists() else None)]
    current: Step | None = None
    body: list[str] = []

    def finish() -> None:
        if current is not None:
            current.expected = "\n".join(body).strip("\n") + "\n"

    for line in text.splitlines():
        hm = re.match(r"^###\s*step\s+(\d+)\s*:\s*(.*)$", line)
        if hm:
            finish()
            ops, failure, full = parse_operations(hm[2].strip())
            current = Step(int(hm[1]), hm[2].strip(), ops, None, failure, full)
            steps.append(current)
            body = []
        elif current is not None:
            body.append(line)
    finish()
    return StepsFile(path, base, steps)


def render_steps(path: str | Path, *, sorted: bool = True) -> list[str]:  # noqa: A002
    """One restore text per step of a ``*.steps.txt`` file, step 1 (the base inputs) first."""
    sf = parse_steps(path)
    inputs = load_inputs(sf.base_inputs)
    renderer = IptablesRenderer(inputs.config)
    state = ProxyState(inputs.config.node_name, inputs.config.ip_family)
    store = ObjectStore(inputs.objects)
    state.apply(inputs.objects)
    out: list[str] = []
    for i, step in enumerate(sf.steps):
        for op in step.operations:
            for action, obj in op(store):
                kind = obj.get("kind")
                if kind == "Service":
                    (state.update_service if action == "update" else state.delete_service)(obj)
                elif kind == "EndpointSlice":
                    (state.update_endpoint_slice if action == "update"
                     else state.delete_endpoint_slice)(obj)
        now = float(i)
        if step.restore_failure:
            renderer.sync(state, now=now)
            renderer.restore_failed()
        elif step.force_full:
            renderer.force_full_sync()
        text = renderer.sync(state, now=now).text
        out.append(sort_restore_text(text) if sorted else text)
    return out


def steps_text(path: str | Path, *, sorted: bool = True) -> str:  # noqa: A002
    """What ``testbed render --steps`` prints: every step's restore text under a ``### step N`` header."""
    return "".join(f"### step {i}\n{text}" for i, text in enumerate(render_steps(path, sorted=sorted), 1))
