"""Verification: checks declared in scenarios, run on real packets (see model.py for the format).

    from testbed.verify import run_scenario, verify_cluster
    results = run_scenario("scenarios/clusterip.yaml", artifacts="artifacts/clusterip")
"""

from __future__ import annotations

from .model import Check, parse_checks, validate
from .report import Result, write_junit

__all__ = ["Check", "Result", "parse_checks", "validate", "write_junit", "verify_cluster", "run_scenario"]


def verify_cluster(cluster, scenario, names=None, artifacts=None, log=lambda m: None) -> list[Result]:
    """Run a scenario's checks against a running cluster."""
    from .runner import Verifier

    return Verifier(cluster, parse_checks(scenario), artifacts, log=log).run(names)


def run_scenario(path: str, *, name: str | None = None, keep: bool = False, artifacts: str | None = None,
                 names=None, log=lambda m: None) -> list[Result]:
    """up, verify, down (the cluster is always removed unless ``keep``)."""
    from ..cluster import Cluster
    from ..scenario import load

    scenario = load(path, name=name)
    c = Cluster.up(scenario)
    try:
        return verify_cluster(c, scenario, names, artifacts, log)
    finally:
        if not keep:
            c.down()
