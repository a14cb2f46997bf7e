"""kube-proxy verbs: ``rules node/NAME [--check]``, ``metrics [node/NAME]`` and ``render``.

Each verb parses its arguments, calls ``testbed.proxy`` and prints."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from .. import state
from ..cluster import require_root
from ..errors import TestbedError
from ..kubectl.table import format_rows
from ..proxy import modes, status
from .common import ClusterOpt, output_format


def rules(target: str = typer.Argument(..., help="node/NAME"),
          check: bool = typer.Option(False, "--check",
                                     help="compare the kernel's KUBE-* chains with what kube-proxy meant to "
                                          "write; exit 1 on a difference"),
          cluster: Optional[str] = ClusterOpt) -> None:
    """Show a node's live ruleset (iptables-save), or verify it against kube-proxy's intent."""
    require_root("testbed rules")
    name = state.resolve(cluster)
    if not check:
        print(status.dump_rules(name, target), end="")
        return
    diffs, compared = status.check_report(name, target)
    node = status.node_name(target)
    if not diffs:
        print(f"node/{node}: the kernel holds exactly {compared}")
        return
    print(f"node/{node}: {len(diffs)} difference(s) between kube-proxy's rules and the kernel:")
    for d in diffs:
        print(d.describe())
    raise typer.Exit(1)


def metrics(target: Optional[str] = typer.Argument(None, help="node/NAME (default: every node)"),
            output: str = typer.Option("table", "-o", "--output", help="table | json"),
            cluster: Optional[str] = ClusterOpt) -> None:
    """kube-proxy metrics: sync duration, network programming latency (NPL), counts."""
    output_format(output, ("table", "json"))
    name = state.resolve(cluster)
    node = status.node_name(target) if target else None
    m = status.proxy_metrics(name, node)
    if output == "json":
        print(json.dumps(m, indent=1, sort_keys=True))
    else:
        if not m:
            raise TestbedError(f"no kube-proxy metrics in cluster {name} yet")
        sys.stdout.write(format_rows(status.METRIC_COLUMNS, status.metrics_rows(m)))


def render(file: str = typer.Option(..., "-f", "--filename", help="KubeProxyTestHarness inputs or steps file"),
           proxy_mode: str = typer.Option("iptables", "--proxy-mode", help=", ".join(modes.RENDERERS)),
           sorted_: bool = typer.Option(False, "--sorted", help="upstream's test order"),
           steps: bool = typer.Option(False, "--steps", help="FILE is a steps file: print every sync")) -> None:
    """Print the rules kube-proxy would write (iptables-restore input, nftables table; no root needed)."""
    r = modes.renderer(proxy_mode)
    if steps or file.endswith(".steps.txt"):
        sys.stdout.write(r.steps_text(file, sorted=sorted_ or steps))
    else:
        sys.stdout.write(r.render_file(file, sorted=sorted_))


def register(app: typer.Typer) -> None:
    app.command()(rules)
    app.command()(metrics)
    app.command()(render)
