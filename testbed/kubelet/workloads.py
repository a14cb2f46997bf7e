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
import shutil
import signal
import sys
from typing import TYPE_CHECKING, Protocol

from .. import cgroups, controlplane, exec, state
from ..workload.http import workload_mode
from . import sandbox, volumes
from .plan import COREDNS, DEFAULT_WORKLOAD, ECHOSERVER, INGRESS_NGINX, PROCESS, container_env, image_version
from .status import Ctr, PodRun, now

if TYPE_CHECKING:
    from .runtime import PodRuntime


class Launcher(Protocol):
    drains: bool

    def start(self, run: PodRun, c: Ctr) -> str:
        """Start the program; return what the Started event says runs."""

    def signal(self, run: PodRun, c: Ctr, sig: int) -> None:
        """Deliver ``sig``; the runtime learns of the exit through ``PodRuntime._exited``."""


class ProcessLauncher:
    """``command``/``args``: a sandboxed container (``testbed.sandbox``) forked in the pod's
    network namespace, its exit watched by pidfd; stdout/stderr go to the container's log file."""

    drains = False

    def __init__(self, rt: PodRuntime):
        self.rt = rt

    def start(self, run: PodRun, c: Ctr) -> str:
        self.sandboxed(run, c, container_env(run.pod, c.spec, run.plan.ip, run.node_ip))
        return " ".join(c.argv)

    def sandboxed(self, run: PodRun, c: Ctr, env: dict[str, str], binds: list[tuple[str, str]] = ()) -> None:
        """Start ``c.argv`` in the container's sandbox (``binds``: see ``sandbox.prepare``)."""
        # The program is looked up here, where a missing one is still a synchronous start error
        # (the sandbox shares the host's root filesystem, so the answer is the same inside).
        if shutil.which(c.argv[0], path=env.get("PATH")) is None:
            raise FileNotFoundError(f'exec: "{c.argv[0]}": executable file not found in $PATH')
        spec = self.rt.sandbox_spec(run, c, binds)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            with open(self.rt.log_file(run, c), "ab") as logf:
                c.proc = exec.popen(sandbox.run_argv(spec, list(c.argv), sync_fd=w), netns=run.plan.netns,
                                    stdout=logf, stderr=exec.STDOUT, env=env, pass_fds=(w,),
                                    cgroup=self.rt.container_cgroup(run, c))
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        c.sync_fd = r  # the runtime reports the container running once the program is exec'd
        self._watch(run, c)

    def api_client(self, run: PodRun, c: Ctr, env: dict[str, str], binds: list[tuple[str, str]] = ()) -> None:
        """Start a built-in program that reads the API, as a pod with a service account does: in
        its sandbox, which shows of the hidden state directory only the API socket, at the path
        its ``--api`` names (``API_SOCKET_IN_POD``), and what ``binds`` add."""
        sock = controlplane.socket_path(self.rt.plan.cluster)
        self.sandboxed(run, c, {**env, "TESTBED_CLUSTER": self.rt.plan.cluster}, [(sock, sock), *binds])

    def adopt(self, run: PodRun, c: Ctr, pid: int) -> None:
        """Watch the sandbox ``pid`` an earlier kubelet started for this container."""
        c.proc = sandbox.Adopted(pid, sandbox.status_path(self.rt.plan.cluster, *run.key, c.name))
        self._watch(run, c)

    def _watch(self, run: PodRun, c: Ctr) -> None:
        c.pidfd = os.pidfd_open(c.proc.pid)
        self.rt.watch_exit(run, c)

    def signal(self, run: PodRun, c: Ctr, sig: int) -> None:
        if sig == signal.SIGKILL:  # every process of the container, not only its first
            with contextlib.suppress(OSError):
                cgroups.kill_async(self.rt.container_cgroup(run, c))
        elif c.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(c.pidfd, sig)


