"""kube-proxy verbs: ``testbed rules node/NAME [--check]`` and ``testbed metrics [node/NAME]``.

Each verb parses its arguments, calls ``testbed.proxy.status`` and prints.
"""

from __future__ import annotations

import json
from typing import Optional

from . import state
from .errors import TestbedError
from .proxy import status


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def register(app) -> None:
    import typer

    from .cluster import require_root

    cluster_opt = typer.Option(None, "-c", "--cluster", help="cluster name (default: the only one that is up)")

    @app.command()
    def rules(target: str = typer.Argument(..., help="node/NAME"),
              check: bool = typer.Option(False, "--check",
                                         help="compare the kernel's KUBE-* chains with what kube-proxy meant to "
                                              "write; exit 1 on a difference"),
              cluster: Optional[str] = cluster_opt) -> None:
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

    @app.command()
    def metrics(target: Optional[str] = typer.Argument(None, help="node/NAME (default: every node)"),
                output: str = typer.Option("table", "-o", "--output", help="table | json"),
                cluster: Optional[str] = cluster_opt) -> None:
        """kube-proxy metrics: sync duration, network programming latency (NPL), counts."""
        name = state.resolve(cluster)
        node = status.node_name(target) if target else None
        m = status.proxy_metrics(name, node)
        if output == "json":
            print(json.dumps(m, indent=1, sort_keys=True))
        elif output == "table":
            if not m:
                raise TestbedError(f"no kube-proxy metrics in cluster {name} yet")
            print(format_table(status.METRIC_COLUMNS, status.metrics_rows(m)))
        else:
            raise ValueError(f"unknown output format {output!r}; use table or json")
