"""The ``status`` check kind: an HTTP health check (kube-proxy's healthCheckNodePort)."""

from __future__ import annotations

import uuid

from . import probe
from .resolve import Source, Target
from .timeouts import ANSWER_TIMEOUT


class HealthCheck:
    def health(self, src: Source, tgt: Target) -> None:
        a = probe.tcp(self.factory(src), tgt.ip, tgt.port, uuid.uuid4().hex[:12], ANSWER_TIMEOUT, path="/healthz")
        if self.check.reach:
            self.r.add("reach", f"{self.check.reach} ({tgt.what})", a.outcome, a.outcome == self.check.reach)
        self.r.add("status", f"HTTP {self.check.status} from {tgt.what}",
                   f"HTTP {a.status} {a.detail[:80]}" if a.status else f"{a.outcome} {a.detail}",
                   a.status == self.check.status)
