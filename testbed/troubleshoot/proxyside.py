"""A trace in userspace mode: the proxy's own account of the connection it carried.

The kernel shows the client's connection up to the portal rule that REDIRECTs it to the
proxy's listener, and the proxy's upstream connection from its socket to the endpoint; between
the two the proxy process accepts and dials. Each node's proxy reports that, for connections
carrying the trace's DSCP, on its trace socket (``testbed.proxy.userspace.tracing``).

``Subscriptions`` registers with every node's proxy before the probe is sent and reads what
they reported after it (waiting on the sockets, never sleeping). ``split_legs`` divides the
traced hops into the client's leg and the proxy's upstream leg; ``steps`` renders the proxy's
events as trace steps (pure).
"""

from __future__ import annotations

import json
import select
import socket
import time

from testbed.proxy.model import service_port_map
from testbed.proxy.userspace.support import notices

from .explain import TraceStep
from .nftrace import Hop

SUBSCRIBE_TIMEOUT = 2.0
# after the probe returns, how long a proxy that accepted may take to report its last step
EVENT_GRACE = 1.0
TERMINAL = ("connect", "closed", "no-endpoints")
PROXY = "kube-proxy (userspace)"


class Subscriptions:
    """One subscription per node proxy: {node netns: socket path}."""

    def __init__(self, paths: dict[str, str], dscp: int):
        self.dscp = dscp
        self.events: dict[str, list[dict]] = {ns: [] for ns in paths}
        self.missing: dict[str, str] = {}
        self._socks: dict[str, socket.socket] = {}
        self._buf: dict[str, bytes] = {}
        try:
            for ns, path in paths.items():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(SUBSCRIBE_TIMEOUT)
                try:
                    s.connect(path)
                    s.sendall(json.dumps({"dscp": dscp}).encode() + b"\n")
                    self._buf[ns] = b""
                    self._socks[ns] = s
                    ack = self._line(ns)
                except (OSError, ValueError) as exc:
                    s.close()
                    self._socks.pop(ns, None)
                    self.missing[ns] = f"{path}: {exc}"
                    continue
                if not ack or ack.get("subscribed") != dscp:
                    self.missing[ns] = f"{path}: unexpected answer {ack}"
                    self._socks.pop(ns).close()
        except BaseException:
            self.close()
            raise

    def _line(self, ns: str) -> dict | None:
        """One JSON line from ``ns``'s socket (blocking up to the socket's timeout)."""
        s = self._socks[ns]
        while b"\n" not in self._buf[ns]:
            chunk = s.recv(4096)
            if not chunk:
                return None
            self._buf[ns] += chunk
        line, _, self._buf[ns] = self._buf[ns].partition(b"\n")
        return json.loads(line)

    def collect(self, grace: float = EVENT_GRACE) -> dict[str, list[dict]]:
        """Read every event reported so far; a proxy that accepted the connection is given
        ``grace`` seconds to report how it ended (connected, closed)."""
        deadline = time.monotonic() + grace
        for ns, s in self._socks.items():
            evs = self.events[ns]
            while True:
                while b"\n" in self._buf[ns]:
                    line, _, self._buf[ns] = self._buf[ns].partition(b"\n")
                    evs.append(json.loads(line))
                started = any(e.get("event") == "accept" for e in evs)
                done = any(e.get("event") in TERMINAL for e in evs)
                wait = max(0.0, deadline - time.monotonic()) if started and not done else 0.0
                ready, _, _ = select.select([s], [], [], wait)
                if not ready:
                    break
                chunk = s.recv(65536)
                if not chunk:
                    break
                self._buf[ns] += chunk
        return self.events

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()


def upstream_local(events: dict[str, list[dict]]) -> tuple[str, str] | None:
    """(ip, port) of the proxy's upstream socket that connected, if one did."""
    for evs in events.values():
        for e in evs:
            if e.get("event") == "connect" and e.get("local"):
                ip, _, port = e["local"].rpartition(":")
                return ip, port
    return None


def split_legs(hops: list[Hop], local: tuple[str, str] | None) -> tuple[list[Hop], list[Hop]]:
    """(the client's leg, the proxy's upstream leg): a hop belongs to the upstream leg when its
    packet comes from or goes to the proxy's upstream socket."""
    if local is None:
        return list(hops), []
    ip, port = local
    client, upstream = [], []
    for h in hops:
        p = h.packet
        proto = "tcp" if "tcp sport" in p else "udp"
        ends = {(p.get("ip saddr"), p.get(f"{proto} sport")), (p.get("ip daddr"), p.get(f"{proto} dport"))}
        (upstream if (ip, port) in ends else client).append(h)
    return client, upstream


