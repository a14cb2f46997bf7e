"""The quickstart's checks, run many times on one cluster, never fail.

A frame the kernel handed to a capture socket must never be reported missing: a stopped
capture keeps everything already queued to it, and a check waits for every capture point
it reads. Fifty rounds on one cluster make a lost frame show up as a failure.
"""

from __future__ import annotations

import os
import time

import pytest

from testbed.cluster import Cluster
from testbed.scenario import load
from testbed.verify import verify_cluster

from .netutil import uniq

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUNDS = 50


def test_quickstart_checks_fifty_times_on_one_cluster(tmp_path):
    scenario = load(os.path.join(REPO, "scenarios", "quickstart.yaml"), name=uniq("itrep"))
    with Cluster.up(scenario) as c:
        t0 = time.monotonic()
        failures = []
        for i in range(ROUNDS):
            for r in verify_cluster(c, scenario, artifacts=str(tmp_path / "evidence")):
                if not r.ok:
                    failures.append(f"round {i + 1} {r.check}: {r.failure_text()}")
        took = time.monotonic() - t0
    print(f"{ROUNDS} rounds of the quickstart's checks in {took:.1f}s")
    assert not failures, f"{len(failures)} failed checks in {ROUNDS} rounds ({took:.1f}s):\n" + "\n".join(failures[:10])
