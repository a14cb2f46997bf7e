"""Resolve a check's names to addresses: the source namespace and where its requests leave it,
the target address and port (ClusterIP, NodePort, external IP, load balancer, pod) and the
backends an EndpointSlice lists, each with the node it runs on."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import TestbedError
from .model import Check


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



class Resolver:
    """Resolution against the running cluster (``self.c``), its plan and nodes."""

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
