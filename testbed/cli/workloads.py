"""Workload verbs: ``rollout status|history|undo``, ``scale``, ``set image``, ``kill``,
``readiness`` (the operations are in :mod:`testbed.kubectl.workloads`)."""

from __future__ import annotations

import sys
import threading
from typing import Optional

import typer

from ..errors import BadOptionError
from ..kubectl import workloads as ops
from ..kubectl.workloads import DEPLOY_KINDS, parse_ref
from .common import ClusterOpt, NsOpt, api


def rollout_status(ref: list[str] = typer.Argument(..., help="deploy/NAME or deploy NAME"),
                   watch: bool = typer.Option(True, "-w/--no-watch", "--watch"),
                   timeout: str = typer.Option("5m", "--timeout",
                                               help="how long to wait, as kubectl: 90s, 5m, 1m30s; 0 waits forever"),
                   namespace: str = NsOpt, cluster: Optional[str] = ClusterOpt) -> None:
    """Wait for a rollout to finish, printing its progress like kubectl."""
    name = parse_ref(ref, DEPLOY_KINDS, "deploy")
    seconds = rollout_timeout(timeout)
    with api(cluster) as a:
        for line in ops.rollout_status(a, name, namespace, watch=watch, timeout=seconds):
            print(line, flush=True)


def rollout_timeout(value: str) -> float:
    """``--timeout`` in seconds: a Go duration like kubectl's flag (a bare number is seconds)."""
    from ..scenario import parse_duration

    seconds = parse_duration(float(value) if value.replace(".", "", 1).isdigit() else value)
    if seconds is None:
        raise BadOptionError(f"--timeout: {value!r} is not a duration (e.g. 90s, 5m, 1m30s)")
    return seconds or threading.TIMEOUT_MAX  # kubectl: zero means never


def rollout_history(ref: list[str] = typer.Argument(...), namespace: str = NsOpt,
                    cluster: Optional[str] = ClusterOpt) -> None:
    """The revisions of a Deployment (its ReplicaSets)."""
    with api(cluster) as a:
        sys.stdout.write(ops.rollout_history(a, parse_ref(ref, DEPLOY_KINDS, "deploy"), namespace))


def rollout_undo(ref: list[str] = typer.Argument(...),
                 to_revision: int = typer.Option(0, "--to-revision"), namespace: str = NsOpt,
                 cluster: Optional[str] = ClusterOpt) -> None:
    """Roll back to the previous (or a given) revision."""
    with api(cluster) as a:
        print(ops.rollout_undo(a, parse_ref(ref, DEPLOY_KINDS, "deploy"), namespace, to_revision))


def scale(ref: list[str] = typer.Argument(..., help="deploy/NAME or deploy NAME"),
          replicas: int = typer.Option(..., "--replicas"), namespace: str = NsOpt,
          cluster: Optional[str] = ClusterOpt) -> None:
    """Set a Deployment's replicas."""
    with api(cluster) as a:
        print(ops.scale(a, parse_ref(ref, DEPLOY_KINDS, "deploy"), replicas, namespace))


def set_image(args: list[str] = typer.Argument(..., help="deploy/NAME CONTAINER=IMAGE..."),
              namespace: str = NsOpt, cluster: Optional[str] = ClusterOpt) -> None:
    """Change container images (the tag selects the workload variant: testbed/echo:v2 reports v2)."""
    refs = [a for a in args if "=" not in a]
    pairs = [a for a in args if "=" in a]
    if not pairs:
        raise BadOptionError("give at least one CONTAINER=IMAGE")
    with api(cluster) as a:
        print(ops.set_image(a, parse_ref(refs, DEPLOY_KINDS, "deploy"), pairs, namespace))


def kill(pod: str = typer.Argument(..., help="pod/NAME"),
         container: Optional[str] = typer.Option(None, "--container", help="only this container"),
         namespace: str = NsOpt, cluster: Optional[str] = ClusterOpt) -> None:
    """Kill a pod's process(es) as SIGKILL would; the pod's restartPolicy decides what happens."""
    with api(cluster) as a:
        print(ops.kill(a, pod, namespace, container))


def readiness(pod: str = typer.Argument(..., help="pod/NAME"),
              fail: bool = typer.Option(False, "--fail", help="make /readyz answer 503"),
              pass_: bool = typer.Option(False, "--pass", help="make /readyz answer 200 again"),
              namespace: str = NsOpt, cluster: Optional[str] = ClusterOpt) -> None:
    """Make a pod's readiness fail or pass (the default workload's /readyz)."""
    if fail == pass_:
        raise BadOptionError("give exactly one of --fail and --pass")
    with api(cluster) as a:
        print(ops.set_readiness(a, pod, pass_, namespace))


def register(app: typer.Typer) -> None:
    rollout = typer.Typer(no_args_is_help=True, help="Manage the rollout of a Deployment.")
    rollout.command("status")(rollout_status)
    rollout.command("history")(rollout_history)
    rollout.command("undo")(rollout_undo)
    app.add_typer(rollout, name="rollout")
    app.command()(scale)
    set_ = typer.Typer(no_args_is_help=True, help="Set fields of objects.")
    set_.command("image")(set_image)
    app.add_typer(set_, name="set")
    app.command()(kill)
    app.command()(readiness)
