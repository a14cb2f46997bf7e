"""The ``testbed`` command: thin verbs over the library (cluster.py and friends)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from . import state
from .cluster import Cluster, require_root
from .errors import TestbedError
from .scenario import check_manifests, load as load_scenario
from .scenario import PROXY_MODES

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A Kubernetes Service-networking lab in Linux network namespaces.")
out = Console()
err = Console(stderr=True)

ClusterOpt = typer.Option(None, "-c", "--cluster", help="cluster name (default: the only one that is up)")


def _fail(exc: Exception, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def up(scenario: str = typer.Argument(..., help="scenario file (see scenarios/)"),
       name: Optional[str] = typer.Option(None, "--name", help="cluster name (default: metadata.name)"),
       raise_neigh_limits: bool = typer.Option(False, "--raise-neigh-limits",
                                               help="raise the host-wide ARP table limits if needed (restored by down)"),
       proxy_mode: Optional[str] = typer.Option(None, "--proxy-mode",
                                                  help=f"override spec.proxyMode ({', '.join(PROXY_MODES)})"),
       no_control_plane: bool = typer.Option(False, "--no-control-plane",
                                             help="topology only: static pod namespaces, no API, no workloads"),
       quiet: bool = typer.Option(False, "-q", "--quiet")) -> None:
    """Build a cluster from a scenario file and return when it is usable."""
    require_root("testbed up")
    started = time.monotonic()
    loaded = load_scenario(scenario, name=name)
    if not no_control_plane:
        # what the API would refuse is bad input (exit 2), found before anything is built
        check_manifests(loaded)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err, transient=True, disable=quiet) as progress:
        tasks: dict[str, int] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        c = Cluster.up(loaded, name=name, progress=report, raise_neigh_limits=raise_neigh_limits,
                       control_plane=not no_control_plane, proxy_mode=proxy_mode,
                       warn=lambda m: err.print(f"[yellow]warning:[/yellow] {m}", highlight=False))
    if not quiet:
        s = c.status()
        print(f"cluster {c.name} is up in {time.monotonic() - started:.2f}s: {len(s['nodes'])} nodes, "
              f"{len(s['pods'])} pods, {len(s['externals'])} external clients ({s['backend']}, "
              f"hairpin {s['hairpinMode']}, proxy {s['proxyMode']})")
        _print_status(s)
        print(f"try: testbed exec -c {c.name} node/{s['nodes'][0]['name']} -- ip route")


@app.command()
def down(name: Optional[str] = typer.Argument(None, help="cluster name (default: the only one that is up)"),
         all_: bool = typer.Option(False, "--all", help="remove every cluster")) -> None:
    """Remove exactly what a cluster owns (also after a crash); idempotent."""
    require_root("testbed down")
    names = state.clusters() if all_ else [name or state.resolve(None)]
    for n in names:
        removed = Cluster(n).down()
        print(f"cluster {n} removed ({removed['netns']} namespaces, {removed['processes']} processes)")


@app.command("ls")
def ls() -> None:
    """List clusters."""
    rows = []
    for n in state.clusters():
        try:
            s = Cluster(n).status()
            rows.append([n, str(len(s["nodes"])), str(len(s["pods"])), s["backend"], s["proxyMode"], "up"])
        except TestbedError as exc:
            rows.append([n, "-", "-", "-", "-", f"broken ({exc}); remove it with: testbed down {n}"])
    print(columns(["NAME", "NODES", "PODS", "BACKEND", "PROXY", "STATE"], rows))


def columns(header: list[str], rows: list[list[str]]) -> str:
    """kubectl's plain table: left-aligned columns separated by three spaces, never truncated."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _print_status(s: dict) -> None:
    rows = [["node", n["name"], "", n["ip"], n["podCIDR"], n["netns"]] for n in s["nodes"]]
    rows += [["pod", f"{p['namespace']}/{p['name']}", p["node"], p["ip"], "", p["netns"]] for p in s["pods"]]
    rows += [["external", e["name"], "", e["ip"], "", e["netns"]] for e in s["externals"]]
    print(columns(["KIND", "NAME", "NODE", "IP", "POD-CIDR", "NETNS"], rows))


