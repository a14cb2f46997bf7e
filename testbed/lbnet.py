"""The cloud provider's data path for ``type: LoadBalancer``: ingress addresses routed to nodes.

The load-balancer controller assigns ``status.loadBalancer.ingress[].ip`` from the cluster's
pool (outside the underlay network, see ``plan.default_lb_pool``).  This module makes those
addresses answer from the underlay, the way a cloud's L3 load balancer (or MetalLB in BGP mode)
does: in the underlay namespace ``tb.<cluster>.underlay`` -- the external clients' default
gateway -- each assigned address gets a host route to the nodes,

    <ingress>/32 proto 201 nexthop via <node1> dev underlay nexthop via <node2> dev underlay ...

(an ECMP multipath route, flows hashed on their L4 tuple), with ``ip_forward=1`` and ICMP
redirects off in that namespace.  A packet to the address arrives on a node's ``eth0`` and is
handled by kube-proxy's own rules for the ingress IP (``KUBE-SERVICES`` -> ``KUBE-FW-``/``KUBE-EXT-``).

Next hops are every node for ``externalTrafficPolicy: Cluster``; for ``Local`` they are the
nodes with a ready endpoint of the Service (what a cloud load balancer's health check on the
``healthCheckNodePort`` finds), or every node while there is none.

Routes carry the protocol number ``RTPROT_TESTBED_LB`` (201), which proves ownership: a
reconcile replaces the routes it wants and deletes every other route of that protocol, so it
also removes what a previous daemon left behind; ``<state>/lb-routes.json`` records the
result of each change.  All changes of one reconcile are one netlink
batch, sent from a thread inside the underlay namespace.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import struct
from typing import Any, Iterable, Mapping

from . import naming, netlink, netns, state
from .controllers.base import Controller

log = logging.getLogger(__name__)

RTPROT_TESTBED_LB = 201
RTA_MULTIPATH, RTA_TABLE = 9, 15
RTM_GETROUTE = 26
NLM_F_DUMP = 0x300
UNDERLAY_SYSCTLS = (("net.ipv4.ip_forward", 1), ("net.ipv4.conf.all.send_redirects", 0),
                    ("net.ipv4.conf.default.send_redirects", 0), ("net.ipv4.fib_multipath_hash_policy", 1))

Routes = dict[str, tuple[str, ...]]   # ingress ip -> next-hop node addresses (sorted)


# --------------------------------------------------------------------------- pure parts

def ingress_ips(svc: Mapping) -> list[str]:
    lb = (svc.get("status") or {}).get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or [] if i.get("ip")]


def _ready_nodes(slices: Iterable[Mapping], namespace: str, name: str) -> set[str]:
    out: set[str] = set()
    for s in slices:
        m = s.get("metadata") or {}
        if (m.get("namespace") or "default") != namespace or \
                (m.get("labels") or {}).get("kubernetes.io/service-name") != name:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("ready", True) is not False and ep.get("nodeName"):
                out.add(ep["nodeName"])
    return out


def desired_routes(services: Iterable[Mapping], slices: Iterable[Mapping], nodes: Mapping[str, str],
                   pool: str | None = None) -> Routes:
    """Ingress IP -> next hops (node addresses) for every LoadBalancer Service with an ingress.

    ``nodes`` maps node name -> underlay address. Addresses outside ``pool`` (when given) are
    ignored: the testbed only routes what its own controller hands out."""
    net = ipaddress.ip_network(pool) if pool else None
    slices = list(slices)
    all_hops = tuple(sorted(nodes.values(), key=ipaddress.ip_address))
    out: Routes = {}
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer" or not all_hops:
            continue
        hops = all_hops
        if spec.get("externalTrafficPolicy") == "Local":
            m = svc.get("metadata") or {}
            local = _ready_nodes(slices, m.get("namespace") or "default", m.get("name") or "")
            chosen = tuple(sorted((nodes[n] for n in local if n in nodes), key=ipaddress.ip_address))
            hops = chosen or all_hops
        for ip in ingress_ips(svc):
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if addr.version != 4 or (net is not None and addr not in net):
                continue
            out[ip] = hops
    return out


def route_message(ip: str, hops: tuple[str, ...], oif: int) -> bytes:
    """An RTM_NEWROUTE body: ``ip/32`` via one gateway, or an ECMP multipath route."""
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, netlink.RT_TABLE_MAIN, RTPROT_TESTBED_LB,
                       netlink.RT_SCOPE_UNIVERSE, netlink.RTN_UNICAST, 0)
    body += netlink.a_ip(netlink.RTA_DST, ip)
    if len(hops) == 1:
        body += netlink.a_u32(netlink.RTA_OIF, oif) + netlink.a_ip(netlink.RTA_GATEWAY, hops[0])
        return body
    nh = b""
    for gw in hops:
        attrs = netlink.a_ip(netlink.RTA_GATEWAY, gw)
        nh += struct.pack("=HBBi", 8 + len(attrs), 0, 0, oif) + attrs
    return body + netlink._attr(RTA_MULTIPATH, nh)


def delete_message(ip: str) -> bytes:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, netlink.RT_TABLE_MAIN, RTPROT_TESTBED_LB,
                       netlink.RT_SCOPE_UNIVERSE, netlink.RTN_UNICAST, 0)
    return body + netlink.a_ip(netlink.RTA_DST, ip)


def plan_batch(want: Routes, have: Routes, oif: int) -> netlink.Batch:
    """One batch: replace changed/new routes, delete routes no longer wanted."""
    b = netlink.Batch()
    for ip in sorted(want, key=ipaddress.ip_address):
        if have.get(ip) != want[ip]:
            b.add(netlink.RTM_NEWROUTE, netlink.REPLACE, route_message(ip, want[ip], oif),
                  f"underlay: route {ip}/32 via {', '.join(want[ip])}")
    for ip in sorted(set(have) - set(want), key=ipaddress.ip_address):
        b.add(netlink.RTM_DELROUTE, netlink.REQUEST, delete_message(ip), f"underlay: delete route {ip}/32")
    return b


def parse_routes(data: bytes) -> tuple[Routes, bool]:
    """Our routes (protocol ``RTPROT_TESTBED_LB``) in a route dump; (routes, dump finished)."""
    out: Routes = {}
    off, done = 0, False
    while off + 16 <= len(data):
        length, mtype, _f, _seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if mtype == netlink.NLMSG_DONE:
            done = True
        elif mtype == netlink.NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, off + 16)
            if err:
                raise OSError(-err, "route dump failed")
        elif mtype == netlink.RTM_NEWROUTE:
            fam, dlen, _s, _t, _tbl, proto, _sc, _ty, _fl = struct.unpack_from("=BBBBBBBBI", data, off + 16)
            if fam == socket.AF_INET and dlen == 32 and proto == RTPROT_TESTBED_LB:
                dst, hops = None, []
                a = off + 16 + 12
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    payload = data[a + 4:a + alen]
                    if atype == netlink.RTA_DST:
                        dst = socket.inet_ntoa(payload[:4])
                    elif atype == netlink.RTA_GATEWAY:
                        hops.append(socket.inet_ntoa(payload[:4]))
                    elif atype == RTA_MULTIPATH:
                        p = 0
                        while p + 8 <= len(payload):
                            nlen = struct.unpack_from("=H", payload, p)[0]
                            q = p + 8
                            while q + 4 <= p + nlen:
                                l2, t2 = struct.unpack_from("=HH", payload, q)
                                if l2 < 4:
                                    break
                                if t2 == netlink.RTA_GATEWAY:
                                    hops.append(socket.inet_ntoa(payload[q + 4:q + 8]))
                                q += (l2 + 3) & ~3
                            p += (nlen + 3) & ~3 if nlen else len(payload)
                    a += (alen + 3) & ~3
                if dst:
                    out[dst] = tuple(sorted(hops, key=ipaddress.ip_address))
        off += (length + 3) & ~3
    return out, done


# --------------------------------------------------------------------------- kernel access

def dump_routes() -> Routes:
    """Our routes in the calling thread's netns."""
    sock = netlink.open_socket()
    try:
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        sock.sendall(struct.pack("=IHHII", 16 + len(body), RTM_GETROUTE,
                                 netlink.NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        out: Routes = {}
        while True:
            routes, done = parse_routes(sock.recv(1 << 20))
            out.update(routes)
            if done:
                return out
    finally:
        sock.close()


def _apply_here(want: Routes, have: Routes | None) -> Routes:
    for key, value in UNDERLAY_SYSCTLS:
        try:
            if netns.read_sysctl(key) != str(value):
                netns.write_sysctl(key, value)
        except OSError as exc:
            log.warning("underlay sysctl %s=%s: %s", key, value, exc)
    if have is None:
        have = dump_routes()
    batch = plan_batch(want, have, naming.UNDERLAY_BRIDGE)
    if len(batch):
        sock = netlink.open_socket()
        try:
            batch.send(sock)
        finally:
            sock.close()
    return dict(want)


def apply_routes(underlay_netns: str, want: Routes, have: Routes | None = None) -> Routes:
    """Make the underlay's load-balancer routes exactly ``want`` (``have``: what we know is
    there; None = dump the kernel's). Returns the new state."""
    return netns.run_in(underlay_netns, _apply_here, want, have)


def current_routes(underlay_netns: str) -> Routes:
    return netns.run_in(underlay_netns, dump_routes)


# --------------------------------------------------------------------------- state file

STATE_FILE = "lb-routes.json"


def write_state(cluster: str, routes: Routes) -> None:
    """``<state>/lb-routes.json``: what the controller programmed (ingress ip -> next hops)."""
    d = state.directory(cluster)
    tmp = os.path.join(d, f".{STATE_FILE}.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump({ip: list(h) for ip, h in sorted(routes.items())}, f, indent=1)
    os.replace(tmp, os.path.join(d, STATE_FILE))


def read_state(cluster: str) -> Routes:
    try:
        with open(os.path.join(state.directory(cluster), STATE_FILE)) as f:
            return {ip: tuple(h) for ip, h in json.load(f).items()}
    except (FileNotFoundError, ValueError):
        return {}


# --------------------------------------------------------------------------- controller

class LoadBalancerRoutes(Controller):
    """Watches Services and EndpointSlices; keeps the underlay's routes equal to
    ``desired_routes`` (one key: every reconcile recomputes the whole, small, table)."""

    name = "loadbalancer-routes"
    component = "service-controller"
    kinds = ("Service", "EndpointSlice")
    KEY = ("", "routes")

    def __init__(self, store: Any, plan, stop=None, *, recorder=None):
        super().__init__(store, stop, recorder=recorder)
        self.plan = plan
        self.nodes = {n.name: n.ip for n in plan.nodes}
        self.programmed: Routes | None = None   # None: not read from the kernel yet
        self.applied = 0

    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        if kind == "Service":
            if any((o.get("spec") or {}).get("type") == "LoadBalancer" or ingress_ips(o)
                   for o in (old, new) if o is not None):
                self.mark(self.KEY)
        elif self.programmed:   # endpoints matter only for eTP=Local LB Services
            self.mark(self.KEY)

    def on_synced(self) -> None:
        self.mark(self.KEY)   # also removes routes a previous daemon left for deleted Services

    def reconcile(self, key) -> None:
        want = desired_routes(self.caches["Service"].values(), self.caches["EndpointSlice"].values(),
                              self.nodes, self.plan.lb_pool or None)
        if self.programmed is not None and want == self.programmed:
            return
        before = self.programmed
        try:
            self.programmed = apply_routes(self.plan.underlay.netns, want, self.programmed)
        except Exception:
            self.programmed = None   # read the kernel's state again on the retry
            raise
        self.applied += 1
        try:
            write_state(self.plan.cluster, self.programmed)
        except OSError as exc:
            log.warning("cannot write %s: %s", STATE_FILE, exc)
        added = {ip: h for ip, h in want.items() if (before or {}).get(ip) != h}
        removed = sorted(set(before or {}) - set(want))
        if added or removed:
            log.info("load-balancer routes: %s%s", ", ".join(f"{ip} via {'+'.join(h)}" for ip, h in added.items()),
                     f"; removed {', '.join(removed)}" if removed else "")
