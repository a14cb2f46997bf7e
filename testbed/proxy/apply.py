"""What every proxy mode does around applying its rules (pure, unit-tested without root).

- ``conntrack_filters``: which UDP conntrack entries to delete after a sync (upstream <= 1.31
  ``deleteEndpointConnections`` + the newly-active / deleted-service cleanup), and
  ``ConntrackFilter.matches`` to select them from a dump;
- ``local_ready_endpoints`` / ``health_check_ports``: the health-check servers' inputs;
- ``trigger_time``: an object's ``endpoints.kubernetes.io/last-change-trigger-time``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Iterable, Mapping

from testbed.proxy.model import NamespacedName, ServicePortInfo, ServicePortName
from testbed.proxy.tracker import ProxyState, StateChange

# --------------------------------------------------------------------------- conntrack

IPPROTO_UDP = 17


@dataclass(frozen=True)
class ConntrackFilter:
    """Delete UDP entries whose original destination is ``orig_dst`` (any if None) port
    ``orig_dport`` (any if None) and whose reply source (the DNAT target, ``--dst-nat``) is
    ``reply_src`` (any if None). ``conntrack -D -p udp [--orig-dst IP] [--dport P] [--dst-nat IP]``."""

    orig_dst: str | None = None
    orig_dport: int | None = None
    reply_src: str | None = None
    proto: int = IPPROTO_UDP
    reason: str = ""

    def matches(self, proto: int, orig_dst: str, orig_dport: int | None, reply_src: str) -> bool:
        return (proto == self.proto
                and (self.orig_dst is None or orig_dst == self.orig_dst)
                and (self.orig_dport is None or orig_dport == self.orig_dport)
                and (self.reply_src is None or reply_src == self.reply_src))

    def describe(self) -> str:
        parts = ["-p udp" if self.proto == IPPROTO_UDP else f"-p {self.proto}"]
        if self.orig_dst:
            parts.append(f"--orig-dst {self.orig_dst}")
        if self.orig_dport is not None:
            parts.append(f"--dport {self.orig_dport}")
        if self.reply_src:
            parts.append(f"--dst-nat {self.reply_src}")
        return " ".join(parts)


def _endpoint_ip(endpoint: str) -> str:
    host = endpoint.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def _frontends(svc: ServicePortInfo) -> list[str]:
    return [svc.cluster_ip, *svc.external_ips, *svc.load_balancer_vips]


def conntrack_filters(changes: StateChange, svc_port_map: Mapping[ServicePortName, ServicePortInfo]
                      ) -> list[ConntrackFilter]:
    """The UDP conntrack deletions one sync needs (upstream <= 1.31, event based):

    - a deleted UDP service port: every entry to its cluster IP (``ClearEntriesForIP``);
    - a UDP service port that went from 0 to N serving endpoints: entries to each frontend
      ``IP:port`` (``ClearEntriesForIPPort``) and to its NodePort (``ClearEntriesForPort``),
      which are the "black hole" entries created while it had none;
    - a removed UDP endpoint: entries to each frontend ``IP:port`` NATed to the endpoint IP
      (``ClearEntriesForNAT``, narrowed to the port) and to the NodePort NATed to it
      (``ClearEntriesForPortNAT``). Skipped if the service port is gone (covered above).
    """
    out: list[ConntrackFilter] = []
    seen: set = set()

    def add(f: ConntrackFilter) -> None:
        key = (f.orig_dst, f.orig_dport, f.reply_src, f.proto)
        if key not in seen:
            seen.add(key)
            out.append(f)

    for ip in sorted(changes.deleted_udp_cluster_ips):
        if ip:
            add(ConntrackFilter(orig_dst=ip, reason="service deleted"))
    for spn in changes.newly_active_udp_services:
        svc = svc_port_map.get(spn)
        if svc is None or svc.protocol != "UDP":
            continue
        for ip in _frontends(svc):
            add(ConntrackFilter(orig_dst=ip, orig_dport=svc.port, reason=f"{spn} has endpoints now"))
        if svc.node_port:
            add(ConntrackFilter(orig_dport=svc.node_port, reason=f"{spn} has endpoints now (NodePort)"))
    for se in changes.deleted_udp_endpoints:
        svc = svc_port_map.get(se.service_port)
        if svc is None or svc.protocol != "UDP":
            continue
        ep_ip = _endpoint_ip(se.endpoint)
        for ip in _frontends(svc):
            add(ConntrackFilter(orig_dst=ip, orig_dport=svc.port, reply_src=ep_ip,
                                reason=f"{se.service_port} lost endpoint {se.endpoint}"))
        if svc.node_port:
            add(ConntrackFilter(orig_dport=svc.node_port, reply_src=ep_ip,
                                reason=f"{se.service_port} lost endpoint {se.endpoint} (NodePort)"))
    return out


def select_entries(filters: list[ConntrackFilter], entries: Iterable[tuple]) -> list[tuple]:
    """Entries (``(proto, orig_dst, orig_dport, reply_src, handle)`` tuples) any filter matches."""
    by_dst: dict[str | None, list[ConntrackFilter]] = {}
    for f in filters:
        by_dst.setdefault(f.orig_dst, []).append(f)
    anydst = by_dst.get(None, [])
    out = []
    for e in entries:
        proto, dst, dport, rsrc = e[0], e[1], e[2], e[3]
        for f in by_dst.get(dst, []) + anydst:
            if f.matches(proto, dst, dport, rsrc):
                out.append(e)
                break
    return out


# --------------------------------------------------------------------------- health checks

def health_check_ports(state: ProxyState) -> dict[NamespacedName, int]:
    """Services that need a health-check server (eTP=Local LoadBalancers): name -> port."""
    out: dict[NamespacedName, int] = {}
    for spn, svc in state.svc_port_map.items():
        if svc.health_check_node_port:
            out[spn.namespaced_name] = svc.health_check_node_port
    return out


def local_ready_endpoints(state: ProxyState, services: Iterable[NamespacedName] | None = None
                          ) -> dict[NamespacedName, int]:
    """Local ready endpoints per service (distinct IPs over all its ports), for health checks."""
    wanted = None if services is None else set(services)
    ips: dict[NamespacedName, set[str]] = {}
    for spn, eps in state.endpoints_map.items():
        nn = spn.namespaced_name
        if wanted is not None and nn not in wanted:
            continue
        s = ips.setdefault(nn, set())
        for ep in eps:
            if ep.is_local and ep.ready:
                s.add(ep.ip)
    out = {nn: len(s) for nn, s in ips.items()}
    if wanted is not None:
        for nn in wanted:
            out.setdefault(nn, 0)
    return out


# --------------------------------------------------------------------------- trigger times

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (``2024-01-02T03:04:05Z``, optional fraction/offset) -> epoch seconds."""
    if not text or not isinstance(text, str):
        return None
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def trigger_time(obj: Mapping, arrived: float) -> float:
    """The object's last-change-trigger-time annotation, else when its watch event arrived."""
    ann = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_ANNOTATION)
    t = parse_time(ann)
    return arrived if t is None else t
