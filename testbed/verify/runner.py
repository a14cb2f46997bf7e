"""Run checks against a running cluster: resolve names, send requests, capture, decide.

Captures are started inside the namespace they capture in, on the pods' host-side veths, the
nodes' eth0 and the underlay bridge ports (never on cni0), with a kernel BPF filter so only
the frames of interest reach Python; they are decoded with scapy afterwards (a few frames per
check). Bulk request loops use plain sockets. Waiting is on state (API watches, inotify on the
proxies' metrics files, captures and sockets), never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from ..inotify import DirWatch
from .. import exec, netns, state
from ..capture import Capture, Frame, write_pcap
from ..errors import TestbedError
from . import probe
from .model import Check
from .report import Result, evidence_dir

ANSWER_TIMEOUT = 2.0
DROP_TIMEOUT = 1.0
VXLAN_PORT = 8472


# ------------------------------------------------------------------------- waiting on state

def _rv(obj: dict) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


# ------------------------------------------------------------------------- resolution

@dataclass
class Backend:
    pod: object  # PodPlan
    port: int  # the targetPort as a number (from the EndpointSlice)
    node: object  # NodePlan


@dataclass
class Target:
    ip: str
    port: int
    what: str
    service: dict | None = None
    backends: list[Backend] = field(default_factory=list)
    ingress: object | None = None  # NodePlan whose netfilter receives the request, when known


@dataclass
class Source:
    spec: object
    netns: str
    ip: str
    capture: tuple[str, str] | None  # (netns, iface) where the request leaves the source
    pod: object | None = None
    node: object | None = None  # the node the request enters first


class Verifier:
    def __init__(self, cluster, checks: list[Check], artifacts: str | None = None,
                 log=lambda msg: None):
        self.c = cluster
        self.checks = checks
        self.artifacts = artifacts or os.path.join(state.directory(cluster.name), "verify")
        self.log = log
        self.plan = cluster.plan
        self.nodes = {n.name: n for n in self.plan.nodes}

    # ------------------------------------------------------------------ settle
    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the API's Deployments are rolled out, LoadBalancers have an address and
        every node's proxy has programmed the newest Service and EndpointSlice."""
        from ..controllers.base import wait_for

        deadline = time.monotonic() + timeout
        with self.c.api() as api:
            deps, _ = api.list("Deployment") if self._has_kind(api, "Deployment") else ([], None)
            if deps:
                def rolled(items):
                    return all(_deployment_done(d) for d in items)
                try:
                    wait_for(api, "Deployment", rolled, timeout=max(1.0, deadline - time.monotonic()))
                except TimeoutError as exc:
                    raise TestbedError(f"Deployments did not become ready: {exc}") from None
            svcs, _ = api.list("Service")
            if any((s.get("spec") or {}).get("type") == "LoadBalancer" for s in svcs):
                def assigned(items):
                    return all((x.get("status") or {}).get("loadBalancer", {}).get("ingress")
                               for x in items if (x.get("spec") or {}).get("type") == "LoadBalancer")
                try:
                    wait_for(api, "Service", assigned, timeout=max(1.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise TestbedError("LoadBalancer Services got no address from the load-balancer controller") from None
            svcs, _ = api.list("Service")
            slices, _ = api.list("EndpointSlice")
        want = {"Service": max((_rv(o) for o in svcs), default=0),
                "EndpointSlice": max((_rv(o) for o in slices), default=0)}
        self.wait_proxies(want, deadline)

    @staticmethod
    def _has_kind(api, kind: str) -> bool:
        try:
            api.list(kind)
            return True
        except Exception:
            return False

    def wait_proxies(self, want: dict[str, int], deadline: float) -> None:
        if self.plan.proxy_mode == "none":
            return
        d = state.directory(self.c.name)
        ino = DirWatch(d)
        try:
            while True:
                behind = []
                for n in self.plan.nodes:
                    try:
                        with open(os.path.join(d, f"proxy-{n.name}.json")) as f:
                            m = json.load(f)
                    except (OSError, ValueError):
                        behind.append(f"{n.name} (no metrics yet)")
                        continue
                    applied = m.get("applied_resource_versions") or {}
                    lag = [k for k, rv in want.items() if rv and int(applied.get(k) or 0) < rv]
                    if lag or not (m.get("last_sync") or {}).get("ok"):
                        behind.append(f"{n.name} ({', '.join(lag) or 'last sync failed'})")
                if not behind:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestbedError(f"kube-proxy has not programmed the current Services/EndpointSlices on: "
                                       f"{', '.join(behind)}")
                ino.wait(min(left, 1.0))
        finally:
            ino.close()

    # ------------------------------------------------------------------ resolution
    def pod_plans(self) -> dict[tuple[str, str], object]:
        return {(p.namespace, p.name): p for p in self.c.pods()}

    def source(self, check: Check, pods) -> Source:
        s = check.source
        if s.kind == "pod":
            p = pods.get((s.namespace, s.name))
            if p is None:
                raise TestbedError(f"pod {s.namespace}/{s.name} is not running")
            node = self.nodes[p.node]
            return Source(s, p.netns, p.ip, (node.netns, p.host_veth), pod=p, node=node)
        if s.kind == "node":
            n = self.nodes.get(s.name)
            if n is None:
                raise TestbedError(f"no node {s.name}")
            return Source(s, n.netns, n.ip, None, node=n)
        for e in self.plan.externals:
            if e.name == s.name:
                return Source(s, e.netns, e.ip, (e.netns, "eth0"))
        raise TestbedError(f"no external client {s.name}")

    def target(self, check: Check, src: Source | None, pods) -> Target:
        to = check.to
        if to.pod:
            p = pods.get((to.namespace, to.pod))
            if p is None:
                raise TestbedError(f"pod {to.namespace}/{to.pod} is not running")
            port = int(to.port or 8080)
            return Target(p.ip, port, f"pod {to.pod} {p.ip}:{port}", backends=[Backend(p, port, self.nodes[p.node])],
                          ingress=src.node if src else None)
        if to.ip:
            return Target(to.ip, int(to.port), f"{to.ip}:{to.port}", ingress=src.node if src else None)
        with self.c.api() as api:
            svc = api.get("Service", to.namespace, to.service)
            slices, _ = api.list("EndpointSlice", to.namespace,
                                 label_selector={"kubernetes.io/service-name": to.service})
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        sp = ports[0] if to.port is None and ports else next(
            (p for p in ports if to.port in (p.get("port"), p.get("name"))), None)
        if sp is None and check.rules is None:
            raise TestbedError(f"service {to.service} has no port {to.port}")
        sp = sp or {}
        proto = sp.get("protocol", "TCP")
        backends = []
        for sl in slices:
            port = next((p.get("port") for p in sl.get("ports") or []
                         if (p.get("name") or "") == (sp.get("name") or "") and p.get("protocol", "TCP") == proto), None)
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                ref = ep.get("targetRef") or {}
                p = pods.get((ref.get("namespace", to.namespace), ref.get("name")))
                if p is not None and port:
                    backends.append(Backend(p, int(port), self.nodes[p.node]))
        via = to.via
        ingress = src.node if src else None
        if via == "clusterIP":
            ip, port = spec.get("clusterIP"), sp.get("port")
        elif via == "nodePort":
            ingress = self.nodes[to.node]
            ip, port = ingress.ip, sp.get("nodePort")
        elif via == "healthCheck":
            ingress = self.nodes[to.node]
            ip, port = ingress.ip, spec.get("healthCheckNodePort")
        elif via == "externalIP":
            ips = spec.get("externalIPs") or []
            ip, port = (ips[0] if ips else None), sp.get("port")
        else:
            ing = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            ip, port = (ing[0].get("ip") if ing else None), sp.get("port")
        if (not ip or ip == "None" or not port) and check.rules is None:
            raise TestbedError(f"service {to.service} has no {via} address/port (ip {ip!r}, port {port!r})")
        if via in ("externalIP", "loadBalancer") and src is not None and src.spec.kind == "external":
            ingress = None  # found from the captures on the nodes' eth0
        return Target(str(ip), int(port or 0), f"{via} {ip}:{port}", service=svc, backends=backends, ingress=ingress)

    # ------------------------------------------------------------------ running
    def run(self, names: list[str] | None = None) -> list[Result]:
        unknown = [n for n in names or [] if n not in {c.name for c in self.checks}]
        if unknown:
            raise TestbedError(f"no check {', '.join(unknown)}; checks: {', '.join(c.name for c in self.checks)}")
        results = []
        self.settle()
        for check in self.checks:
            if names and check.name not in names:
                continue
            t0 = time.monotonic()
            attempt = 0
            while True:
                attempt += 1
                r = Result(check.name, check.description)
                ev = evidence_dir(self.artifacts, check.name)
                for f in os.listdir(ev):
                    os.unlink(os.path.join(ev, f))
                try:
                    _Run(self, check, r, ev).execute()
                except TestbedError as exc:
                    r.error = str(exc)
                except Exception as exc:  # a bug or an unexpected kernel answer: report, go on
                    r.error = f"{type(exc).__name__}: {exc}"
                if r.ok or attempt > check.retries:
                    break
                self.log(f"{check.name}: attempt {attempt} failed, retrying")
                self.settle()
            r.attempts = attempt
            r.seconds = time.monotonic() - t0
            results.append(r)
            self.log(f"{check.name}: {'pass' if r.ok else 'FAIL'} ({r.seconds:.2f}s)")
        return results


def _deployment_done(d: dict) -> bool:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    want = spec.get("replicas", 1)
    return (st.get("observedGeneration", 0) >= (d.get("metadata") or {}).get("generation", 0)
            and st.get("updatedReplicas", 0) == want and st.get("readyReplicas", 0) == want
            and st.get("replicas", 0) == want)


# ------------------------------------------------------------------------- packets

def _decode(frames: list[Frame]):
    import scapy.layers.inet  # noqa: F401  (binds IP to Ether: decoding needs the layers loaded)
    import scapy.layers.vxlan  # noqa: F401  (UDP 8472 -> VXLAN)
    from scapy.layers.l2 import Ether

    return [(f, Ether(f.data)) for f in frames]


def _l4(pkt):
    from scapy.layers.inet import TCP, UDP

    return pkt[TCP] if TCP in pkt else (pkt[UDP] if UDP in pkt else None)


def _payload(pkt) -> bytes:
    l4 = _l4(pkt)
    return bytes(l4.payload) if l4 is not None else b""


def _flow(pkt) -> str:
    from scapy.layers.inet import IP

    ip = pkt[IP]
    l4 = _l4(pkt)
    ports = (l4.sport, l4.dport) if l4 is not None else ("", "")
    return f"{ip.src}:{ports[0]} > {ip.dst}:{ports[1]} ttl {ip.ttl}"


def _with_token(decoded, token: bytes, *, outgoing: bool | None = None, inner: bool = False):
    from scapy.layers.inet import IP

    out = []
    for f, p in decoded:
        if outgoing is not None and f.outgoing != outgoing:
            continue
        if IP not in p:
            continue
        if inner:
            from scapy.layers.vxlan import VXLAN
            if VXLAN not in p:
                continue
            q = p[VXLAN].payload
            if IP in q and token in _payload(q):
                out.append((f, p))
        elif token in _payload(p):
            out.append((f, p))
    return out


# ------------------------------------------------------------------------- one check

class _Run:
    def __init__(self, v: Verifier, check: Check, result: Result, evidence: str):
        self.v, self.check, self.r, self.ev = v, check, result, evidence
        self.caps: dict[str, Capture] = {}
        self._done: dict[str, list[Frame]] = {}
        self.nodes_involved: set[str] = set()

    # helpers
    def factory(self, src: Source):
        return lambda kind: netns.run_in(src.netns, socket.socket, socket.AF_INET, kind)

    def start(self, name: str, ns: str, iface: str, bpf: str) -> Capture:
        cap = Capture(ns, iface, bpf=bpf).start()
        self.caps[name] = cap
        return cap

    def save_rules(self) -> None:
        for n in sorted(self.nodes_involved):
            node = self.v.nodes[n]
            p = exec.run(["iptables-save"], netns=node.netns, sysfs=True, check=False)
            path = os.path.join(self.ev, f"iptables-{n}.txt")
            with open(path, "w") as f:
                f.write(p.stdout or p.stderr)
            self.r.evidence.append(path)

    def execute(self) -> None:
        c = self.check
        try:
            pods = self.v.pod_plans()
            src = self.v.source(c, pods) if c.source else None
            if src and src.node:
                self.nodes_involved.add(src.node.name)
            if c.rules:
                self.rules(c)
                if set(self._expectations()) == {"rules"}:
                    return
            tgt = self.v.target(c, src, pods)
            if tgt.ingress is not None:
                self.nodes_involved.add(tgt.ingress.name)
            self.nodes_involved.update(b.node.name for b in tgt.backends)
            if c.steady:
                self.steady(src, tgt, pods)
                return
            if c.status is not None:
                self.health(src, tgt)
                return
            self.request(src, tgt)
            if c.backends:
                self.backends(src, tgt, pods)
        finally:
            self.stop_all()
            self.save_rules()

    def _expectations(self) -> list[str]:
        c = self.check
        names = {"reach": c.reach, "backends": c.backends, "dnat": c.dnat, "source": c.expect_source,
                 "vxlan": c.vxlan, "hairpin": c.hairpin is not None, "rules": c.rules, "steady": c.steady,
                 "status": c.status is not None}
        return [k for k, v in names.items() if v]

    # ---------------------------------------------------------------- rules
    def rules(self, c: Check) -> None:
        key = f"{c.to.namespace}/{c.to.service}"
        per_node, total_svc = [], 0
        for n in self.v.plan.nodes:
            self.nodes_involved.add(n.name)
            p = exec.run(["iptables-save", "-t", "nat"], netns=n.netns, sysfs=True, check=False)
            chains = [ln for ln in p.stdout.splitlines() if ln.startswith(":KUBE-SVC-")]
            total_svc += len(chains)
            mine = [ln for ln in p.stdout.splitlines()
                    if ln.startswith("-A KUBE-SVC-") and (f'"{key}:' in ln or f'"{key} ' in ln or f'"{key}"' in ln)]
            per_node.append((n.name, len(chains), len(mine)))
        # must-see-something: the proxy is programming other Services on every node
        alive = all(k > 0 for _, k, _ in per_node)
        self.r.add("rules", "kube-proxy active: KUBE-SVC chains on every node",
                   ", ".join(f"{n}: {k} KUBE-SVC chains" for n, k, _ in per_node), alive)
        if c.rules == "absent":
            self.r.add("rules", f"no KUBE-SVC rule for {key} on any node",
                       ", ".join(f"{n}: {m}" for n, _, m in per_node), all(m == 0 for _, _, m in per_node))
        else:
            self.r.add("rules", f"KUBE-SVC rules for {key} on every node",
                       ", ".join(f"{n}: {m}" for n, _, m in per_node), all(m > 0 for _, _, m in per_node))

    # ---------------------------------------------------------------- health check
    def health(self, src: Source, tgt: Target) -> None:
        a = probe.tcp(self.factory(src), tgt.ip, tgt.port, uuid.uuid4().hex[:12], ANSWER_TIMEOUT, path="/healthz")
        if self.check.reach:
            self.r.add("reach", f"{self.check.reach} ({tgt.what})", a.outcome, a.outcome == self.check.reach)
        self.r.add("status", f"HTTP {self.check.status} from {tgt.what}",
                   f"HTTP {a.status} {a.detail[:80]}" if a.status else f"{a.outcome} {a.detail}",
                   a.status == self.check.status)

    # ---------------------------------------------------------------- one request with captures
    def request(self, src: Source, tgt: Target) -> None:
        c = self.check
        proto = c.protocol.lower()
        want = c.expected_reach or "answered"
        # capture points: where the request leaves the source, each backend's veth, the nodes' eth0
        # (external sources: which node received it), the underlay ports (VXLAN)
        if src.capture:
            self.start("client", src.capture[0], src.capture[1], f"ip and {proto} and host {tgt.ip}")
        for b in tgt.backends:
            name = f"backend-{b.pod.name}"
            if name not in self.caps:
                self.start(name, b.node.netns, b.pod.host_veth, f"ip and {proto} and host {b.pod.ip}")
        if src.spec.kind == "external":
            for n in self.v.plan.nodes:
                self.start(f"eth0-{n.name}", n.netns, "eth0", f"ip and {proto} and host {tgt.ip}")
        if c.vxlan:
            for n in self.v.plan.nodes:
                self.start(f"underlay-{n.name}", self.v.plan.underlay.netns, n.name, f"udp port {VXLAN_PORT}")
        attempts = 20 if c.vxlan else 1
        for i in range(attempts):
            token = f"tbv-{uuid.uuid4().hex[:16]}"
            timeout = ANSWER_TIMEOUT if want == "answered" else DROP_TIMEOUT
            if c.vxlan and c.vxlan.mtu:
                a, over = probe.udp_mtu(self.factory(src), tgt.ip, tgt.port, token, src.pod.mtu, timeout)
            elif c.protocol == "TCP":
                a = probe.tcp(self.factory(src), tgt.ip, tgt.port, token, timeout)
            else:
                a = probe.udp(self.factory(src), tgt.ip, tgt.port, token, timeout)
            backend = next((b for b in tgt.backends if b.pod.name == a.hostname), None)
            if not c.vxlan or a.outcome != "answered":
                break
            if backend is not None and self._ingress(src, tgt, token) is not None \
                    and backend.node.name != self._ingress(src, tgt, token).name:
                break
        # wait for the frames of this flow to be seen where they must be seen
        tok = token.encode()
        if backend is not None:
            self.caps[f"backend-{backend.pod.name}"].wait_for(
                lambda fr: any(tok in f.data for f in fr), timeout=1.0)
        self.stop_all()
        self.r.add("reach", f"{want} ({tgt.what})",
                   f"{a.outcome}{' by ' + a.hostname if a.hostname else ''} in {a.seconds:.2f}s"
                   + (f" ({a.detail})" if a.detail and a.outcome != 'answered' else ""),
                   a.outcome == want and (want != "refused" or a.seconds < DROP_TIMEOUT))
        if want == "dropped":
            self.prove_drop(src, tgt, tok)
        if c.hairpin is False:
            self.hairpin(src, tgt, None, tok)
        if a.outcome != "answered":
            return
        if backend is None and (c.dnat or c.expect_source or c.vxlan or c.hairpin):
            self.r.add("backend", "an endpoint of the destination answered",
                       f"{a.hostname!r} is not one of {[b.pod.name for b in tgt.backends]}", False)
            return
        ingress = self._ingress(src, tgt, token)
        if ingress is not None:
            self.nodes_involved.add(ingress.name)
        bdec = _decode(self.caps_frames(f"backend-{backend.pod.name}")) if backend else []
        to_pod = _with_token(bdec, tok, outgoing=True)
        if c.dnat:
            self.dnat(src, tgt, backend, tok, to_pod)
        if c.expect_source:
            self.source_seen(src, tgt, backend, ingress, a, to_pod)
        if c.vxlan:
            self.vxlan(src, tgt, backend, ingress, tok, over if c.vxlan.mtu else None)
        if c.hairpin:
            self.hairpin(src, tgt, backend, tok)

    def caps_frames(self, name: str) -> list[Frame]:
        return self._done.get(name, [])

    def stop_all(self) -> None:
        """Stop every capture, keep its frames for analysis and write its pcap."""
        for name, cap in self.caps.items():
            cap.stop()
            self._done[name] = cap.frames
            path = os.path.join(self.ev, f"{name}.pcap")
            write_pcap(path, cap.frames)
            self.r.evidence.append(path)
        self.caps = {}

    def _ingress(self, src: Source, tgt: Target, token: str):
        if tgt.ingress is not None:
            return tgt.ingress
        for n in self.v.plan.nodes:
            cap = self.caps.get(f"eth0-{n.name}")
            frames = cap.frames if cap else self.caps_frames(f"eth0-{n.name}")
            if any(token.encode() in f.data and not f.outgoing for f in frames):
                return n
        return None

    def expected_source(self, src: Source, backend: Backend, ingress) -> str:
        e = self.check.expect_source
        if e == "client":
            return src.ip if src.spec.kind != "node" else "(the node's own address)"
        if e == "gateway":
            return backend.node.cni_ip
        if e == "masquerade":
            if ingress is None:
                return "(unknown ingress node)"
            if ingress.name == backend.node.name:
                return ingress.cni_ip
            return ingress.vtep_ip if self.v.plan.backend == "vxlan" else ingress.ip
        return e

    def dnat(self, src, tgt, backend, tok, to_pod) -> None:
        from scapy.layers.inet import IP

        before = None
        if src.capture:
            out = _with_token(_decode(self.caps_frames("client")), tok, outgoing=src.spec.kind == "external" or None)
            out = [x for x in out if x[1][IP].dst == tgt.ip] if src.spec.kind == "pod" else out
            before = out[0][1] if out else None
        after = to_pod[0][1] if to_pod else None
        exp = f"client side dst {tgt.ip}:{tgt.port}; backend veth dst {backend.pod.ip}:{backend.port}"
        obs = (f"client side {_flow(before) if before is not None else '(not captured)'}"
               if src.capture else "client side: node-local socket (DNAT in OUTPUT)")
        obs += f"; {backend.pod.name} veth {_flow(after) if after is not None else '(not captured)'}"
        ok = after is not None and after[IP].dst == backend.pod.ip and _l4(after).dport == backend.port \
            and after[IP].dst != tgt.ip
        if src.capture:
            ok = ok and before is not None and before[IP].dst == tgt.ip and _l4(before).dport == tgt.port
        self.r.add("dnat", exp, obs, ok)

    def source_seen(self, src, tgt, backend, ingress, a, to_pod) -> None:
        from scapy.layers.inet import IP

        want = self.expected_source(src, backend, ingress)
        if self.check.expect_source == "client" and src.spec.kind == "node":
            want = a.local[0] if a.local else want
        pkt = to_pod[0][1] if to_pod else None
        seen_pkt = pkt[IP].src if pkt is not None else "(request not captured on the backend veth)"
        self.r.add("source", f"{self.check.expect_source} = {want}",
                   f"backend saw {a.clientip}; veth shows src {seen_pkt}",
                   a.client_addr == want and seen_pkt == want)

    def vxlan(self, src, tgt, backend, ingress, tok, over) -> None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        from scapy.layers.vxlan import VXLAN

        vx = self.check.vxlan
        if ingress is None or ingress.name == backend.node.name:
            self.r.add("vxlan", "request crosses nodes in VXLAN",
                       f"backend {backend.pod.name} is on the ingress node {ingress.name if ingress else '?'}", False)
            return
        frames = _with_token(_decode(self.caps_frames(f"underlay-{ingress.name}")), tok, inner=True)
        req = [(f, p) for f, p in frames if p[IP].src == ingress.ip]
        if not req:
            self.r.add("vxlan", f"VXLAN {ingress.ip} > {backend.node.ip} udp/{VXLAN_PORT} on the underlay",
                       "no encapsulated request seen on the underlay port of " + ingress.name, False)
            return
        p = req[0][1]
        o, u, v = p[IP], p[UDP], p[VXLAN]
        ie = v[Ether]
        ii = ie[IP]
        want_src = {"client": src.ip}.get(self.check.expect_source or "", None) or \
            (self.expected_source(src, backend, ingress) if self.check.expect_source else ii.src)
        checks = {
            "outer": (o.src, o.dst) == (ingress.ip, backend.node.ip),
            "udp": u.dport == VXLAN_PORT and 32768 <= u.sport <= 60999,
            "vni": v.vni == 1 and int(v.flags) == 0x08,
            "df": not o.flags.DF,
            "len": o.len == ii.len + 50,
            "vtep": (ie.src, ie.dst) == (ingress.vtep_mac, backend.node.vtep_mac),
            "inner": (ii.dst, _l4(ii).dport) == (backend.pod.ip, backend.port) and ii.src == want_src,
            "ttl": ii.ttl == vx.ttl,
        }
        exp = (f"outer {ingress.ip} > {backend.node.ip} udp/{VXLAN_PORT} vni 1 DF clear, len inner+50; "
               f"inner {want_src} > {backend.pod.ip}:{backend.port} ttl {vx.ttl}")
        obs = (f"outer {o.src} > {o.dst} udp {u.sport}>{u.dport} vni {v.vni} flags {int(v.flags):#x} "
               f"DF {'set' if o.flags.DF else 'clear'} len {o.len}/{ii.len}; inner {_flow(ii)}")
        bad = [k for k, ok in checks.items() if not ok]
        self.r.add("vxlan", exp, obs + (f" [wrong: {', '.join(bad)}]" if bad else ""), not bad)
        if vx.mtu:
            size = src.pod.mtu
            frag = [(f, q) for f, q in frames if q[IP].flags.MF or q[IP].frag]
            full = [q for _, q in req if q[IP].len == size + 50 and q[VXLAN][IP].len == size]
            self.r.add("mtu", f"a {size}-byte DF datagram crosses as one {size + 50}-byte outer packet; "
                       f"{size + 1} bytes: EMSGSIZE at the sender",
                       f"outer {o.len} bytes, inner {ii.len}, fragments {len(frag)}; one more byte: {over}",
                       bool(full) and not frag and over == "EMSGSIZE" and o.len <= self.v.plan.nodes[0].mtu + 50)

    def hairpin(self, src, tgt, backend, tok) -> None:
        from scapy.layers.inet import IP
        from scapy.layers.l2 import Ether

        # the source pod's own veth, captured without an address filter on the Service (the
        # hairpinned frame carries neither the Service address nor the client as source)
        own = f"backend-{src.pod.name}"
        frames = _decode(self.caps_frames(own if own in self._done else "client"))
        sent = [p for f, p in _with_token(frames, tok, outgoing=False) if p[IP].dst == tgt.ip]
        back = [p for f, p in _with_token(frames, tok, outgoing=True)]
        if self.check.hairpin:
            ok = bool(sent) and bool(back) and backend.pod.name == src.pod.name
            if back:
                b = back[0]
                ok = ok and b[Ether].src == b[Ether].dst == src.pod.mac and b[IP].src == backend.node.cni_ip \
                    and b[IP].dst == src.pod.ip and _l4(b).dport == backend.port
            self.r.add("hairpin", f"request leaves {src.pod.host_veth} and comes back on it: "
                       f"{src.pod.mac} > {src.pod.mac}, src {backend.node.cni_ip} > {src.pod.ip}:{backend.port}",
                       f"in: {_flow(sent[0]) if sent else 'none'}; back: "
                       + (f"{back[0][Ether].src} > {back[0][Ether].dst} {_flow(back[0])}" if back else "none"), ok)
        else:
            # no connection, no token: the requests are the SYNs (or datagrams) to the Service
            # address; anything sent back into the pod towards the endpoint port is a hairpin
            ports = {b.port for b in tgt.backends} or {tgt.port}
            sent = [p for f, p in frames if not f.outgoing and IP in p and p[IP].dst == tgt.ip
                    and _l4(p) is not None and _l4(p).dport == tgt.port]
            back = [p for f, p in frames if f.outgoing and IP in p and p[IP].dst == src.pod.ip
                    and _l4(p) is not None and _l4(p).dport in ports]
            self.r.add("hairpin", f"request arrives on {src.pod.host_veth}, nothing comes back on it",
                       f"in: {len(sent)} frames; back: {len(back)} frames",
                       bool(sent) and not back and own in self._done)

    def prove_drop(self, src, tgt, tok) -> None:
        """A drop passes only if a capture saw the request arrive where it was dropped, and
        nothing came back."""
        from scapy.layers.inet import IP

        points = [f"eth0-{n.name}" for n in self.v.plan.nodes] if src.spec.kind == "external" else ["client"]
        arrived, answered = [], []
        for name in points:
            dec = _decode(self.caps_frames(name))
            for f, p in dec:
                l4 = _l4(p)
                if l4 is None:
                    continue
                if p[IP].dst == tgt.ip and l4.dport == tgt.port and p[IP].src == src.ip:
                    arrived.append(name)
                elif p[IP].src == tgt.ip and l4.sport == tgt.port:
                    answered.append(name)
        self.r.add("drop", "the request is seen arriving, no answer is seen",
                   f"request seen on: {', '.join(sorted(set(arrived))) or 'nowhere'}; "
                   f"answers seen: {len(answered)}", bool(arrived) and not answered)

    # ---------------------------------------------------------------- N requests
    def backends(self, src: Source, tgt: Target, pods) -> None:
        b = self.check.backends
        proto = self.check.protocol.lower()
        silent_caps = {}
        for name in (*b.silent, *b.pods):
            p = pods.get((self.check.to.namespace, name)) or next((x for k, x in pods.items() if k[1] == name), None)
            if p is None:
                if name in b.silent:
                    continue
                continue
            node = self.v.nodes[p.node]
            self.nodes_involved.add(node.name)
            silent_caps[name] = self.start(f"n-{name}", node.netns, p.host_veth,
                                           f"ip and {proto} and dst host {p.ip}")
        f = self.factory(src)
        seen: Counter = Counter()
        failed = 0
        sock_kind = socket.SOCK_STREAM if self.check.protocol == "TCP" else socket.SOCK_DGRAM
        for _ in range(b.requests):
            if sock_kind == socket.SOCK_STREAM:
                a = probe.tcp(f, tgt.ip, tgt.port, "n", ANSWER_TIMEOUT)
            else:
                a = probe.udp(f, tgt.ip, tgt.port, "n", ANSWER_TIMEOUT, commands=("hostname",))
            if a.outcome == "answered" and a.hostname:
                seen[a.hostname] += 1
            else:
                failed += 1
        counts = {n: len(c.frames) for n, c in silent_caps.items()}
        self.stop_all()
        want_distinct = b.distinct if b.distinct is not None else len(b.pods)
        others = [h for h in seen if h not in b.pods]
        ok = failed == 0 and not others and len(seen) == want_distinct
        exp = (f"{b.requests} answered, {'all of' if b.distinct is None else f'{want_distinct} distinct of'} "
               f"{', '.join(b.pods)}")
        obs = f"{sum(seen.values())} answered ({', '.join(f'{k}: {v}' for k, v in sorted(seen.items()))})"
        if failed:
            obs += f", {failed} failed"
        self.r.add("backends", exp, obs, ok)
        if b.silent:
            answering = [n for n in b.pods if seen.get(n)]
            self.r.add("silent", f"no request reaches {', '.join(b.silent)} (while answering pods' veths see them)",
                       ", ".join(f"{n}: {counts.get(n, 'no capture')} frames" for n in (*b.silent, *answering)),
                       all(counts.get(n, 1) == 0 for n in b.silent) and all(counts.get(n, 0) > 0 for n in answering)
                       and bool(answering))

    # ---------------------------------------------------------------- steady traffic across an action
    def steady(self, src: Source, tgt: Target, pods) -> None:
        s = self.check.steady
        f = self.factory(src)
        udp = self.check.protocol == "UDP"
        cmds = ("version",) if "version" in s.until else ("hostname",)
        shared = None
        if udp and s.socket == "shared":
            shared = f(socket.SOCK_DGRAM)
            shared.connect((tgt.ip, tgt.port))
        log: list[tuple[float, str, str | None, str | None]] = []  # (t, outcome, hostname, version)
        stop = threading.Event()

        def loop():
            period = 1.0 / s.rate
            nxt = time.monotonic()
            while not stop.is_set():
                if udp:
                    a = probe.udp(f, tgt.ip, tgt.port, uuid.uuid4().hex[:8], min(0.5, ANSWER_TIMEOUT),
                                  sock=shared, commands=cmds)
                else:
                    a = probe.tcp(f, tgt.ip, tgt.port, "s", ANSWER_TIMEOUT)
                log.append((time.monotonic(), a.outcome, a.hostname, a.version))
                nxt += period
                stop.wait(max(0.0, nxt - time.monotonic()))

        before = len(log)
        th = threading.Thread(target=loop, name="steady-traffic", daemon=True)
        th.start()
        deadline = time.monotonic() + s.timeout
        reached = False
        try:
            self._wait_log(log, lambda: len(log) >= 3, deadline)  # traffic flows before the action
            first = Counter(h or v for _, o, h, v in log if o == "answered")
            with self.v.c.api() as api:
                for obj in s.apply:
                    api.apply(obj)
                for ref in s.delete:
                    kind, _, name = ref.partition("/")
                    api.delete(_KINDS.get(kind, kind.capitalize()), self.check.to.namespace, name)
                if "rollout" in s.until:
                    from ..controllers.base import wait_for
                    name = s.until["rollout"].split("/", 1)[1]
                    try:
                        wait_for(api, "Deployment", lambda items: any(
                            d["metadata"]["name"] == name and _deployment_done(d) for d in items),
                            namespace=self.check.to.namespace, timeout=max(1.0, deadline - time.monotonic()))
                        mark = len(log)
                        reached = self._wait_log(log, lambda: sum(1 for x in log[mark:] if x[1] == "answered") >= 3,
                                                 deadline)
                    except TimeoutError:
                        reached = False
                else:
                    def tail_ok():
                        tail = log[-3:]
                        if len(tail) < 3 or any(x[1] != "answered" for x in tail):
                            return False
                        if "version" in s.until:
                            return all(x[3] == s.until["version"] for x in tail)
                        return all(x[2] in s.until["answeredBy"] for x in tail)
                    reached = self._wait_log(log, tail_ok, deadline)
        finally:
            stop.set()
            th.join()
            if shared is not None:
                shared.close()
        failures = sum(1 for x in log[before:] if x[1] != "answered")
        kinds = Counter(x[1] for x in log[before:] if x[1] != "answered")
        after = Counter(x[2] or x[3] for x in log if x[1] == "answered")
        self.r.add("reach", f"answered before the action ({tgt.what})",
                   ", ".join(f"{k}: {v}" for k, v in sorted(first.items())) or "nothing", bool(first))
        cond = ", ".join(f"{k} {v}" for k, v in s.until.items())
        self.r.add("steady", f"until {cond} within {s.timeout:g}s",
                   f"{'reached' if reached else 'not reached'} after {len(log)} requests; answers: "
                   + ", ".join(f"{k}: {v}" for k, v in sorted(after.items())), reached)
        if s.max_failures is not None:
            self.r.add("failures", f"at most {s.max_failures} failed requests",
                       f"{failures} failed of {len(log)}"
                       + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))})" if kinds else ""),
                       failures <= s.max_failures)

    @staticmethod
    def _wait_log(log, cond, deadline) -> bool:
        """Wait for a condition on the traffic log (re-checked as requests complete)."""
        ev = threading.Event()
        n = -1
        while time.monotonic() < deadline:
            if len(log) != n:
                n = len(log)
                if cond():
                    return True
            ev.wait(0.01)  # the traffic thread appends at the declared rate
        return cond()


_KINDS = {"pod": "Pod", "deployment": "Deployment", "service": "Service", "replicaset": "ReplicaSet",
          "endpointslice": "EndpointSlice"}
