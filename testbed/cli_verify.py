"""``testbed verify``, ``testbed run`` and ``testbed capture`` (registered by cli.py)."""

from __future__ import annotations

import os
import sys
import signal
import threading
import time
from typing import Optional

import typer
from rich.console import Console

from . import state
from .errors import TestbedError

out = Console(width=None if sys.stdout.isatty() else 200)  # logs: wide, not wrapped
err = Console(stderr=True)


def _scenario_of(cluster: str, path: Optional[str]):
    from .scenario import load

    if path is None:
        info = state.read_json(cluster, "state.json", {})
        path = info.get("source")
        if not path or not os.path.exists(path):
            raise TestbedError(f"cluster {cluster} does not remember its scenario file; give it: testbed verify SCENARIO")
    return load(path, name=cluster)


def _report(results, suite: str, junit: Optional[str]) -> int:
    from .verify.report import table, write_junit

    out.print(table(results))
    passed = sum(1 for r in results if r.ok)
    out.print(f"{passed}/{len(results)} checks passed in {sum(r.seconds for r in results):.1f}s", highlight=False)
    if junit:
        write_junit(junit, suite, results)
    return 0 if results and passed == len(results) else 1


def register(app: typer.Typer) -> None:
    @app.command()
    def verify(scenario: Optional[str] = typer.Argument(None, help="scenario file (default: the one the cluster was built from)"),
               cluster: Optional[str] = typer.Option(None, "-c", "--cluster", help="cluster name (default: the only one that is up)"),
               check: list[str] = typer.Option(None, "--check", help="run only this check (repeatable)"),
               junit: Optional[str] = typer.Option(None, "--junit", help="write JUnit XML here"),
               artifacts: Optional[str] = typer.Option(None, "--artifacts",
                                                       help="keep pcaps and rules here (default: the state directory)")) -> None:
        """Run a scenario's checks against a running cluster: expected versus observed; exit 0 only if all pass."""
        from .cluster import Cluster, require_root
        from .verify import verify_cluster

        require_root("testbed verify")
        name = state.resolve(cluster)
        sc = _scenario_of(name, scenario)
        c = Cluster(name)
        results = verify_cluster(c, sc, check or None, artifacts,
                                 log=lambda m: err.print(m, highlight=False))
        sys.exit(_report(results, sc.name, junit))

    @app.command()
    def run(scenario: str = typer.Argument(..., help="scenario file"),
            keep: bool = typer.Option(False, "--keep", help="leave the cluster up"),
            name: Optional[str] = typer.Option(None, "--name", help="cluster name (default: metadata.name)"),
            junit: Optional[str] = typer.Option(None, "--junit", help="write JUnit XML here"),
            artifacts: Optional[str] = typer.Option(None, "--artifacts", help="keep pcaps and rules here "
                                                    "(default: artifacts/verify/<cluster>)")) -> None:
        """Up, verify, down in one go (for CI and scripts); exit 0 only if every check passes."""
        from .cluster import require_root, run_scenario
        from .scenario import load

        require_root("testbed run")
        sc = load(scenario, name=name)
        t0 = time.monotonic()
        results = run_scenario(scenario, name=name, keep=keep,
                               artifacts=artifacts or os.path.join("artifacts", "verify", sc.name),
                               log=lambda m: err.print(m, highlight=False))
        err.print(f"{sc.name}: up, verify{'' if keep else ', down'} in {time.monotonic() - t0:.1f}s", highlight=False)
        sys.exit(_report(results, sc.name, junit))

    @app.command()
    def capture(target: str = typer.Argument(..., help="node/NAME, pod/[NS/]NAME (its host-side veth), external/NAME, underlay"),
                output: str = typer.Option(..., "-o", "--output", help="pcap file to write"),
                iface: Optional[str] = typer.Option(None, "--iface", help="interface (default: see TARGET)"),
                bpf: Optional[str] = typer.Option(None, "--filter", help="tcpdump filter expression (compiled with tcpdump -dd, run in the kernel)"),
                count: Optional[int] = typer.Option(None, "--count", help="stop after N frames"),
                seconds: Optional[float] = typer.Option(None, "--seconds", help="stop after this long"),
                cluster: Optional[str] = typer.Option(None, "-c", "--cluster")) -> None:
        """Capture frames inside a namespace into a pcap (AF_PACKET; Ctrl-C stops)."""
        from .capture import Capture
        from .cluster import Cluster, require_root

        require_root("testbed capture")
        c = Cluster(state.resolve(cluster))
        kind, _, rest = target.partition("/")
        if kind in ("pod", "po", "pods") and iface is None:
            ns_, _, pname = rest.rpartition("/")
            p = c.pod(pname, ns_ or None)
            node = next(n for n in c.plan.nodes if n.name == p.node)
            netns_name, dev = node.netns, p.host_veth
        elif kind == "underlay":
            netns_name, dev = c.plan.underlay.netns, iface or "underlay"
        else:
            netns_name, dev = c.netns_of(target), iface or "eth0"
        cap = Capture(netns_name, dev, bpf=bpf, count=count).start()
        stop = threading.Event()
        old = signal.signal(signal.SIGINT, lambda *a: stop.set())
        err.print(f"capturing on {dev} in {netns_name}{f' ({bpf})' if bpf else ''}; Ctrl-C stops", highlight=False)
        try:
            deadline = None if seconds is None else time.monotonic() + seconds
            while not stop.is_set() and not cap.done.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                cap.done.wait(0.2 if left is None else min(0.2, left))  # wakes for Ctrl-C
        finally:
            signal.signal(signal.SIGINT, old)
            frames = cap.stop()
            cap.write_pcap(output)
        print(f"{len(frames)} frames written to {output}")
