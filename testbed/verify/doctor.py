"""The ``doctor`` check kind: what ``testbed doctor`` finds for a Service or a pod, check by check."""

from __future__ import annotations

from .model import Check


class DoctorCheck:
    def doctor(self, c: Check) -> None:
        from ..troubleshoot import doctor  # the troubleshooting library sits above verify

        target = f"svc/{c.to.namespace}/{c.to.service}" if c.to.service else f"pod/{c.to.namespace}/{c.to.pod}"
        findings = doctor(self.v.c, target)
        for check, level in c.doctor:
            mine = [f for f in findings if f.check == check]
            worst = max((f.level for f in mine), key=("ok", "warn", "fail").index, default=None)
            evidence = "; ".join(f"{f.level}: {f.evidence}" for f in mine if f.level == worst) or "no such finding"
            self.r.add("doctor", f"{target} {check}: {level}", evidence, worst == level)
