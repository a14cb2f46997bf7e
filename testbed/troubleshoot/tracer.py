"""``trace(cluster, FROM, TO, port, protocol)``: one real connection attempt, followed through
the kernel of every namespace it crosses (see nftrace.py for how packets are marked), with
the NAT conntrack recorded, the route and VXLAN encapsulation taken, the bridge port it left
by and the pod that answered. In userspace mode the proxy's own account of the connection it
accepted and the one it opened joins the two legs (proxyside.py).

The trace tables (``ip testbed-trace-<id>``) are deleted in a ``finally``; a trace killed before
that leaves them in the cluster's own namespaces only, which ``testbed down`` removes whole,
and their prefix makes them easy to spot in ``nft list tables``.
"""

from __future__ import annotations

import random
import socket
import uuid
from dataclasses import dataclass

from testbed import exec as ex
from testbed import netns as _netns
from testbed.errors import TestbedError
from testbed.verify import probe

from testbed.proxy.userspace import mode as userspace_mode

from . import evidence, explain, nftrace, proxyside
from .explain import TraceResult, TraceStep
from .monitor import Monitor

VIAS = ("clusterIP", "nodePort", "externalIP", "loadBalancer")
TIMEOUT = 2.0


@dataclass
class Dest:
    kind: str            # service | pod | ip
    name: str = ""
    namespace: str = "default"
    port: str | None = None
    via: str = "clusterIP"
    node: str | None = None
    ip: str | None = None


def parse_dest(text: str) -> Dest:
    """``service/NS/NAME[:PORT][/via[@NODE]]``, ``pod/[NS/]NAME:PORT`` or ``IP:PORT``."""
    kind, _, rest = text.partition("/")
    if kind in ("service", "svc") and rest:
        via, node = "clusterIP", None
        parts = rest.split("/")
        if parts[-1].split("@")[0] in VIAS:
            via, _, node = parts.pop().partition("@")
        ns, name = (parts[0], parts[1]) if len(parts) == 2 else ("default", parts[0])
        name, _, port = name.partition(":")
        return Dest("service", name, ns, port or None, via, node or None)
    if kind in ("pod", "po") and rest:
        name, _, port = rest.partition(":")
        ns, _, name = name.rpartition("/")
        if not port.isdigit():
            raise TestbedError(f"TO {text!r}: pod/NAME:PORT needs a numeric port")
        return Dest("pod", name, ns or "default", port)
    host, _, port = text.rpartition(":")
    try:
        socket.inet_aton(host)
    except OSError:
        host = ""
    if host and port.isdigit():
        return Dest("ip", ip=host, port=port)
    raise TestbedError(f"TO {text!r}: use service/NAME[:PORT][/VIA[@NODE]] (VIA: {', '.join(VIAS)}), "
                       f"pod/NAME:PORT or IP:PORT")


