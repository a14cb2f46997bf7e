"""The ``backends`` check kind: N requests spread over the expected pods, none reaching the
pods that must stay silent (their veths captured to prove it)."""

from __future__ import annotations

import socket
from collections import Counter

from . import probe
from .resolve import Source, Target
from .timeouts import ANSWER_TIMEOUT


class SpreadCheck:
    def backends(self, src: Source, tgt: Target, pods) -> None:
        b = self.check.backends
        proto = self.check.protocol.lower()
        silent_caps = {}
        # the Service's traffic reaches a pod on the endpoints' port: a capture of every port would
        # also count the kubelet's probes from the node (a never-ready pod's every second)
        ports = sorted({be.port for be in tgt.backends})
        port_filter = f" and ({' or '.join(f'dst port {p}' for p in ports)})" if ports else ""
        for name in (*b.silent, *b.pods):
            p = pods.get((self.check.to.namespace, name)) or next((x for k, x in pods.items() if k[1] == name), None)
            if p is None:
                if name in b.silent:
                    continue
                continue
            node = self.v.nodes[p.node]
            self.nodes_involved.add(node.name)
            silent_caps[name] = self.start(f"n-{name}", node.netns, p.host_veth,
                                           f"ip and {proto} and dst host {p.ip}{port_filter}")
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
