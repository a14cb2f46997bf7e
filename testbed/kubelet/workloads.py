"""Launchers: how each kind of program a container can run is started and stopped.

``plan.program_for`` decides which program a container runs; the runtime looks its launcher
up by that name and never branches on the kind itself. A launcher starts the program in the
pod's network namespace, stops it with a signal, and says whether SIGTERM should first wait
for every kube-proxy to stop sending it traffic (``drains``). Adding a built-in workload
means one entry in ``plan.BUILTIN_IMAGES`` and one launcher here (as the coredns image's DNS
server).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import sys
from typing import TYPE_CHECKING, Protocol

from .. import exec, state
from . import etcfiles, volumes
from .plan import COREDNS, DEFAULT_WORKLOAD, PROCESS, container_env, image_version
from .status import Ctr, PodRun, now

if TYPE_CHECKING:
    from .runtime import PodRuntime


class Launcher(Protocol):
    drains: bool

    def start(self, run: PodRun, c: Ctr) -> str:
        """Start the program; return what the Started event says runs."""

    def signal(self, run: PodRun, c: Ctr, sig: int) -> None:
        """Deliver ``sig``; the runtime learns of the exit through ``PodRuntime._exited``."""


# What container runtimes give a container's first process (runc's default, as containerd and
# CRI-O pass it); the daemon's own umask (077) protects the cluster's state files, not the pods'.
CONTAINER_UMASK = 0o022


class ProcessLauncher:
    """``command``/``args``: a child forked in the pod's namespace, its exit watched by pidfd;
    stdout/stderr go to the container's log file."""

    drains = False

    def __init__(self, rt: PodRuntime):
        self.rt = rt

    def start(self, run: PodRun, c: Ctr) -> str:
        cwd = c.spec.get("workingDir")
        self.spawn(run, c, container_env(run.pod, c.spec, run.plan.ip, run.node_ip),
                   cwd if cwd and os.path.isdir(cwd) else None)
        return " ".join(c.argv)

    def spawn(self, run: PodRun, c: Ctr, env: dict[str, str], cwd: str | None = None) -> None:
        """Fork ``c.argv`` in the pod's namespace, output to the container's log, exit watched."""
        with open(self.rt.log_file(run, c), "ab") as logf:
            c.proc = exec.popen(c.argv, netns=run.plan.netns, stdout=logf, stderr=exec.STDOUT, env=env, cwd=cwd,
                                umask=CONTAINER_UMASK)
        c.pidfd = os.pidfd_open(c.proc.pid)
        self.rt.watch_exit(run, c)

    def signal(self, run: PodRun, c: Ctr, sig: int) -> None:
        if c.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(c.pidfd, sig)


class EchoLauncher:
    """The default workload: the shared ``WorkloadServer`` serves the container's ports (8080
    when the pod declares none) from the pod's namespace; stopping it closes its sockets."""

    drains = True

    def __init__(self, rt: PodRuntime):
        self.rt = rt

    @staticmethod
    def _ports(run: PodRun, c: Ctr) -> list[tuple[int, str]]:
        ports = [(int(p["containerPort"]), p.get("protocol") or "TCP") for p in c.spec.get("ports") or []
                 if p.get("containerPort")]
        if ports:
            return ports
        declared = any(x.spec.get("ports") for x in run.ctrs)
        first = next((x for x in run.ctrs if not x.process), None)
        return [] if declared or first is not c else [(8080, "TCP")]

    def start(self, run: PodRun, c: Ctr) -> str:
        ns, name = run.key
        ports = self._ports(run, c)
        version = image_version(c.spec.get("image"))
        c.wl_key = f"{ns}/{name}" if c is next((x for x in run.all() if not x.process), None) \
            else f"{ns}/{name}/{c.name}"
        if ports:
            self.rt.workloads.add_pod(c.wl_key, run.plan.netns, name, ports, version, ready=not run.forced_unready)
        else:
            c.wl_key = None
        with open(self.rt.log_file(run, c), "a") as f:
            f.write(f"{now()} testbed/echo {version}: serving pod {name} on "
                    f"{', '.join(f'{p}/{t}' for p, t in ports) or 'no ports'}\n")
        return f"the default workload ({version})"

    def signal(self, run: PodRun, c: Ctr, sig: int) -> None:
        if c.wl_key:
            self.rt.workloads.remove_pod(c.wl_key)
        with contextlib.suppress(OSError), open(self.rt.log_file(run, c), "a") as f:
            f.write(f"{now()} testbed/echo: stopped ({signal.Signals(sig).name})\n")
        code = 0 if sig == signal.SIGTERM else 128 + sig  # the echo server exits 0 on SIGTERM
        self.rt.exited(run, c, code, None if sig == signal.SIGTERM else sig)


def corefile_arg(args: list[str]) -> str:
    """The Corefile CoreDNS reads: ``-conf PATH`` (``-conf=PATH``), else ``Corefile``."""
    for i, a in enumerate(args):
        if a in ("-conf", "--conf") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(("-conf=", "--conf=")):
            return a.split("=", 1)[1]
    return "Corefile"


class CorednsLauncher(ProcessLauncher):
    """registry.k8s.io/coredns/coredns: the testbed's DNS server (``python -m testbed.dns``) in
    the pod's namespace. Its ``-conf`` path is resolved through the container's configMap
    mounts (materialized and kept current by ``volumes``, so ``reload`` follows ConfigMap
    edits); ``forward . /etc/resolv.conf`` reads the pod's own resolv.conf (``dnsPolicy:
    Default``: the underlay's resolver). The API socket is handed over explicitly, so the
    server does not depend on what the pod's filesystem view shows."""

    config_maps: volumes.ConfigMapVolumes | None = None

    def start(self, run: PodRun, c: Ctr) -> str:
        cluster = self.rt.plan.cluster
        if self.config_maps is None:  # one ConfigMap watch, only in clusters that run CoreDNS
            self.config_maps = volumes.ConfigMapVolumes(self.rt.store, cluster)
        self.config_maps.materialize(run.pod, lambda: not run.done)
        conf = corefile_arg(list(c.program.argv))
        if not posixpath.isabs(conf):
            conf = posixpath.join(c.spec.get("workingDir") or "/", conf)
        conf = volumes.host_path(conf, volumes.mounts(cluster, run.pod, c.spec)) or conf
        c.argv = [sys.executable, "-m", "testbed.dns", "--corefile", conf,
                  "--api", os.path.join(state.directory(cluster), "api.sock"),
                  "--resolv-conf", os.path.join(etcfiles.ETC_NETNS, run.plan.netns, "resolv.conf")]
        self.spawn(run, c, {**container_env(run.pod, c.spec, run.plan.ip, run.node_ip), "TESTBED_CLUSTER": cluster})
        return "the cluster DNS server (CoreDNS-1.11.3 equivalent)"


def launchers(rt: PodRuntime) -> dict[str, Launcher]:
    """Every program kind ``plan.program_for`` can name, with its launcher."""
    return {PROCESS: ProcessLauncher(rt), DEFAULT_WORKLOAD: EchoLauncher(rt), COREDNS: CorednsLauncher(rt)}
