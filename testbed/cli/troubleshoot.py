"""Troubleshooting verbs: ``trace FROM TO`` and ``doctor [TARGET]``.

Each verb parses its arguments, calls ``testbed.troubleshoot`` and prints a table or JSON."""

from __future__ import annotations

import json
from typing import Optional

import typer

from .. import state
from ..cluster import Cluster, require_root
from .common import ClusterOpt, output_format

OUTPUTS = ("table", "json")


def _output(value: str) -> str:
    return output_format(value, OUTPUTS)


def trace(source: str = typer.Argument(..., metavar="FROM", help="pod/NAME, node/NAME or external/NAME"),
          to: str = typer.Argument(..., metavar="TO",
                                   help="service/NAME[:PORT][/VIA[@NODE]] (VIA: clusterIP, nodePort, "
                                        "externalIP, loadBalancer), pod/NAME:PORT or IP:PORT"),
          port: Optional[int] = typer.Option(None, "--port", help="the Service port (number or name in TO)"),
          protocol: str = typer.Option("tcp", "--protocol", help="tcp | udp"),
          output: str = typer.Option("table", "-o", "--output", help="table | json"),
          cluster: Optional[str] = ClusterOpt) -> None:
    """Send one real connection attempt and show, hop by hop, what the kernel did to it."""
    from ..troubleshoot import explain, trace as run_trace

    output = _output(output)
    require_root("testbed trace")
    res = run_trace(Cluster(state.resolve(cluster)), source, to, port, protocol)
    print(json.dumps(res.to_dict(), indent=1) if output == "json" else explain.table(res))
    if res.result["outcome"] == "error":
        raise typer.Exit(1)


def doctor(target: Optional[str] = typer.Argument(None, help="svc/NAME, pod/NAME or node/NAME (default: all)"),
           output: str = typer.Option("table", "-o", "--output", help="table | json"),
           cluster: Optional[str] = ClusterOpt) -> None:
    """Run the Service troubleshooting checklist; exit 1 when a check fails."""
    from ..troubleshoot import checkup

    output = _output(output)
    require_root("testbed doctor")
    findings = checkup.doctor(Cluster(state.resolve(cluster)), target)
    if output == "json":
        print(json.dumps([f.to_dict() for f in findings], indent=1))
    else:
        print(checkup.table(findings))
    if checkup.failed(findings):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(trace)
    app.command()(doctor)