def _resolve(cluster, dest: Dest, protocol: str, pods: list):
    """(ip, port, the pods that may answer: their namespaces are watched too)."""
    by_ip = {p.ip: p for p in pods}
    if dest.kind == "ip":
        p = by_ip.get(dest.ip)
        return dest.ip, int(dest.port), [p] if p else []
    if dest.kind == "pod":
        p = next((x for x in pods if x.name == dest.name and x.namespace == dest.namespace), None)
        if p is None:
            raise TestbedError(f"TO pod/{dest.namespace}/{dest.name}: no such running pod")
        return p.ip, int(dest.port), [p]
    with cluster.api() as api:
        try:
            svc = api.get("Service", dest.namespace, dest.name)
        except Exception:
            raise TestbedError(f"TO service/{dest.namespace}/{dest.name}: no such Service") from None
        slices, _ = api.list("EndpointSlice", dest.namespace, label_selector={"kubernetes.io/service-name": dest.name})
    spec = svc.get("spec") or {}
    ports = [p for p in spec.get("ports") or [] if p.get("protocol", "TCP").lower() == protocol]
    sp = ports[0] if ports and dest.port is None else next(
        (p for p in ports if dest.port in (str(p.get("port")), p.get("name"))), None)
    if sp is None:
        have = ", ".join(f"{p.get('name') or p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
        wanted = f"{protocol.upper()} port {dest.port}" if dest.port else f"{protocol.upper()} port"
        raise TestbedError(f"TO service/{dest.name}: no {wanted}; ports: {have or 'none'}")
    backends = []
    for sl in slices:
        for ep in sl.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            p = next((x for x in pods if x.name == ref.get("name") and x.namespace == ref.get("namespace", dest.namespace)), None)
            if p:
                backends.append(p)
    if dest.via == "clusterIP":
        return spec.get("clusterIP"), int(sp["port"]), backends
    if dest.via == "nodePort":
        if not sp.get("nodePort"):
            raise TestbedError(f"TO service/{dest.name}: type {spec.get('type', 'ClusterIP')} has no nodePort")
        nodes = cluster.plan.nodes
        node = next((n for n in nodes if n.name == dest.node), None) if dest.node else nodes[0]
        if node is None:
            raise TestbedError(f"TO …@{dest.node}: no such node; nodes: {', '.join(n.name for n in nodes)}")
        return node.ip, int(sp["nodePort"]), backends
    if dest.via == "externalIP":
        ips = spec.get("externalIPs") or []
        if not ips:
            raise TestbedError(f"TO service/{dest.name}: spec.externalIPs is empty")
        return ips[0], int(sp["port"]), backends
    ing = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not ing:
        raise TestbedError(f"TO service/{dest.name}: no status.loadBalancer.ingress address yet")
    return ing[0]["ip"], int(sp["port"]), backends


# Modes whose Service translation the kernel does (and nftrace/conntrack/IPVS show); in
# userspace mode the proxy process accepts and re-connects and tells the trace so itself.
KERNEL_MODES = ("iptables", "ipvs", "nftables")
TRACEABLE_MODES = KERNEL_MODES + ("userspace",)


def trace(cluster, source: str, to: str, port: int | None = None, protocol: str = "tcp") -> TraceResult:
    mode = cluster.plan.proxy_mode
    if mode not in TRACEABLE_MODES and mode != "none":
        raise TestbedError(f"trace: proxy mode {mode!r} is not followed; allowed: {', '.join(TRACEABLE_MODES)}")
    protocol = protocol.lower()
    if protocol not in ("tcp", "udp"):
        raise TestbedError(f"--protocol: {protocol!r}; allowed: tcp, udp")
    src_kind = source.partition("/")[0]
    if src_kind not in ("pod", "po", "node", "no", "external", "ext"):
        raise TestbedError(f"FROM {source!r}: use pod/NAME, node/NAME or external/NAME")
    src_ns = cluster.netns_of(source)
    dest = parse_dest(to)
    if port is not None:
        dest.port = str(port)
    pods = cluster.pods()
    ip, dport, backends = _resolve(cluster, dest, protocol, pods)
    watch = [src_ns] + [n.netns for n in cluster.plan.nodes] + [p.netns for p in backends]
    watch = list(dict.fromkeys(watch))
    trace_id = uuid.uuid4().hex[:8]
    dscp = random.randint(1, 63)
    table = nftrace.trace_table(trace_id, dscp, protocol)
    monitors: list[Monitor] = []
    installed: list[str] = []
    subs = None
    proxy_events: dict[str, list[dict]] = {}
    try:
        for ns in watch:
            ex.run(["nft", "-f", "-"], netns=ns, input=table)
            installed.append(ns)
        for ns in watch:
            monitors.append(Monitor(cluster.name, ns, trace_id))
        for m in monitors:
            m.handshake()
        if mode == "userspace":
            subs = proxyside.Subscriptions({n.netns: userspace_mode.trace_socket(cluster.name, n.name)
                                            for n in cluster.plan.nodes}, dscp)
        answer = _send(src_ns, ip, dport, protocol, dscp, trace_id)
        if subs is not None:
            proxy_events = subs.collect()
        for ns in list(installed):
            ex.run(["nft", "-f", "-"], netns=ns, input=nftrace.delete_table(trace_id), check=False)
            installed.remove(ns)
        for m in monitors:
            m.wait_deleted()
    finally:
        for ns in installed:
            ex.run(["nft", "-f", "-"], netns=ns, input=nftrace.delete_table(trace_id), check=False)
        for m in monitors:
            m.stop()
        if subs is not None:
            subs.close()
    own = (nftrace.table_name(trace_id),)
    hops = [h for m in monitors for h in nftrace.parse_monitor(m.netns, m.text(), own)]
    # userspace mode: the client's connection ends at the proxy, whose own connection is a
    # second leg through the kernel; each leg is ordered and explained on its own
    client_leg, upstream_leg = proxyside.split_legs(hops, proxyside.upstream_local(proxy_events))
    ordered = nftrace.path_order(client_leg)
    steps = explain.rule_steps(ordered)
    steps = explain.insert_after_requests(steps, _kernel_steps(cluster, ordered, pods))
    steps += proxyside.steps(proxy_events)
    if upstream_leg:
        ordered = nftrace.path_order(upstream_leg)
        leg = explain.rule_steps(ordered)
        steps += explain.insert_after_requests(leg, _kernel_steps(cluster, ordered, pods))
    # the echo workload names itself; any other server is found by where the request was delivered
    answered_by = answer.hostname or _delivered_to(ordered, pods)
    if answer.outcome == "answered":
        steps.append(TraceStep(_pod_ns(pods, answered_by) or "-", "eth0", "socket", "-", "-",
                               f"answered by {answered_by}; it saw the client as {answer.clientip}", "answer",
                               kind="answer"))
    detail = answer.detail if answer.outcome != "answered" else f"client seen as {answer.clientip}"
    res = (answer.outcome != "answered" and proxyside.result(steps, detail)) or \
        explain.verdict(answer.outcome, answered_by, steps, detail)
    notes = explain.notes_for(steps)
    proxy_note = proxyside.note(proxy_events)
    if proxy_note:
        notes.append(proxy_note)
    notes += [f"{ns}: no account from its userspace proxy ({why})" for ns, why in (subs.missing if subs else {}).items()]
    if mode == "userspace" and dest.kind == "service":
        with cluster.api() as api:
            notes += list(dict.fromkeys(proxyside.unsupported(api.get("Service", dest.namespace, dest.name))))
    if mode == "ipvs" and dest.kind == "service" and dest.via != "clusterIP":
        with cluster.api() as api:
            spec = api.get("Service", dest.namespace, dest.name).get("spec") or {}
        notes += explain.ipvs_local_fallback(steps, spec.get("externalTrafficPolicy") == "Local",
                                             {n.netns: n.name for n in cluster.plan.nodes},
                                             {p.ip: p.node for p in pods})
    src_pod = next((p for p in pods if p.netns == src_ns), None)
    # in userspace mode the proxy's own connection comes from the node: no hairpin involved
    if src_pod is not None and answered_by == src_pod.name and mode != "userspace":
        notes.append(_hairpin_note(src_pod, mode))
    return TraceResult(source, to, protocol, steps, res, notes, {m.netns: m.text() for m in monitors})


def _delivered_to(hops, pods) -> str | None:
    requests = [h for h in hops if not h.is_reply]
    if not requests:
        return None
    last = requests[-1].packet_after or requests[-1].packet
    return next((p.name for p in pods if p.ip == last.get("ip daddr")), None)


def _pod_ns(pods, name) -> str | None:
    return next((p.netns for p in pods if p.name == name), None)


def _send(src_ns: str, ip: str, port: int, protocol: str, dscp: int, token: str) -> probe.Answer:
    def factory(kind: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
        return s

    def go():
        if protocol == "tcp":
            return probe.tcp(factory, ip, port, token, TIMEOUT)
        return probe.udp(factory, ip, port, token, TIMEOUT, commands=("hostname", "clientip"))
    return _netns.run_in(src_ns, go)


def _kernel_steps(cluster, hops, pods) -> list[TraceStep]:
    """Conntrack (NAT and its reverse), route and VXLAN per node namespace the request crossed,
    the bridge port it left by. Placed after the rules of the same namespace."""
    out: list[TraceStep] = []
    nodes = {n.netns: n for n in cluster.plan.nodes}
    seen = set()
    for h in hops:
        if h.netns in seen or h.netns not in nodes or h.hook not in ("prerouting", "output"):
            continue
        if "ip dscp" not in h.packet or h.packet.get("ip dscp") == "cs0":
            continue  # a reply
        seen.add(h.netns)
        pkt = h.packet
        proto = "tcp" if "tcp dport" in pkt else "udp"
        ct = ex.run(["conntrack", "-L", "-p", proto, "-s", pkt["ip saddr"], "--sport", pkt[f"{proto} sport"]],
                    netns=h.netns, check=False)
        entry = evidence.find_conntrack(evidence.parse_conntrack(ct.stdout), pkt["ip saddr"], pkt[f"{proto} sport"],
                                        pkt["ip daddr"], pkt[f"{proto} dport"])
        dst = pkt["ip daddr"]
        if entry:
            nat = evidence.nat_of(entry)
            out.append(TraceStep(h.netns, h.interface, "conntrack", "-", "-", evidence.conntrack_text(entry),
                                 "; ".join(f"{k} {v}" for k, v in nat.items()) or "no NAT", kind="conntrack"))
            dst = entry["reply"].get("src", dst)
        if cluster.plan.proxy_mode == "ipvs":
            # IPVS balances in the kernel without a netfilter rule per backend: its connection
            # table says which real server this client socket was given
            table = ex.run(["cat", "/proc/net/ip_vs_conn"], netns=h.netns, check=False).stdout
            conns = evidence.parse_ipvs_conn(table, pkt["ip saddr"], pkt[f"{proto} sport"])
            for conn in conns:
                out.append(TraceStep(h.netns, h.interface, "ipvs", "-", "-", conn, "ipvs", kind="ipvs"))
            if not conns:
                out.extend(_ipvs_refusal(h, proto, pkt))
        route = evidence.parse_route(ex.run(["ip", "route", "get", dst], netns=h.netns, check=False).stdout)
        out.append(TraceStep(h.netns, route.get("dev", "-"), "routing", "-", "-", route["text"], "route", kind="route"))
        dev = route.get("dev", "")
        if dev.startswith("flannel"):
            out.append(_vxlan_step(h.netns, dev, route.get("via")))
        elif dev == "cni0":
            p = next((x for x in pods if x.ip == dst and x.netns.startswith(h.netns.rsplit(".node.", 1)[0])), None)
            if p is not None:
                hp = ex.run(["cat", f"/sys/class/net/{p.host_veth}/brport/hairpin_mode"], netns=h.netns,
                            sysfs=True, check=False).stdout.strip()
                out.append(TraceStep(h.netns, p.host_veth, "bridge", "-", "-",
                                     f"cni0 port {p.host_veth} -> pod {p.namespace}/{p.name} (hairpin_mode={hp or '?'})",
                                     "forward", kind="bridge"))
    return out


def _ipvs_refusal(h, proto: str, pkt: dict) -> list[TraceStep]:
    """A virtual server without real servers refuses in the kernel, no rule involved: IPVS
    finds nothing to schedule and answers ICMP port unreachable (``ip_vs_leave``)."""
    vs = f"{proto.upper()} {pkt['ip daddr']}:{pkt[f'{proto} dport']}"
    services = evidence.parse_ipvs_services(ex.run(["cat", "/proc/net/ip_vs"], netns=h.netns, check=False).stdout)
    if services.get(vs, None) != []:
        return []
    return [TraceStep(h.netns, h.interface, "ipvs", "-", "-",
                      f"IPVS virtual server {vs} has no real server: the kernel answers ICMP port unreachable",
                      "reject", kind="ipvs")]


def _vxlan_step(netns: str, dev: str, via: str | None) -> TraceStep:
    link = ex.run(["ip", "-d", "link", "show", dev], netns=netns, check=False).stdout
    vni = evidence.parse_vni(link)
    mac = evidence.parse_neigh_mac(ex.run(["ip", "neigh", "show", "dev", dev, via or ""], netns=netns,
                                          check=False).stdout) if via else None
    outer = evidence.parse_fdb_dst(ex.run(["bridge", "fdb", "show", "dev", dev], netns=netns, check=False).stdout,
                                   mac) if mac else None
    local = None
    for tok in (link.split("local ")[1:2] or [""]):
        local = tok.split()[0] if tok else None
    return TraceStep(netns, dev, "vxlan", "-", "-",
                     f"VXLAN VNI {vni}: inner next hop {via} ({mac}) -> outer {local or '?'} > {outer or '?'} udp/8472",
                     "encap", kind="vxlan")


def _hairpin_note(pod, mode: str) -> str:
    if mode == "ipvs":
        # the Service address is local (kube-ipvs0): the node receives the request, and IPVS
        # sends the translated one out through the node's routing, cni0 to the pod's port
        return (f"hairpin: pod {pod.name} reached itself through the Service; IPVS on its node sent the "
                f"translated request out through the node's routing (cni0, then the bridge to port "
                f"{pod.host_veth}), not back through the bridge port it came in on; KUBE-LOOP-BACK "
                f"masqueraded the source so the reply returns through the node")
    return (f"hairpin: pod {pod.name} reached itself through the Service; the request leaves and re-enters "
            f"the bridge through the same port {pod.host_veth}, which works only with hairpin_mode=1 "
            f"(or a promiscuous bridge); the source is masqueraded so the reply returns through the node")

