"""Troubleshooting verbs, grouped as kubectl groups them: ``logs``, ``exec`` and ``capture``."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Optional

import typer

from .. import state
from ..cluster import Cluster, require_root
from ..errors import TestbedError
from ..kubectl import workloads as ops
from .common import ClusterOpt, NsOpt, api, err


def logs(pod: str = typer.Argument(..., help="NAME or pod/NAME"),
         container: Optional[str] = typer.Option(None, "--container"),
         follow: bool = typer.Option(False, "-f", "--follow"), namespace: str = NsOpt,
         cluster: Optional[str] = ClusterOpt) -> None:
    """Print a container's log (stdout and stderr of its process; the default workload's own lines)."""
    name = state.resolve(cluster)
    with api(name) as a:
        for line in ops.logs(name, a, pod, namespace, container, follow=follow):
            print(line, flush=True)


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
        from ..kubelet.sandbox import pod_command

        pod_ns, _, name = rest.rpartition("/")
        p = next(x for x in c.pods() if x.name == name and (not pod_ns or x.namespace == pod_ns))
        with c.api() as api:
            obj = api.get("Pod", p.namespace, p.name)
        # not through `ip netns exec`: its fresh /sys would hide the cgroup the command joins
        argv = pod_command(c.plan, obj, container, argv)
        os.execvp(argv[0], argv)
    os.execvp("ip", ["ip", "netns", "exec", ns, *argv])


def capture(target: str = typer.Argument(..., help="node/NAME, pod/[NS/]NAME (its host-side veth), external/NAME, underlay"),
            output: str = typer.Option(..., "-o", "--output", help="pcap file to write"),
            iface: Optional[str] = typer.Option(None, "--iface", help="interface (default: see TARGET)"),
            bpf: Optional[str] = typer.Option(None, "--filter", help="tcpdump filter expression (compiled with tcpdump -dd, run in the kernel)"),
            count: Optional[int] = typer.Option(None, "--count", help="stop after N frames"),
            seconds: Optional[float] = typer.Option(None, "--seconds", help="stop after this long"),
            cluster: Optional[str] = typer.Option(None, "-c", "--cluster")) -> None:
    """Capture frames inside a namespace into a pcap (AF_PACKET; Ctrl-C stops)."""
    from ..capture import Capture, capture_point

    require_root("testbed capture")
    netns_name, dev = capture_point(Cluster(state.resolve(cluster)), target, iface)
    try:  # before capturing, not after the frames were collected
        open(output, "ab").close()
    except OSError as exc:
        raise TestbedError(f"-o {output}: cannot be written: {exc.strerror or exc}") from None
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


def register(app: typer.Typer) -> None:
    app.command()(logs)
    app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(exec_)
    app.command()(capture)
