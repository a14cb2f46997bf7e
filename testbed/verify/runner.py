"""Run checks against a running cluster: resolve names, send requests, capture, decide.

Captures are started inside the namespace they capture in, on the pods' host-side veths, the
nodes' eth0 and the underlay bridge ports (never on cni0), with a kernel BPF filter so only
the frames of interest reach Python; they are decoded with scapy afterwards (a few frames per
check). Bulk request loops use plain sockets. Waiting is on state (API watches, inotify on the
proxies' metrics files, captures and sockets), never fixed sleeps.

Each check kind lives in its own module (``rules``, ``health``, ``request``, ``spread``,
``steady``, ``http``, ``dns``, ``doctor``); a check run combines them with its capture points
(``captures``).
"""

from __future__ import annotations

import os
import time

from .. import state
from ..capture import Capture, Frame
from ..errors import BadOptionError, TestbedError
from .captures import Captures
from .dns import DnsCheck
from .doctor import DoctorCheck
from .health import HealthCheck
from .http import HttpCheck
from .model import Check
from .report import Result, evidence_dir
from .request import RequestCheck
from .resolve import Resolver
from .rules import RulesCheck
from .settle import Settler
from .spread import SpreadCheck
from .steady import SteadyCheck


class Verifier(Settler, Resolver):
    def __init__(self, cluster, checks: list[Check], artifacts: str | None = None,
                 log=lambda msg: None):
        self.c = cluster
        self.checks = checks
        self.artifacts = artifacts or os.path.join(state.directory(cluster.name), "verify")
        self.log = log
        self.plan = cluster.plan
        self.nodes = {n.name: n for n in self.plan.nodes}

    def run(self, names: list[str] | None = None) -> list[Result]:
        unknown = [n for n in names or [] if n not in {c.name for c in self.checks}]
        if unknown:
            raise BadOptionError(f"--check: no check {', '.join(unknown)}; "
                                 f"checks: {', '.join(c.name for c in self.checks)}")
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



class _Run(Captures, RulesCheck, HealthCheck, RequestCheck, SpreadCheck, SteadyCheck, HttpCheck, DnsCheck,
           DoctorCheck):
    def __init__(self, v: Verifier, check: Check, result: Result, evidence: str):
        self.v, self.check, self.r, self.ev = v, check, result, evidence
        self.caps: dict[str, Capture] = {}
        self._done: dict[str, list[Frame]] = {}
        self.nodes_involved: set[str] = set()


    def execute(self) -> None:
        c = self.check
        try:
            if c.doctor:
                self.doctor(c)
                return
            pods = self.v.pod_plans()
            src = self.v.source(c, pods) if c.source else None
            if src and src.node:
                self.nodes_involved.add(src.node.name)
            if c.dns:
                self.dns(src)
                return
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
            if c.http:
                self.http(src, tgt)
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
                 "status": c.status is not None, "http": c.http, "rcode": c.rcode,
                 "answers": c.answers is not None, "doctor": c.doctor}
        return [k for k, v in names.items() if v]
