"""The ``steady`` check kind: traffic at a fixed rate across an action (apply, delete, a
rollout), until a declared condition holds, counting failed requests. With ``expect.http``
the traffic is that HTTP(S) request, and an answer with another status counts as failed."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter

from . import http, probe
from .resolve import Source, Target
from .settle import deployment_done
from .timeouts import ANSWER_TIMEOUT

_KINDS = {"pod": "Pod", "deployment": "Deployment", "service": "Service", "replicaset": "ReplicaSet",
          "endpointslice": "EndpointSlice"}


class SteadyCheck:
    def steady(self, src: Source, tgt: Target, pods) -> None:
        s = self.check.steady
        f = self.factory(src)
        udp = self.check.protocol == "UDP"
        cmds = ("version",) if "version" in s.until else ("hostname",)
        shared = None
        if udp and s.socket == "shared":
            shared = f(socket.SOCK_DGRAM)
            shared.connect((tgt.ip, tgt.port))
        log: list[tuple[float, str, str | None, str | None]] = []  # (t, outcome, hostname, version)
        stop = threading.Event()

        def loop():
            period = 1.0 / s.rate
            nxt = time.monotonic()
            while not stop.is_set():
                if self.check.http is not None:
                    a = http.request(f, tgt.ip, tgt.port, self.check.http.request)
                    if a.outcome == "answered" and a.status != self.check.http.status:
                        a.outcome = f"status {a.status}"
                elif udp:
                    a = probe.udp(f, tgt.ip, tgt.port, uuid.uuid4().hex[:8], min(0.5, ANSWER_TIMEOUT),
                                  sock=shared, commands=cmds)
                else:
                    a = probe.tcp(f, tgt.ip, tgt.port, "s", ANSWER_TIMEOUT)
                log.append((time.monotonic(), a.outcome, a.hostname, a.version))
                nxt += period
                stop.wait(max(0.0, nxt - time.monotonic()))

        before = len(log)
        th = threading.Thread(target=loop, name="steady-traffic", daemon=True)
        th.start()
        deadline = time.monotonic() + s.timeout
        reached = False
        try:
            self._wait_log(log, lambda: len(log) >= 3, deadline)  # traffic flows before the action
            first = Counter(h or v for _, o, h, v in log if o == "answered")
            with self.v.c.api() as api:
                for obj in s.apply:
                    api.apply(obj)
                for ref in s.delete:
                    kind, _, name = ref.partition("/")
                    api.delete(_KINDS.get(kind, kind.capitalize()), self.check.to.namespace, name)
                if "rollout" in s.until:
                    from ..controllers.base import wait_for
                    name = s.until["rollout"].split("/", 1)[1]
                    try:
                        wait_for(api, "Deployment", lambda items: any(
                            d["metadata"]["name"] == name and deployment_done(d) for d in items),
                            namespace=self.check.to.namespace, timeout=max(1.0, deadline - time.monotonic()))
                        mark = len(log)
                        reached = self._wait_log(log, lambda: sum(1 for x in log[mark:] if x[1] == "answered") >= 3,
                                                 deadline)
                    except TimeoutError:
                        reached = False
                else:
                    def tail_ok():
                        tail = log[-3:]
                        if len(tail) < 3 or any(x[1] != "answered" for x in tail):
                            return False
                        if "version" in s.until:
                            return all(x[3] == s.until["version"] for x in tail)
                        return all(x[2] in s.until["answeredBy"] for x in tail)
                    reached = self._wait_log(log, tail_ok, deadline)
        finally:
            stop.set()
            th.join()
            if shared is not None:
                shared.close()
        failures = sum(1 for x in log[before:] if x[1] != "answered")
        kinds = Counter(x[1] for x in log[before:] if x[1] != "answered")
        after = Counter(x[2] or x[3] for x in log if x[1] == "answered")
        self.r.add("reach", f"answered before the action ({tgt.what})",
                   ", ".join(f"{k}: {v}" for k, v in sorted(first.items())) or "nothing", bool(first))
        cond = ", ".join(f"{k} {v}" for k, v in s.until.items())
        self.r.add("steady", f"until {cond} within {s.timeout:g}s",
                   f"{'reached' if reached else 'not reached'} after {len(log)} requests; answers: "
                   + ", ".join(f"{k}: {v}" for k, v in sorted(after.items())), reached)
        if s.max_failures is not None:
            self.r.add("failures", f"at most {s.max_failures} failed requests",
                       f"{failures} failed of {len(log)}"
                       + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))})" if kinds else ""),
                       failures <= s.max_failures)

    @staticmethod
    def _wait_log(log, cond, deadline) -> bool:
        """Wait for a condition on the traffic log (re-checked as requests complete)."""
        ev = threading.Event()
        n = -1
        while time.monotonic() < deadline:
            if len(log) != n:
                n = len(log)
                if cond():
                    return True
            ev.wait(0.01)  # the traffic thread appends at the declared rate
        return cond()
