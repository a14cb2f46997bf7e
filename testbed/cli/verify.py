"""``testbed verify``: a scenario's checks against a running cluster, as an expected-versus-observed
table (and ``report``, which ``testbed run`` prints too)."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from rich.console import Console

from .. import state
from ..errors import TestbedError
from .common import ClusterOpt, err

out = Console(width=None if sys.stdout.isatty() else 200)  # logs: wide, not wrapped


def _scenario_of(cluster: str, path: Optional[str]):
    from ..scenario import load

    if path is None:
        info = state.read_json(cluster, "state.json", {})
        path = info.get("source")
        if not path or not os.path.exists(path):
            raise TestbedError(f"cluster {cluster} does not remember its scenario file; give it: testbed verify SCENARIO")
    return load(path, name=cluster)


def report(results, suite: str, junit: Optional[str]) -> int:
    """Print *results* as a table and a summary line (and JUnit XML to *junit*); the exit code."""
    from ..verify.report import table, write_junit

    out.print(table(results))
    passed = sum(1 for r in results if r.ok)
    out.print(f"{passed}/{len(results)} checks passed in {sum(r.seconds for r in results):.1f}s", highlight=False)
    if junit:
        write_junit(junit, suite, results)
    return 0 if results and passed == len(results) else 1


def verify(scenario: Optional[str] = typer.Argument(None, help="scenario file (default: the one the cluster was built from)"),
           cluster: Optional[str] = ClusterOpt,
           check: list[str] = typer.Option(None, "--check", help="run only this check (repeatable)"),
           junit: Optional[str] = typer.Option(None, "--junit", help="write JUnit XML here"),
           artifacts: Optional[str] = typer.Option(None, "--artifacts",
                                                   help="keep pcaps and rules here (default: the state directory)")) -> None:
    """Run a scenario's checks against a running cluster: expected versus observed; exit 0 only if all pass."""
    from ..cluster import Cluster, require_root
    from ..verify import verify_cluster

    require_root("testbed verify")
    name = state.resolve(cluster)
    sc = _scenario_of(name, scenario)
    results = verify_cluster(Cluster(name), sc, check or None, artifacts,
                             log=lambda m: err.print(m, highlight=False))
    sys.exit(report(results, sc.name, junit))


def register(app: typer.Typer) -> None:
    app.command()(verify)
