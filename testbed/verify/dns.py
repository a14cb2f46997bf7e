"""The ``dns`` check kind: one query from a pod, through its own resolver or a given server.

Without ``dns.server`` the query follows the pod's /etc/resolv.conf as a stub resolver does
(glibc's rules: the search list first when the name has fewer than ``ndots`` dots, the next
candidate after NXDOMAIN), sent from a thread inside the pod's network namespace, so it
travels the way the pod's own lookups do (to the kube-dns ClusterIP, through kube-proxy).
"""

from __future__ import annotations

import os

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from .. import netns
from ..errors import TestbedError
from ..kubelet.etcfiles import ETC_NETNS
from .resolve import Source
from .timeouts import ANSWER_TIMEOUT


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], int]:
    """(nameservers, search list, ndots) of a resolv.conf (pure)."""
    servers, search, ndots = [], [], 1
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            for w in words[1:]:
                if w.startswith("ndots:") and w[6:].isdigit():
                    ndots = min(int(w[6:]), 15)
    return servers, search, ndots


def candidates(name: str, search: list[str], ndots: int) -> list[str]:
    """The names a stub resolver tries, in order (pure)."""
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{s.rstrip('.')}." for s in search]
    return ([name + "."] + searched) if name.count(".") >= ndots else (searched + [name + "."])


def ask(server: str, name: str, qtype: str, tcp: bool, timeout: float) -> dns.message.Message | None:
    """One query; None on timeout. Runs in the caller's network namespace."""
    q = dns.message.make_query(name, qtype)
    try:
        if tcp:
            return dns.query.tcp(q, server, timeout=timeout)
        return dns.query.udp(q, server, timeout=timeout, ignore_unexpected=True)
    except (dns.exception.Timeout, ConnectionError, OSError):
        return None


def lookup(server: str | None, resolv_conf: str, name: str, qtype: str, tcp: bool,
           timeout: float) -> tuple[str, list[str], str]:
    """(rcode or "timeout", answer rdata, the name that answered)."""
    if server:
        servers, names = [server], [name if name.endswith(".") else name + "."]
    else:
        servers, search, ndots = parse_resolv_conf(resolv_conf)
        if not servers:
            raise TestbedError("the pod's resolv.conf names no nameserver")
        names = candidates(name, search, ndots)
    last = ("timeout", [], names[-1])
    for n in names:
        r = ask(servers[0], n, qtype, tcp, timeout)
        if r is None:
            return "timeout", [], n
        rc = dns.rcode.to_text(r.rcode())
        rdata = [rd.to_text() for rrset in r.answer for rd in rrset]
        last = (rc, rdata, n)
        if rc != "NXDOMAIN" and (rdata or server):
            return last
    return last


def _norm(text: str) -> str:
    return text.lower().rstrip(".")


class DnsCheck:
    def expected_answers(self) -> list[str]:
        out = []
        refs = [a for a in self.check.answers or () if a.startswith(("service/", "pod/"))]
        pods = self.v.pod_plans() if any(a.startswith("pod/") for a in refs) else {}
        with self.v.c.api() as api:
            for a in self.check.answers or ():
                kind, _, rest = a.partition("/")
                if a not in refs:
                    out.append(a)
                    continue
                ns, _, name = rest.rpartition("/")
                ns = ns or "default"
                if kind == "service":
                    out.append((api.get("Service", ns, name).get("spec") or {}).get("clusterIP") or "")
                else:
                    p = pods.get((ns, name))
                    if p is None:
                        raise TestbedError(f"pod {ns}/{name} (in expect.answers) is not running")
                    out.append(p.ip)
        return out

    def dns(self, src: Source) -> None:
        q = self.check.dns
        path = os.path.join(ETC_NETNS, src.netns, "resolv.conf")
        try:
            with open(path) as f:
                resolv = f.read()
        except OSError:
            resolv = ""
            if not q.server:
                raise TestbedError(f"{src.spec} has no resolv.conf ({path})") from None
        rc, rdata, asked = netns.run_in(src.netns, lookup, q.server, resolv, q.name, q.type,
                                         q.protocol == "TCP", ANSWER_TIMEOUT)
        where = q.server or (parse_resolv_conf(resolv)[0] or ["?"])[0]
        evidence = os.path.join(self.ev, "dns.txt")
        with open(evidence, "w") as f:
            f.write(f"query: {q}\nfrom: {src.spec} ({src.netns})\nresolv.conf:\n{resolv}\n"
                    f"asked: {asked} at {where}\nrcode: {rc}\nanswers:\n" + "".join(f"  {a}\n" for a in rdata))
        self.r.evidence.append(evidence)
        self.r.add("rcode", f"{self.check.rcode} for {q}", f"{rc} from {where} ({asked})", rc == self.check.rcode)
        if self.check.answers is not None:
            want = sorted(_norm(a) for a in self.expected_answers())
            got = sorted(_norm(a) for a in rdata)
            self.r.add("answers", ", ".join(want) or "none", ", ".join(got) or "none", want == got)
