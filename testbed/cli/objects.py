"""Object verbs, as kubectl has them: ``apply``, ``get``, ``describe``, ``delete``, ``events``."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import TestbedError
from ..kubectl import commands
from ..kubectl.resources import parse_args
from .common import ClusterOpt, NsOpt, api


def apply(filename: list[str] = typer.Option(..., "-f", "--filename", help="file(s) with Kubernetes objects, - for stdin"),
          namespace: Optional[str] = typer.Option(None, "-n", "--namespace"),
          cluster: Optional[str] = ClusterOpt) -> None:
    """Create or update objects from YAML as written for real clusters (multi-document, List)."""
    objs = commands.load(filename)
    if not objs:
        raise TestbedError("no objects passed to apply")  # kubectl's words for an empty input
    with api(cluster) as a:
        for line in commands.apply(a, objs, namespace):
            print(line)


def delete(args: list[str] = typer.Argument(None, help="KIND NAME... or KIND/NAME..."),
           filename: list[str] = typer.Option(None, "-f", "--filename"),
           namespace: str = NsOpt, ignore_not_found: bool = typer.Option(False, "--ignore-not-found"),
           cluster: Optional[str] = ClusterOpt) -> None:
    """Delete objects named on the command line or in files."""
    refs = []
    if filename:
        for o in commands.load(filename):
            refs.append((o["kind"], (o.get("metadata") or {}).get("namespace") or namespace, o["metadata"]["name"]))
    if args:
        for info, name in parse_args(args):
            if name is None:
                raise TestbedError("resource(s) were provided, but no name was specified")
            refs.append((info.kind, namespace, name))
    if not refs:
        raise TestbedError("give KIND NAME or -f FILE")
    with api(cluster) as a:
        for line in commands.delete(a, refs, ignore_not_found=ignore_not_found):
            print(line)


def get(args: list[str] = typer.Argument(..., help="KIND [NAME...], KIND1,KIND2 or KIND/NAME"),
        namespace: str = NsOpt, all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
        output: str = typer.Option("", "-o", "--output", help="wide|json|yaml"),
        selector: Optional[str] = typer.Option(None, "-l", "--selector"),
        cluster: Optional[str] = ClusterOpt) -> None:
    """Show objects like kubectl get (pods, svc, ep, endpointslices, deploy, rs, nodes, events, ns)."""
    with api(cluster) as a:
        sys.stdout.write(commands.get(a, args, namespace=namespace, all_namespaces=all_namespaces,
                                      output=output, selector=selector))


def describe(kind: str, name: str, namespace: str = NsOpt, cluster: Optional[str] = ClusterOpt) -> None:
    """Describe a Service or a Pod like kubectl describe, with its events."""
    with api(cluster) as a:
        sys.stdout.write(commands.describe(a, kind, name, namespace))


def events(namespace: Optional[str] = typer.Option(None, "-n", "--namespace", help="default: all namespaces"),
           watch: bool = typer.Option(False, "-w", "--watch"), cluster: Optional[str] = ClusterOpt) -> None:
    """The cluster's events as a timeline: Service stored, ClusterIP allocated, slices written, proxies synced."""
    with api(cluster) as a:
        for line in commands.events(a, namespace=namespace, watch=watch):
            print(line, flush=True)


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(delete)
    app.command()(get)
    app.command()(describe)
    app.command()(events)