@app.command()
def status(name: Optional[str] = typer.Argument(None), output: str = typer.Option("table", "-o", "--output",
                                                                                  help="table|json|yaml")) -> None:
    """Show what a cluster is made of."""
    s = Cluster(state.resolve(name)).status()
    if output == "json":
        print(json.dumps(s, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(s, sort_keys=False), end="")
    elif output == "table":
        _print_status(s)
    else:
        raise TestbedError(f"unknown output format {output!r}; allowed: table, json, yaml")


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(ctx: typer.Context, target: str = typer.Argument(..., help="node/NAME, pod/[NS/]NAME, external/NAME, underlay"),
          cluster: Optional[str] = ClusterOpt,
          container: Optional[str] = typer.Option(None, "--container", help="the pod's container (default: its first)")) -> None:
    """Run a command in a namespace: testbed exec pod/web-1 -- ip addr. Standard input and the exit
    code pass through; a pod's command runs inside its sandbox (namespaces, cgroup, credentials)."""
    require_root("testbed exec")
    argv = list(ctx.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise TestbedError("no command given: testbed exec TARGET -- CMD [ARGS...]")
    c = Cluster(state.resolve(cluster))
    ns = c.netns_of(target)
    kind, _, rest = target.partition("/")
    if kind in ("pod", "pods", "po") and c.plan.control_plane:
        from .kubelet.sandbox import pod_command

        pod_ns, _, name = rest.rpartition("/")
        p = next(x for x in c.pods() if x.name == name and (not pod_ns or x.namespace == pod_ns))
        with c.api() as api:
            obj = api.get("Pod", p.namespace, p.name)
        # not through `ip netns exec`: its fresh /sys would hide the cgroup the command joins
        argv = pod_command(c.name, c.plan.service_network, obj, container, argv)
        os.execvp(argv[0], argv)
    os.execvp("ip", ["ip", "netns", "exec", ns, *argv])


def _api(cluster: Optional[str]):
    from . import controlplane

    return controlplane.client(state.resolve(cluster))


NsOpt = typer.Option("default", "-n", "--namespace")


@app.command()
def apply(filename: list[str] = typer.Option(..., "-f", "--filename", help="file(s) with Kubernetes objects, - for stdin"),
          namespace: Optional[str] = typer.Option(None, "-n", "--namespace"),
          cluster: Optional[str] = ClusterOpt) -> None:
    """Create or update objects from YAML as written for real clusters (multi-document, List)."""
    from .kubectl import commands

    objs = commands.load(filename)
    if not objs:
        raise TestbedError("no objects passed to apply")  # kubectl's words for an empty input
    with _api(cluster) as api:
        for line in commands.apply(api, objs, namespace):
            print(line)


@app.command()
def delete(args: list[str] = typer.Argument(None, help="KIND NAME... or KIND/NAME..."),
           filename: list[str] = typer.Option(None, "-f", "--filename"),
           namespace: str = NsOpt, ignore_not_found: bool = typer.Option(False, "--ignore-not-found"),
           cluster: Optional[str] = ClusterOpt) -> None:
    """Delete objects named on the command line or in files."""
    from .kubectl import commands
    from .kubectl.resources import parse_args

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
    with _api(cluster) as api:
        for line in commands.delete(api, refs, ignore_not_found=ignore_not_found):
            print(line)


@app.command()
def get(args: list[str] = typer.Argument(..., help="KIND [NAME...], KIND1,KIND2 or KIND/NAME"),
        namespace: str = NsOpt, all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
        output: str = typer.Option("", "-o", "--output", help="wide|json|yaml"),
        selector: Optional[str] = typer.Option(None, "-l", "--selector"),
        cluster: Optional[str] = ClusterOpt) -> None:
    """Show objects like kubectl get (pods, svc, ep, endpointslices, deploy, rs, nodes, events, ns)."""
    from .kubectl import commands

    with _api(cluster) as api:
        sys.stdout.write(commands.get(api, args, namespace=namespace, all_namespaces=all_namespaces,
                                      output=output, selector=selector))


@app.command()
def describe(kind: str, name: str, namespace: str = NsOpt, cluster: Optional[str] = ClusterOpt) -> None:
    """Describe a Service or a Pod like kubectl describe, with its events."""
    from .kubectl import commands

    with _api(cluster) as api:
        sys.stdout.write(commands.describe(api, kind, name, namespace))


@app.command()
def events(namespace: Optional[str] = typer.Option(None, "-n", "--namespace", help="default: all namespaces"),
           watch: bool = typer.Option(False, "-w", "--watch"), cluster: Optional[str] = ClusterOpt) -> None:
    """The cluster's events as a timeline: Service stored, ClusterIP allocated, slices written, proxies synced."""
    from .kubectl import commands

    with _api(cluster) as api:
        for line in commands.events(api, namespace=namespace, watch=watch):
            print(line, flush=True)


@app.command()
def restart(name: Optional[str] = typer.Argument(None)) -> None:
    """Restart the control-plane process of a cluster (the store and the pods survive)."""
    require_root("testbed restart")
    Cluster(state.resolve(name)).restart_control_plane()
    print(f"control plane of {state.resolve(name)} restarted")


@app.command()
def render(file: str = typer.Option(..., "-f", "--filename", help="KubeProxyTestHarness inputs or steps file"),
           proxy_mode: str = typer.Option("iptables", "--proxy-mode"),
           sorted_: bool = typer.Option(False, "--sorted", help="upstream's test order"),
           steps: bool = typer.Option(False, "--steps", help="FILE is a steps file: print every sync")) -> None:
    """Print the iptables-restore input kube-proxy would write (no root needed)."""
    from .proxy import harness

    if proxy_mode != "iptables":
        raise TestbedError(f"render supports --proxy-mode iptables only (got {proxy_mode!r})")
    if steps or file.endswith(".steps.txt"):
        for i, text in enumerate(harness.render_steps(file, sorted=sorted_ or steps), 1):
            sys.stdout.write(f"### step {i}\n{text}")
    else:
        sys.stdout.write(harness.render_file(file, sorted=sorted_))


def _register_extensions() -> None:
    """Verbs that live beside their subsystem: ``testbed/cli_<area>.py`` with ``register(app)``."""
    import importlib

    for name in ("cli_proxy", "cli_workloads", "cli_verify"):
        try:
            mod = importlib.import_module(f"testbed.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"testbed.{name}":
                continue
            raise
        mod.register(app)


_register_extensions()


def main() -> None:
    from .apiserver.errors import ApiError

    try:
        rc = app(standalone_mode=False)  # click returns the code of typer.Exit in this mode
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TestbedError as exc:
        _error(str(exc))
        sys.exit(exc.exit_code)
    except ApiError as exc:  # the API server's own words, like kubectl prints them
        _error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except (OSError, ValueError) as exc:
        _error(str(exc))
        sys.exit(2 if isinstance(exc, ValueError) else 1)
    except Exception as exc:  # usage errors from the command-line parser
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    main()
