"""The ``doctor`` check kind: what ``testbed doctor`` finds for a Service or a pod, check by
check; every finding is kept as the check's evidence (``doctor.json``)."""

from __future__ import annotations

import json
import os

from .model import Check

LEVELS = ("ok", "warn", "fail")


class DoctorCheck:
    def doctor(self, c: Check) -> None:
        from ..troubleshoot import doctor  # the troubleshooting library sits above verify

        target = f"svc/{c.to.namespace}/{c.to.service}" if c.to.service else f"pod/{c.to.namespace}/{c.to.pod}"
        findings = doctor(self.v.c, target)
        path = os.path.join(self.ev, "doctor.json")
        with open(path, "w") as f:
            json.dump([x.to_dict() for x in findings], f, indent=1)
        self.r.evidence.append(path)
        for check, level in c.doctor:
            mine = [x for x in findings if x.check == check]
            # the worst finding of a kind decides: one failing node fails the check
            worst = max((x.level for x in mine), key=LEVELS.index, default=None)
            evidence = "; ".join(dict.fromkeys(f"{x.level}: {x.evidence}" for x in mine if x.level == worst))
            self.r.add("doctor", f"{target} {check}: {level}", evidence or "no such finding", worst == level)
