"""Cluster verbs: ``up``, ``down``, ``ls``, ``status``, ``restart``, ``run`` (up, verify, down)
and ``etcdctl`` (the cluster's etcd, key by key)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import typer
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .. import state
from ..cluster import Cluster, require_root
from ..errors import TestbedError
from ..kubectl.table import format_rows
from ..apiserver.etcd import TLS
from ..scenario import PROXY_MODES, STORES, load as load_scenario
from .common import ClusterOpt, err, output_format


def up(scenario: str = typer.Argument(..., help="scenario file (see scenarios/)"),
       name: Optional[str] = typer.Option(None, "--name", help="cluster name (default: metadata.name)"),
       raise_neigh_limits: bool = typer.Option(False, "--raise-neigh-limits",
                                               help="raise the host-wide ARP table limits if needed (restored by down)"),
       proxy_mode: Optional[str] = typer.Option(None, "--proxy-mode",
                                                  help=f"override spec.proxyMode ({', '.join(PROXY_MODES)})"),
       no_control_plane: bool = typer.Option(False, "--no-control-plane",
                                             help="topology only: static pod namespaces, no API, no workloads"),
       store: Optional[str] = typer.Option(None, "--store",
                                           help=f"override spec.store ({', '.join(STORES)}; "
                                                f"default: $TESTBED_STORE, else the scenario's)"),
       etcd_endpoints: Optional[str] = typer.Option(None, "--etcd-endpoints",
                                                    help="use this existing etcd (client URLs, comma separated) "
                                                         "instead of starting one"),
       etcd_cacert: Optional[str] = typer.Option(None, "--etcd-cacert", help="CA of an HTTPS etcd"),
       etcd_cert: Optional[str] = typer.Option(None, "--etcd-cert", help="client certificate for etcd"),
       etcd_key: Optional[str] = typer.Option(None, "--etcd-key", help="client key for etcd"),
       etcd_prefix: Optional[str] = typer.Option(None, "--etcd-prefix",
                                                 help="where the cluster's keys go in etcd (default: /registry "
                                                      "in its own member, /testbed/NAME/registry on --etcd-endpoints)"),
       kubeconfig: Optional[str] = typer.Option(None, "--kubeconfig",
                                                help="write a kubeconfig for the cluster's API to this file (0600)"),
       quiet: bool = typer.Option(False, "-q", "--quiet", help="print nothing (no progress, no summary)")) -> None:
    """Build a cluster from a scenario file and return when it is usable."""
    require_root("testbed up")
    started = time.monotonic()
    loaded = load_scenario(scenario, name=name)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=quiet or not err.is_terminal) as progress:  # a log gets no bar and no blank line
        tasks: dict[str, int] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        c = Cluster.up(loaded, name=name, progress=report, raise_neigh_limits=raise_neigh_limits,
                       control_plane=not no_control_plane, proxy_mode=proxy_mode, store=store,
                       etcd_endpoints=etcd_endpoints, etcd_tls=TLS(etcd_cacert, etcd_cert, etcd_key),
                       etcd_prefix=etcd_prefix,
                       warn=lambda m: err.print(f"[yellow]warning:[/yellow] {m}", highlight=False))
    if kubeconfig:
        from .kubeconfig import write

        write(c.name, kubeconfig)
    if not quiet:
        s = c.status()
        print(f"cluster {c.name} is up in {time.monotonic() - started:.2f}s: {len(s['nodes'])} nodes, "
              f"{len(s['pods'])} pods, {len(s['externals'])} external clients ({s['backend']}, "
              f"hairpin {s['hairpinMode']}, proxy {s['proxyMode']})")
        _print_status(s)
        print(f"try: testbed exec -c {c.name} node/{s['nodes'][0]['name']} -- ip route")


def down(name: Optional[str] = typer.Argument(None, help="cluster name (default: the only one that is up)"),
         all_: bool = typer.Option(False, "--all", help="remove every cluster")) -> None:
    """Remove exactly what a cluster owns (also after a crash); idempotent."""
    require_root("testbed down")
    names = state.clusters() if all_ else [name or state.resolve(None)]
    for n in names:
        removed = Cluster(n).down()
        print(f"cluster {n} removed ({removed['netns']} namespaces, {removed['processes']} processes)")


def ls() -> None:
    """List clusters."""
    rows = []
    for n in state.clusters():
        try:
            s = Cluster(n).status()
            rows.append([n, str(len(s["nodes"])), str(len(s["pods"])), s["backend"], s["proxyMode"], "up"])
        except TestbedError as exc:
            rows.append([n, "-", "-", "-", "-", f"broken ({exc}); remove it with: testbed down {n}"])
    sys.stdout.write(format_rows(["NAME", "NODES", "PODS", "BACKEND", "PROXY", "STATE"], rows))


def _print_status(s: dict) -> None:
    rows = [["node", n["name"], "", n["ip"], n["podCIDR"], n["netns"]] for n in s["nodes"]]
    rows += [["pod", f"{p['namespace']}/{p['name']}", p["node"], p["ip"], "", p["netns"]] for p in s["pods"]]
    rows += [["external", e["name"], "", e["ip"], "", e["netns"]] for e in s["externals"]]
    sys.stdout.write(format_rows(["KIND", "NAME", "NODE", "IP", "POD-CIDR", "NETNS"], rows))


def status(name: Optional[str] = typer.Argument(None), output: str = typer.Option("table", "-o", "--output",
                                                                                  help="table|json|yaml")) -> None:
    """Show what a cluster is made of."""
    output_format(output, ("table", "json", "yaml"))
    s = Cluster(state.resolve(name)).status()
    if output == "json":
        print(json.dumps(s, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(s, sort_keys=False), end="")
    else:
        _print_status(s)


def restart(name: Optional[str] = typer.Argument(None)) -> None:
    """Restart the control-plane process of a cluster (the store and the pods survive)."""
    require_root("testbed restart")
    Cluster(state.resolve(name)).restart_control_plane()
    print(f"control plane of {state.resolve(name)} restarted")


def run(scenario: str = typer.Argument(..., help="scenario file"),
        keep: bool = typer.Option(False, "--keep", help="leave the cluster up"),
        name: Optional[str] = typer.Option(None, "--name", help="cluster name (default: metadata.name)"),
        junit: Optional[str] = typer.Option(None, "--junit", help="write JUnit XML here"),
        artifacts: Optional[str] = typer.Option(None, "--artifacts", help="keep pcaps and rules here "
                                                "(default: artifacts/verify/<cluster>)")) -> None:
    """Up, verify, down in one go (for CI and scripts); exit 0 only if every check passes."""
    from ..cluster import run_scenario
    from .verify import report

    require_root("testbed run")
    sc = load_scenario(scenario, name=name)
    t0 = time.monotonic()
    results = run_scenario(scenario, name=name, keep=keep,
                           artifacts=artifacts or os.path.join("artifacts", "verify", sc.name),
                           log=lambda m: err.print(m, highlight=False))
    err.print(f"{sc.name}: up, verify{'' if keep else ', down'} in {time.monotonic() - t0:.1f}s", highlight=False)
    sys.exit(report(results, sc.name, junit))


def etcdctl(ctx: typer.Context, cluster: Optional[str] = ClusterOpt) -> None:
    """Run etcdctl (API v3) against the cluster's etcd: testbed etcdctl get
    /registry/services/specs/default/web (on a shared etcd /registry/... names the cluster's
    own prefix). Other arguments and the exit code pass through."""
    from ..apiserver.etcd import cluster as etcd_cluster, etcdctl_argv
    from ..apiserver.etcd.keys import relocate

    name = state.resolve(cluster)
    config = etcd_cluster.read(name)
    if config.kind != etcd_cluster.ETCD:
        raise TestbedError(f"cluster {name} keeps its objects in the embedded store, not etcd "
                           f"(bring it up with spec.store: etcd or --store etcd)")
    argv, env = etcdctl_argv(config.endpoints, [relocate(a, config.prefix) for a in ctx.args],
                             config.client_tls)
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        raise TestbedError("etcdctl: command not found (install etcd-client: scripts/install)") from None


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command("ls")(ls)
    app.command()(status)
    app.command()(restart)
    app.command()(run)
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                  "allow_interspersed_args": False})(etcdctl)
