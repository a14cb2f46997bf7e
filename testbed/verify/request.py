"""The one-request check kinds: ``reach``, ``dnat``, ``source``, ``vxlan``, ``hairpin`` and
``drop``, decided from one request and the captures along its path."""

from __future__ import annotations

import uuid

from . import probe
from .packets import VXLAN_PORT, decode, flow, l4, with_token
from .resolve import Backend, Source, Target
from .timeouts import ANSWER_TIMEOUT, DROP_TIMEOUT


class RequestCheck:
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
        # Wait until every capture point read below has taken this flow's frames. They were
        # queued to its socket before the answer came back, and stopping a capture keeps what
        # is queued, so this is a wait for the capture threads, not for the network.
        tok = token.encode()
        points = [f"backend-{backend.pod.name}"] if backend is not None else []
        if src.capture and a.outcome == "answered":
            points.append("client")
        for name in points:
            self.caps[name].wait_for(lambda fr: any(tok in f.data for f in fr), timeout=1.0)
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
        bdec = decode(self.caps_frames(f"backend-{backend.pod.name}")) if backend else []
        to_pod = with_token(bdec, tok, outgoing=True)
        if c.dnat:
            self.dnat(src, tgt, backend, tok, to_pod)
        if c.expect_source:
            self.source_seen(src, tgt, backend, ingress, a, to_pod)
        if c.vxlan:
            self.vxlan(src, tgt, backend, ingress, tok, over if c.vxlan.mtu else None)
        if c.hairpin:
            self.hairpin(src, tgt, backend, tok)


    def _ingress(self, src: Source, tgt: Target, token: str):
        if tgt.ingress is not None:
            return tgt.ingress
        for n in self.v.plan.nodes:
            cap = self.caps.get(f"eth0-{n.name}")
            # the request crossed its node's eth0 before the answer came back, so its frame is
            # queued to that capture: take it now rather than race the capture thread
            frames = cap.sync() if cap else self.caps_frames(f"eth0-{n.name}")
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
            out = with_token(decode(self.caps_frames("client")), tok, outgoing=src.spec.kind == "external" or None)
            out = [x for x in out if x[1][IP].dst == tgt.ip] if src.spec.kind == "pod" else out
            before = out[0][1] if out else None
        after = to_pod[0][1] if to_pod else None
        exp = f"client side dst {tgt.ip}:{tgt.port}; backend veth dst {backend.pod.ip}:{backend.port}"
        obs = (f"client side {flow(before) if before is not None else '(not captured)'}"
               if src.capture else "client side: node-local socket (DNAT in OUTPUT)")
        obs += f"; {backend.pod.name} veth {flow(after) if after is not None else '(not captured)'}"
        ok = after is not None and after[IP].dst == backend.pod.ip and l4(after).dport == backend.port \
            and after[IP].dst != tgt.ip
        if src.capture:
            ok = ok and before is not None and before[IP].dst == tgt.ip and l4(before).dport == tgt.port
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
        frames = with_token(decode(self.caps_frames(f"underlay-{ingress.name}")), tok, inner=True)
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
            "inner": (ii.dst, l4(ii).dport) == (backend.pod.ip, backend.port) and ii.src == want_src,
            "ttl": ii.ttl == vx.ttl,
        }
        exp = (f"outer {ingress.ip} > {backend.node.ip} udp/{VXLAN_PORT} vni 1 DF clear, len inner+50; "
               f"inner {want_src} > {backend.pod.ip}:{backend.port} ttl {vx.ttl}")
        obs = (f"outer {o.src} > {o.dst} udp {u.sport}>{u.dport} vni {v.vni} flags {int(v.flags):#x} "
               f"DF {'set' if o.flags.DF else 'clear'} len {o.len}/{ii.len}; inner {flow(ii)}")
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
        frames = decode(self.caps_frames(own if own in self._done else "client"))
        sent = [p for f, p in with_token(frames, tok, outgoing=False) if p[IP].dst == tgt.ip]
        back = [p for f, p in with_token(frames, tok, outgoing=True)]
        if self.check.hairpin:
            ok = bool(sent) and bool(back) and backend.pod.name == src.pod.name
            if back:
                b = back[0]
                ok = ok and b[Ether].src == b[Ether].dst == src.pod.mac and b[IP].src == backend.node.cni_ip \
                    and b[IP].dst == src.pod.ip and l4(b).dport == backend.port
            self.r.add("hairpin", f"request leaves {src.pod.host_veth} and comes back on it: "
                       f"{src.pod.mac} > {src.pod.mac}, src {backend.node.cni_ip} > {src.pod.ip}:{backend.port}",
                       f"in: {flow(sent[0]) if sent else 'none'}; back: "
                       + (f"{back[0][Ether].src} > {back[0][Ether].dst} {flow(back[0])}" if back else "none"), ok)
        else:
            # no connection, no token: the requests are the SYNs (or datagrams) to the Service
            # address; anything sent back into the pod towards the endpoint port is a hairpin
            ports = {b.port for b in tgt.backends} or {tgt.port}
            sent = [p for f, p in frames if not f.outgoing and IP in p and p[IP].dst == tgt.ip
                    and l4(p) is not None and l4(p).dport == tgt.port]
            back = [p for f, p in frames if f.outgoing and IP in p and p[IP].dst == src.pod.ip
                    and l4(p) is not None and l4(p).dport in ports]
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
            dec = decode(self.caps_frames(name))
            for f, p in dec:
                seg = l4(p)
                if seg is None:
                    continue
                if p[IP].dst == tgt.ip and seg.dport == tgt.port and p[IP].src == src.ip:
                    arrived.append(name)
                elif p[IP].src == tgt.ip and seg.sport == tgt.port:
                    answered.append(name)
        self.r.add("drop", "the request is seen arriving, no answer is seen",
                   f"request seen on: {', '.join(sorted(set(arrived))) or 'nowhere'}; "
                   f"answers seen: {len(answered)}", bool(arrived) and not answered)
