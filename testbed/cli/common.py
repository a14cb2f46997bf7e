"""What every verb module shares: the ``-c/--cluster`` and ``-n/--namespace`` options, the
stderr console and an API client for a cluster."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from .. import state
from ..errors import BadOptionError

err = Console(stderr=True)

ClusterOpt = typer.Option(None, "-c", "--cluster", help="cluster name (default: the only one that is up)")
NsOpt = typer.Option("default", "-n", "--namespace")


def output_format(value: str, allowed: tuple[str, ...]) -> str:
    """An ``-o`` value, checked before any cluster is looked at; a bad one is invalid input (exit 2)."""
    if value not in allowed:
        raise BadOptionError(f"unknown output format {value!r}; allowed: {', '.join(allowed)}")
    return value


def api(cluster: Optional[str]):
    """A client of the API server of *cluster* (default: the only one that is up)."""
    from .. import controlplane

    return controlplane.client(state.resolve(cluster))
