"""Fault injection for tests: ``TESTBED_FAILPOINT=name[:count]`` SIGKILLs the process there.

Used to prove that ``testbed down`` cleans up after a crash at any point of ``up``.
Child processes of testbed never inherit it (see controlplane.start).
"""

from __future__ import annotations

import os
import signal

ENV = "TESTBED_FAILPOINT"
# Every point of ``testbed up``, in the order it passes them: the fault-injection test kills
# ``up`` at each one (``pods`` is hit once per pod built without a control plane).
POINTS = ("claimed", "state-written", "underlay", "nodes", "topology", "upstream", "control-plane-ready",
          "control-plane", "manifests", "ready")


def hit(name: str, count: int = 1) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, n = spec.partition(":")
    if want == name and count >= int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
