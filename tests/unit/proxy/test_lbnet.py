"""The load balancer's underlay routes (testbed.lbnet): desired routes and their netlink encoding."""

from __future__ import annotations

import socket
import struct

from testbed import lbnet, netlink

NODES = {"node1": "172.20.10.2", "node2": "172.20.10.3", "node3": "172.20.10.4"}


def lb(name, ip, etp="Cluster", typ="LoadBalancer"):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"type": typ, "externalTrafficPolicy": etp},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}}}


def slice_(svc, eps):
    return {"metadata": {"name": f"{svc}-x", "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": ["10.244.0.9"], "nodeName": n, "conditions": {"ready": r}} for n, r in eps]}


def test_desired_routes():
    svcs = [lb("a", "172.20.11.1"), lb("b", "172.20.11.2", "Local"), lb("c", None), lb("d", "172.20.11.4", "Local"),
            lb("e", "172.20.11.5", typ="ClusterIP"), lb("f", "203.0.113.9")]
    slices = [slice_("b", [("node3", True), ("node1", True), ("node2", False)])]
    got = lbnet.desired_routes(svcs, slices, NODES, "172.20.11.0/24")
    all_nodes = ("172.20.10.2", "172.20.10.3", "172.20.10.4")
    assert got == {"172.20.11.1": all_nodes,                       # eTP Cluster: every node
                   "172.20.11.2": ("172.20.10.2", "172.20.10.4"),   # Local: nodes with a ready endpoint
                   "172.20.11.4": all_nodes}                        # Local without endpoints: every node


def _attrs(body: bytes, off: int = 12) -> dict[int, bytes]:
    out = {}
    while off + 4 <= len(body):
        ln, ty = struct.unpack_from("=HH", body, off)
        out[ty] = body[off + 4:off + ln]
        off += (ln + 3) & ~3
    return out


def test_route_messages_and_dump_parsing():
    body = lbnet.route_message("172.20.11.1", ("172.20.10.2", "172.20.10.3"), 2)
    fam, dlen, _, _, table, proto, scope, typ, _ = struct.unpack_from("=BBBBBBBBI", body)
    assert (fam, dlen, table, proto, typ) == (socket.AF_INET, 32, 254, lbnet.RTPROT_TESTBED_LB, 1)
    a = _attrs(body)
    assert socket.inet_ntoa(a[netlink.RTA_DST]) == "172.20.11.1" and lbnet.RTA_MULTIPATH in a
    single = _attrs(lbnet.route_message("172.20.11.2", ("172.20.10.2",), 2))
    assert socket.inet_ntoa(single[netlink.RTA_GATEWAY]) == "172.20.10.2"
    # a dump reply made of our own messages parses back
    msgs = b""
    for ip, hops in (("172.20.11.1", ("172.20.10.2", "172.20.10.3")), ("172.20.11.2", ("172.20.10.4",))):
        b = lbnet.route_message(ip, hops, 2)
        msgs += struct.pack("=IHHII", 16 + len(b), netlink.RTM_NEWROUTE, 2, 1, 0) + b
    other = bytearray(lbnet.route_message("10.0.0.1", ("172.20.10.2",), 2))
    other[5] = 4   # another protocol: not ours
    msgs += struct.pack("=IHHII", 16 + len(other), netlink.RTM_NEWROUTE, 2, 1, 0) + bytes(other)
    msgs += struct.pack("=IHHIIi", 20, netlink.NLMSG_DONE, 2, 1, 0, 0)
    routes, done = lbnet.parse_routes(msgs)
    assert done and routes == {"172.20.11.1": ("172.20.10.2", "172.20.10.3"), "172.20.11.2": ("172.20.10.4",)}


def test_plan_batch_replaces_changes_and_deletes_leftovers():
    have = {"172.20.11.1": ("172.20.10.2",), "172.20.11.9": ("172.20.10.2",), "172.20.11.3": ("172.20.10.3",)}
    want = {"172.20.11.1": ("172.20.10.2", "172.20.10.3"), "172.20.11.3": ("172.20.10.3",), "172.20.11.4": ("172.20.10.2",)}
    b = lbnet.plan_batch(want, have, 2)
    kinds = [(r[0], r[3]) for r in b.requests]
    assert kinds == [(netlink.RTM_NEWROUTE, "underlay: route 172.20.11.1/32 via 172.20.10.2, 172.20.10.3"),
                     (netlink.RTM_NEWROUTE, "underlay: route 172.20.11.4/32 via 172.20.10.2"),
                     (netlink.RTM_DELROUTE, "underlay: delete route 172.20.11.9/32")]
    assert len(lbnet.plan_batch(want, want, 2)) == 0