def _hostport(text: str | None) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    ip, _, port = text.rpartition(":")
    return ip, port


def _pkt(proto: str, src: str | None, dst: str | None) -> dict:
    (sip, sport), (dip, dport) = _hostport(src), _hostport(dst)
    p = proto.lower()
    return {k: v for k, v in (("ip saddr", sip), (f"{p} sport", sport), ("ip daddr", dip),
                              (f"{p} dport", dport)) if v}


def steps(events: dict[str, list[dict]]) -> list[TraceStep]:
    """The proxy's events as steps, in the order each proxy reported them."""
    out = []
    for ns, evs in events.items():
        proto = next((e.get("protocol") for e in evs if e.get("protocol")), "TCP")
        client = listener = None
        for e in evs:
            kind, svc = e.get("event"), e.get("service", "-")
            if kind == "accept":
                client, listener = e.get("client"), e.get("listener")
                dst = e.get("original_dst")
                text = (f"{PROXY} accepted {client} -> {dst or '?'} for {svc} on its listener "
                        f"{e.get('listener')}" if proto == "TCP" else
                        f"{PROXY} received a datagram from {client} for {svc} on its listener "
                        f"{e.get('listener')} ({e.get('session')} session)")
                before = _pkt(proto, client, dst or e.get("listener"))
                out.append(TraceStep(ns, "-", "socket", "kube-proxy", svc, text, "accept",
                                     {"before": before, "after": _pkt(proto, client, e.get("listener")),
                                      "reply": False}, kind="proxy"))
            elif kind == "connect":
                text = (f"{PROXY} opened {e.get('local')} -> {e['endpoint']} "
                        f"(endpoint of {svc}) for {client}")
                out.append(TraceStep(ns, "-", "socket", "kube-proxy", svc, text, "connect",
                                     {"before": _pkt(proto, client, listener),
                                      "after": _pkt(proto, e.get("local"), e.get("endpoint")), "reply": False},
                                     kind="proxy"))
            elif kind == "dial-failed":
                text = f"{PROXY} could not connect to {e['endpoint']} ({e.get('error')}); next endpoint"
                out.append(TraceStep(ns, "-", "socket", "kube-proxy", svc, text, "dial-failed",
                                     {"before": _pkt(proto, e.get("local"), e.get("endpoint")), "after": {},
                                      "reply": False}, kind="proxy"))
            elif kind in ("no-endpoints", "closed"):
                verdict = "close" if kind == "closed" else "no-endpoints"
                text = f"{PROXY}: {e.get('detail')}"
                out.append(TraceStep(ns, "-", "socket", "kube-proxy", svc, text, verdict,
                                     {"before": _pkt(proto, client, listener), "after": {}, "reply": False},
                                     kind="proxy"))
    return out


def result(steps_: list[TraceStep], detail: str) -> dict | None:
    """The trace's result when the proxy, not a pod, ended the connection (no endpoint)."""
    end = next((s for s in steps_ if s.kind == "proxy" and s.verdict in ("close", "no-endpoints")), None)
    if end is None:
        return None
    mine = [s for s in steps_ if s.kind == "proxy" and s.netns == end.netns]
    if not any(s.verdict == "close" for s in mine):
        # UDP: the proxy drops a datagram it has no endpoint for, without an ICMP error
        return {"outcome": "dropped", "netns": end.netns, "chain": PROXY,
                "rule": mine[-1].rule.removeprefix(f"{PROXY}: "), "detail": detail}
    return {"outcome": "rejected", "netns": end.netns, "chain": PROXY,
            "rule": mine[-1].rule.removeprefix(f"{PROXY}: "),
            "detail": ("the proxy had already accepted the connection: userspace mode has no kernel REJECT; "
                       + detail).strip()}


def note(events: dict[str, list[dict]]) -> str | None:
    for ns, evs in events.items():
        acc = next((e for e in evs if e.get("event") == "accept"), None)
        con = next((e for e in evs if e.get("event") == "connect"), None)
        if acc and con:
            return (f"{ns}: userspace mode: the portal rule sent the connection to kube-proxy's own listener "
                    f"{acc.get('listener')}; the proxy opened a second connection from {con.get('local')} "
                    f"to {con.get('endpoint')}, so the backend sees the node's address, not {acc.get('client')}")
    return None


def unsupported(service: dict) -> list[str]:
    """What the userspace proxy ignores of this Service (the proxy's own notices), so that a
    trace answered where another mode would drop (externalTrafficPolicy: Local) says why."""
    return [f"userspace mode ignores {n.field} of this Service: {n.message}"
            for info in service_port_map(service).values() for n in notices(info)]