class EchoLauncher:
    """The default workload: the shared ``WorkloadServer`` serves the container's ports (8080
    when the pod declares none) from the pod's namespace; stopping it closes its sockets."""

    drains = True

    def __init__(self, rt: PodRuntime, label: str = "testbed/echo"):
        self.rt = rt
        self.label = label

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
        mode = workload_mode(c.spec.get("image"))
        c.wl_key = f"{ns}/{name}" if c is next((x for x in run.all() if not x.process), None) \
            else f"{ns}/{name}/{c.name}"
        if ports:
            self.rt.workloads.add_pod(c.wl_key, run.plan.netns, name, ports, version,
                                      ready=not run.forced_unready, mode=mode)
        else:
            c.wl_key = None
        with open(self.rt.log_file(run, c), "a") as f:
            f.write(f"{now()} {self.label} {version}: serving pod {name} on "
                    f"{', '.join(f'{p}/{t}' for p, t in ports) or 'no ports'}\n")
        return f"the default workload ({version}{', echo mode' if mode == 'echo' else ''})"

    def signal(self, run: PodRun, c: Ctr, sig: int) -> None:
        if c.wl_key:
            self.rt.workloads.remove_pod(c.wl_key)
        with contextlib.suppress(OSError), open(self.rt.log_file(run, c), "a") as f:
            f.write(f"{now()} {self.label}: stopped ({signal.Signals(sig).name})\n")
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
    the pod's sandbox. Its ``-conf`` path is resolved through the container's configMap
    mounts (materialized and kept current by ``volumes``, their directories bind-mounted into
    the sandbox, so ``reload`` follows ConfigMap edits); ``forward . /etc/resolv.conf`` reads the
    pod's own resolv.conf (``dnsPolicy: Default``: the underlay's resolver); the API socket is
    the one thing of the state directory it sees (``api_client``)."""

    config_maps: volumes.ConfigMapVolumes | None = None

    def _volumes(self, run: PodRun) -> None:
        if self.config_maps is None:  # one ConfigMap watch, only in clusters that run CoreDNS
            self.config_maps = volumes.ConfigMapVolumes(self.rt.store, self.rt.plan.cluster)
        self.config_maps.materialize(run.pod, lambda: not run.done)

    def adopt(self, run: PodRun, c: Ctr, pid: int) -> None:
        self._volumes(run)  # a re-attached server's Corefile keeps following its ConfigMap
        super().adopt(run, c, pid)

    def start(self, run: PodRun, c: Ctr) -> str:
        cluster = self.rt.plan.cluster
        self._volumes(run)
        conf = corefile_arg(list(c.program.argv))
        if not posixpath.isabs(conf):
            conf = posixpath.join(c.spec.get("workingDir") or "/", conf)
        mounts = volumes.mounts(cluster, run.pod, c.spec)
        conf = volumes.host_path(conf, mounts) or conf
        # the configMap volumes' directories are where the server reads (and reloads) them
        c.argv = [sys.executable, "-m", "testbed.dns", "--corefile", conf,
                  "--api", controlplane.socket_path(cluster), "--resolv-conf", "/etc/resolv.conf"]
        self.api_client(run, c, container_env(run.pod, c.spec, run.plan.ip, run.node_ip),
                        [(d, d) for d in sorted(set(mounts.values()))])
        return "the cluster DNS server (CoreDNS-1.11.3 equivalent)"


# upstream's controller flags that ``python -m testbed.ingress`` implements; the image's other
# flags (leader election, webhook, configmap) configure machinery the testbed does not have
INGRESS_FLAGS = ("--ingress-class", "--controller-class", "--publish-status-address")


def ingress_controller_flags(args: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The container's args as upstream's manifest writes them (``/nginx-ingress-controller
    --ingress-class=nginx ...``) -> (flags for ``python -m testbed.ingress``, flags it ignores)."""
    args = list(args)
    if args and not args[0].startswith("-"):
        args = args[1:]  # the image's binary, as upstream's manifest names it
    kept: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value, i = args[i + 1], i + 1
        (kept if flag in INGRESS_FLAGS else ignored).append(f"{flag}={value}" if value or eq else flag)
        i += 1
    return kept, ignored


class IngressNginxLauncher(ProcessLauncher):
    """The ingress-nginx controller image: ``python -m testbed.ingress`` in the pod's sandbox; it
    runs nginx as its child there, reloads it on changes and stops it (SIGQUIT, in-flight
    requests finish) when SIGTERM stops the pod. Its files live in the cluster's state directory
    (so ``down`` removes them), of which the sandbox shows only their directory and the API
    socket (``api_client``)."""

    def start(self, run: PodRun, c: Ctr) -> str:
        ns, name = run.key
        cluster = self.rt.plan.cluster
        directory = os.path.join(state.directory(cluster), "ingress", f"{ns}_{name}")
        kept, ignored = ingress_controller_flags(c.program.argv)  # c.argv: the last start's command
        if not any(f.startswith("--publish-status-address=") for f in kept) and run.node_ip:
            # as upstream without --publish-service: Ingresses show the address of the node
            # the controller runs on (where its NodePort answers), not the pod's
            kept.append(f"--publish-status-address={run.node_ip}")
        argv = [sys.executable, "-m", "testbed.ingress", "--api", controlplane.socket_path(cluster),
                "--pod", f"{ns}/{name}", "--dir", directory, *kept]
        if ignored:
            with open(self.rt.log_file(run, c), "a") as f:
                f.write(f"{now()} flags the testbed controller does not implement, ignored: {' '.join(ignored)}\n")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        c.argv = argv
        self.api_client(run, c, container_env(run.pod, c.spec, run.plan.ip, run.node_ip), [(directory, directory)])
        return f"the ingress-nginx controller (nginx, state in {directory})"


def launchers(rt: PodRuntime) -> dict[str, Launcher]:
    """Every program kind ``plan.program_for`` can name, with its launcher."""
    return {PROCESS: ProcessLauncher(rt), DEFAULT_WORKLOAD: EchoLauncher(rt), COREDNS: CorednsLauncher(rt),
            ECHOSERVER: EchoLauncher(rt, label="echoserver"), INGRESS_NGINX: IngressNginxLauncher(rt)}
