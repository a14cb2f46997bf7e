"""Verification: checks declared in scenarios, run on real packets against a running cluster
(see model.py for the format). Bringing a cluster up for them is the library's job
(``testbed.cluster.run_scenario``); this package only checks.

    from testbed.verify import verify_cluster
    results = verify_cluster(cluster, scenario, artifacts="artifacts/clusterip")
"""

from __future__ import annotations

from .model import Check, parse_checks, validate
from .report import Result, write_junit

__all__ = ["Check", "Result", "parse_checks", "validate", "write_junit", "verify_cluster"]


def verify_cluster(cluster, scenario, names=None, artifacts=None, log=lambda m: None) -> list[Result]:
    """Run a scenario's checks against a running cluster."""
    from .runner import Verifier

    return Verifier(cluster, parse_checks(scenario), artifacts, log=log).run(names)
