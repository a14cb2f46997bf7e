"""The kubelet: makes bound Pods real on their node and runs their containers.

One :class:`Kubelet` controller serves every node of the cluster (they share a process, like
the workload server does).  It watches Pods; a burst of new pods becomes one
``topology.add_pods`` call (one netlink batch per pod namespace and one per node) with
addresses from the node's host-local range (``.2`` upward).

Containers are run by :class:`PodRuntime`: one thread with one event loop for every pod of
every node (timers for probes, restart back-off and grace periods in heaps, process exits
watched through pidfds), plus a small pool of workers that enter namespaces to run probes and
hooks.  A container is

* a **process** when it has ``command:``/``args:``: forked by a thread that has entered the
  pod's namespace (a child inherits the calling thread's namespace), with the container's
  ``env``; stdout/stderr go to ``<state>/logs/<namespace>_<pod>_<container>.log``;
* the **default workload** otherwise, served by the shared ``WorkloadServer`` on the
  container's ports (8080 when the pod declares none); "killing" it removes its sockets.

Lifecycle as upstream: init containers one by one to completion, then the containers with
their ``postStart`` hooks; readiness/liveness probes (``prober.py``); restarts by
``restartPolicy`` with back-off (10 s doubling to 300 s; ``backoff_base``, or per pod the
annotation ``testbed.io/restart-backoff-seconds``); phases Pending/Running/Succeeded/Failed
and conditions PodScheduled/PodReadyToStartContainers/Initialized/ContainersReady/Ready.

Deletion is graceful: the API server marks a deleted Pod with ``deletionTimestamp`` (grace =
``terminationGracePeriodSeconds``); the endpoint controller then reports it
serving-terminating; the kubelet runs ``preStop``, sends SIGTERM, SIGKILLs what is left when
the grace period ends, removes the pod's namespace and deletes the Pod with grace 0.  The
default workload shuts down gracefully on SIGTERM: it keeps serving until every node's
kube-proxy has applied the EndpointSlices that show the pod terminating (the proxies' metrics
files name the resourceVersions they applied), then closes its sockets; so a rolling update
loses no request even without a ``preStop`` sleep.

Controls for tests and demonstrations (annotations, so they go through the API):

* ``testbed.io/ready: "false"`` makes the default workload's ``/readyz`` answer 503 (a
  readiness probe on it then fails); a container without a readiness probe is reported
  unready directly. Removing the annotation (or ``"true"``) restores it.
* ``testbed.io/kill: "<nonce>[/<container>]"``: each new value kills the container(s) as
  SIGKILL would (exit code 137); ``restartPolicy`` decides what happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import ipaddress
import json
import logging
import os
import signal
import subprocess
import threading
import time
from typing import Any

from . import exec, hostsettings, naming, netns, prober, state, topology
from .controllers.base import Controller, key_of
from .ipam import HostLocal, RangeFull
from .plan import Plan, PodPlan

log = logging.getLogger(__name__)
POD = "Pod"
ANN_READY = "testbed.io/ready"
ANN_KILL = "testbed.io/kill"
ANN_BACKOFF = "testbed.io/restart-backoff-seconds"
_LOCAL = "_kubelet"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ports(pod: dict) -> list[tuple[int, str]]:
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                ports.append((int(p["containerPort"]), p.get("protocol") or "TCP"))
    return ports or [(8080, "TCP")]


def image_version(image: str | None) -> str:
    """The workload variant of an image: its tag (``testbed/echo:v2`` -> ``v2``), ``v1`` without one."""
    tail = (image or "").rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else "v1"


def pod_version(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return image_version(containers[0].get("image"))


def pod_plan(plan: Plan, pod: dict, ip: str | None = None) -> PodPlan:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    node = plan.node(spec["nodeName"])
    ip = ip or (pod.get("status") or {}).get("podIP")
    ns, name = meta.get("namespace", "default"), meta["name"]
    return PodPlan(ns, name, node.name, naming.pod_netns(plan.cluster, ns, name), ip, naming.pod_mac(ip),
                   naming.host_veth(plan.cluster, ns, name), naming.host_veth_mac(ip), node.cni_ip,
                   ipaddress.IPv4Network(node.pod_cidr).prefixlen, node.mtu)


def log_path(cluster: str, namespace: str, pod: str, container: str) -> str:
    return os.path.join(state.directory(cluster), "logs", f"{namespace}_{pod}_{container}.log")


def container_env(pod: dict, ctr: dict, ip: str | None, node_ip: str | None) -> dict[str, str]:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
           "HOSTNAME": meta.get("name", ""), "HOME": "/root"}
    fields = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "default"),
              "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""), "status.podIP": ip or "",
              "status.hostIP": node_ip or ""}
    for e in ctr.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        if "value" in e:
            env[name] = str(e.get("value") or "")
        elif ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") in fields:
            env[name] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def _fmt_seconds(s: float) -> str:
    if s >= 60 and s % 60 == 0:
        return f"{int(s // 60)}m0s"
    if s >= 60:
        return f"{int(s // 60)}m{s % 60:g}s"
    return f"{s:g}s"


# ==========================================================================================
# container runtime
# ==========================================================================================


class Ctr:
    """One container of a pod (spec + what is running now + what it reports)."""

    def __init__(self, spec: dict, index: int, init: bool):
        self.spec = spec
        self.index = index
        self.init = init
        self.name = spec.get("name") or f"c{index}"
        self.argv = [str(a) for a in (spec.get("command") or [])] + [str(a) for a in (spec.get("args") or [])]
        self.process = bool(self.argv)
        self.state = "waiting"
        self.reason = "PodInitializing" if not init else ""
        self.message = ""
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.started_at = ""
        self.finished_at = ""
        self.finished_mono = 0.0
        self.restart_count = 0
        self.last_state: dict = {}
        self.started = False
        self.ready_probe = False
        self.gen = 0
        self.proc: subprocess.Popen | None = None
        self.pidfd: int | None = None
        self.wl_key: str | None = None
        self.killed = 0  # signal we sent (for the exit code of the default workload)
        self.probes: dict[str, prober.ProbeState] = {}
        self.ever_ran = False

    def running(self) -> bool:
        return self.state == "running"

    def status(self, uid: str, forced_unready: bool) -> dict:
        if self.state == "running":
            st = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            t = {"exitCode": self.exit_code or 0, "reason": "Completed" if self.exit_code == 0 else "Error",
                 "startedAt": self.started_at or None, "finishedAt": self.finished_at,
                 "containerID": self.container_id(uid)}
            if self.signal:
                t["signal"] = self.signal
            if self.message:
                t["message"] = self.message
            st = {"terminated": t}
        else:
            w = {"reason": self.reason or "ContainerCreating"}
            if self.message:
                w["message"] = self.message
            st = {"waiting": w}
        return {"name": self.name, "image": self.spec.get("image", ""), "imageID": "",
                "containerID": self.container_id(uid), "ready": self.ready(forced_unready),
                "started": self.started, "restartCount": self.restart_count, "state": st,
                "lastState": self.last_state}

    def container_id(self, uid: str) -> str:
        return f"testbed://{uid[:8]}-{self.name}-{self.restart_count}"

    def ready(self, forced_unready: bool = False) -> bool:
        if self.init or self.state != "running" or not self.started:
            return False
        if "readiness" in self.probes:
            return self.probes["readiness"].result
        return not forced_unready


class PodRun:
    """A pod the runtime is running."""

    def __init__(self, pod: dict, plan: PodPlan, node_ip: str):
        m, spec = pod["metadata"], pod.get("spec") or {}
        self.pod = pod
        self.key = (m.get("namespace", "default"), m["name"])
        self.uid = m.get("uid", "")
        self.plan = plan
        self.node_ip = node_ip
        self.inits = [Ctr(c, i, True) for i, c in enumerate(spec.get("initContainers") or [])]
        self.ctrs = [Ctr(c, i, False) for i, c in enumerate(spec.get("containers") or [])]
        self.policy = spec.get("restartPolicy") or "Always"
        self.init_done = not self.inits
        self.init_failed = False
        self.terminating = False
        self.deadline = 0.0
        self.done = False
        self.start_time = _now()
        self.last_status: dict | None = None
        self.cond_times: dict[str, tuple[str, str]] = {}
        self.kill_nonce = (m.get("annotations") or {}).get(ANN_KILL)
        self.forced_unready = (m.get("annotations") or {}).get(ANN_READY) == "false"
        try:
            self.backoff_base = float((m.get("annotations") or {})[ANN_BACKOFF])
        except (KeyError, TypeError, ValueError):
            self.backoff_base = None

    @property
    def ref(self) -> dict:
        return self.pod

    def all(self) -> list[Ctr]:
        return self.inits + self.ctrs

    def grace(self) -> float:
        m, spec = self.pod["metadata"], self.pod.get("spec") or {}
        g = m.get("deletionGracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return float(g or 0)

    # -- status --------------------------------------------------------------------------
    def phase(self) -> str:
        if self.init_failed:
            return "Failed"
        if not self.init_done:
            return "Pending"
        if any(c.state == "running" for c in self.ctrs):
            return "Running"
        if self.ctrs and all(c.state == "terminated" for c in self.ctrs) and not self._will_restart():
            return "Succeeded" if all(c.exit_code == 0 for c in self.ctrs) else "Failed"
        return "Running" if any(c.ever_ran for c in self.ctrs) else "Pending"

    def _will_restart(self) -> bool:
        if self.terminating:
            return False
        if self.policy == "Always":
            return True
        if self.policy == "OnFailure":
            return any(c.exit_code != 0 for c in self.ctrs)
        return False

    def status(self) -> dict:
        now = _now()
        p = self.plan
        phase = self.phase()
        ready_all = bool(self.ctrs) and all(c.ready(self.forced_unready) for c in self.ctrs)
        conds = [("PodReadyToStartContainers", True, ""), ("Initialized", self.init_done, "ContainersNotInitialized"),
                 ("Ready", ready_all, "ContainersNotReady"), ("ContainersReady", ready_all, "ContainersNotReady"),
                 ("PodScheduled", True, "")]
        if phase in ("Succeeded", "Failed"):
            conds[2] = ("Ready", False, "PodCompleted")
            conds[3] = ("ContainersReady", False, "PodCompleted")
        out = []
        for t, ok, why in conds:
            s = "True" if ok else "False"
            prev = self.cond_times.get(t)
            if prev is None or prev[0] != s:
                self.cond_times[t] = (s, now)
            c = {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": self.cond_times[t][1]}
            if not ok and why:
                c["reason"] = why
                if why == "ContainersNotReady":
                    names = [x.name for x in self.ctrs if not x.ready(self.forced_unready)]
                    c["message"] = f"containers with unready status: [{' '.join(names)}]"
                elif why == "ContainersNotInitialized":
                    names = [x.name for x in self.inits if x.state != "terminated" or x.exit_code != 0]
                    c["message"] = f"containers with incomplete status: [{' '.join(names)}]"
            out.append(c)
        return {
            "phase": phase, "conditions": out,
            "hostIP": self.node_ip, "hostIPs": [{"ip": self.node_ip}],
            "podIP": p.ip, "podIPs": [{"ip": p.ip}], "startTime": self.start_time,
            "qosClass": (self.pod.get("status") or {}).get("qosClass") or "BestEffort",
            "initContainerStatuses": [c.status(self.uid, False) for c in self.inits] or None,
            "containerStatuses": [c.status(self.uid, self.forced_unready) for c in self.ctrs],
            "reason": None, "message": None,
        }


class PodRuntime:
    """Runs the containers of every pod from one event-loop thread (see the module doc)."""

    def __init__(self, store: Any, plan: Plan, workloads: Any, recorder: Any, on_done, *,
                 backoff_base: float = 10.0, backoff_cap: float = 300.0, exec_workers: int = 8):
        self.store = store
        self.plan = plan
        self.workloads = workloads
        self.recorder = recorder
        self.on_done = on_done
        self.backoff = prober.BackOff(backoff_base, backoff_cap)
        self.scheduler = prober.ProbeScheduler()
        self.runs: dict[tuple, PodRun] = {}
        self._probe_index: dict[tuple, tuple[PodRun, Ctr, str, int]] = {}
        self._dirty: dict[tuple, PodRun] = {}
        self._flush_armed = False
        self._draining: dict[tuple, tuple[PodRun, list]] = {}
        self._drain_armed = False
        self._probe_timer: asyncio.TimerHandle | None = None
        self._probe_due: float | None = None
        self.loop = asyncio.new_event_loop()
        self._exec = netns.Runner(exec_workers)
        self._thread = threading.Thread(target=self._run, name="kubelet-pods", daemon=True)
        self.log_dir = os.path.join(state.directory(plan.cluster), "logs")
        self.node_ips = {n.name: n.ip for n in plan.nodes}
        self.node_netns = {n.name: n.netns for n in plan.nodes}
        self.probes_run = 0

    # -- thread-safe entry points ----------------------------------------------------------
    def start(self) -> "PodRuntime":
        os.makedirs(self.log_dir, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._exec.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            for run in self.runs.values():  # leave processes to the next daemon (adopted) or to down
                for c in run.all():
                    if c.pidfd is not None:
                        with contextlib.suppress(Exception):
                            os.close(c.pidfd)
            self.loop.close()

    def call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(self._guard, fn, *args)
        except RuntimeError:  # closed
            pass

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001
            log.exception("kubelet runtime: %s failed", getattr(fn, "__name__", fn))

    def run_pods(self, items: list[tuple[dict, PodPlan, bool]]) -> None:
        self.call(self._run_pods, items)

    def update(self, pod: dict) -> None:
        self.call(self._update, pod)

    def force_stop(self, key: tuple) -> None:
        self.call(self._force_stop, key)

    # -- loop side: pods ---------------------------------------------------------------------
    def _run_pods(self, items) -> None:
        for pod, p, adopted in items:
            run = PodRun(pod, p, self.node_ips.get(p.node, ""))
            self.runs[run.key] = run
            if adopted:
                self._adopt_status(run)
                _kill_netns_processes(p.netns)
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(run)
                continue
            if run.inits:
                self._start(run, run.inits[0])
            else:
                self._start_main(run)
            self._mark(run)

    def _adopt_status(self, run: PodRun) -> None:
        st = run.pod.get("status") or {}
        run.start_time = st.get("startTime") or run.start_time
        by = {c.get("name"): c for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or [])}
        for c in run.all():
            s = by.get(c.name) or {}
            c.restart_count = int(s.get("restartCount") or 0)
            c.last_state = s.get("lastState") or {}
        if all(((by.get(c.name) or {}).get("state") or {}).get("terminated", {}).get("exitCode") == 0
               for c in run.inits):
            run.init_done = True
            for c in run.inits:
                c.state, c.exit_code, c.reason = "terminated", 0, ""

    def _update(self, pod: dict) -> None:
        key = key_of(pod)
        run = self.runs.get(key)
        if run is None or run.uid != pod["metadata"].get("uid"):
            return
        run.pod = pod
        ann = pod["metadata"].get("annotations") or {}
        unready = ann.get(ANN_READY) == "false"
        if unready != run.forced_unready:
            run.forced_unready = unready
            for c in run.ctrs:
                if c.wl_key and c.running():
                    with contextlib.suppress(KeyError):
                        self.workloads.set_ready(c.wl_key, not unready)
            self._mark(run)
        nonce = ann.get(ANN_KILL)
        if nonce and nonce != run.kill_nonce:
            run.kill_nonce = nonce
            _, _, only = nonce.partition("/")
            for c in run.ctrs:
                if c.running() and (not only or only == c.name):
                    self.recorder.event(pod, "Normal", "Killing", f"Killing container {c.name} on request "
                                                                  f"({ANN_KILL})")
                    self._signal(run, c, signal.SIGKILL)
        if pod["metadata"].get("deletionTimestamp") and not run.terminating:
            self._terminate(run)

    def _force_stop(self, key: tuple) -> None:
        run = self.runs.get(key)
        if run is not None and not run.done:
            run.pod["metadata"].setdefault("deletionGracePeriodSeconds", 0)
            run.pod["metadata"]["deletionGracePeriodSeconds"] = 0
            run.terminating = False
            self._terminate(run)

    # -- containers ------------------------------------------------------------------------
    def _start_main(self, run: PodRun) -> None:
        run.init_done = True
        for c in run.ctrs:
            self._start(run, c)

    def _log(self, run: PodRun, c: Ctr) -> str:
        ns, name = run.key
        return os.path.join(self.log_dir, f"{ns}_{name}_{c.name}.log")

    def _workload_ports(self, run: PodRun, c: Ctr) -> list[tuple[int, str]]:
        ports = [(int(p["containerPort"]), p.get("protocol") or "TCP") for p in c.spec.get("ports") or []
                 if p.get("containerPort")]
        if ports:
            return ports
        declared = any(x.spec.get("ports") for x in run.ctrs)
        first = next((x for x in run.ctrs if not x.process), None)
        return [] if declared or first is not c else [(8080, "TCP")]

    def _start(self, run: PodRun, c: Ctr) -> None:
        if run.terminating or run.done:
            return
        c.gen += 1
        c.killed = 0
        c.exit_code = c.signal = None
        c.message = ""
        c.started = False
        c.started_at = _now()
        c.ever_ran = True
        ns, name = run.key
        try:
            if c.process:
                logf = open(self._log(run, c), "ab")
                try:
                    env = container_env(run.pod, c.spec, run.plan.ip, run.node_ip)
                    cwd = c.spec.get("workingDir")
                    cwd = cwd if cwd and os.path.isdir(cwd) else None
                    c.proc = exec.popen(c.argv, netns=run.plan.netns, stdout=logf, stderr=exec.STDOUT,
                                        env=env, cwd=cwd)
                finally:
                    logf.close()
                c.pidfd = os.pidfd_open(c.proc.pid)
                gen = c.gen
                self.loop.add_reader(c.pidfd, self._on_exit_fd, run, c, gen)
            else:
                ports = self._workload_ports(run, c)
                version = image_version(c.spec.get("image"))
                c.wl_key = f"{ns}/{name}" if c is next((x for x in run.all() if not x.process), None) \
                    else f"{ns}/{name}/{c.name}"
                if ports:
                    self.workloads.add_pod(c.wl_key, run.plan.netns, name, ports, version,
                                           ready=not run.forced_unready)
                else:
                    c.wl_key = None
                with open(self._log(run, c), "a") as f:
                    f.write(f"{_now()} testbed/echo {version}: serving pod {name} on "
                            f"{', '.join(f'{p}/{t}' for p, t in ports) or 'no ports'}\n")
        except Exception as exc:  # noqa: BLE001 - e.g. command not found
            if isinstance(exc, exec.CommandError) and exc.cause is not None:
                exc = exc.cause  # the runtime's reason ("No such file ..."), not our wrapper's line
            c.state = "terminated"
            c.exit_code = 128
            c.message = str(exc)
            c.finished_at = _now()
            c.finished_mono = time.monotonic()
            self.recorder.event(run.ref, "Warning", "Failed", f"Error: failed to start container {c.name!r}: {exc}")
            self._after_exit(run, c)
            return
        c.state = "running"
        c.reason = ""
        what = " ".join(c.argv) if c.process else f"the default workload ({image_version(c.spec.get('image'))})"
        self.recorder.event(run.ref, "Normal", "Started", f"Started container {c.name}: {what}"
                            + (f" (pod network {run.plan.ip} on {run.plan.node})" if c.restart_count == 0 else ""))
        hook = ((c.spec.get("lifecycle") or {}).get("postStart")) if not c.init else None
        if hook:
            gen = c.gen
            self._run_action(run, c, hook, 30.0, lambda ok, msg: self._post_start_done(run, c, gen, ok, msg))
        else:
            self._up(run, c)
        self._mark(run)

    def _post_start_done(self, run: PodRun, c: Ctr, gen: int, ok: bool, msg: str) -> None:
        if c.gen != gen or not c.running():
            return
        if ok:
            self._up(run, c)
            return
        self.recorder.event(run.ref, "Warning", "FailedPostStartHook", f"PostStartHook failed: {msg}")
        self._signal(run, c, signal.SIGKILL, reason="FailedPostStartHook")

    def _up(self, run: PodRun, c: Ctr) -> None:
        c.started = True
        if not c.init and not run.terminating:
            now = time.monotonic()
            for kind in ("readiness", "liveness"):
                spec = prober.ProbeSpec.of(kind, c.spec.get(f"{kind}Probe"))
                if spec is None or spec.action == "grpc":
                    continue
                c.probes[kind] = prober.ProbeState(spec)
                pid = (run.key, run.uid, c.name, kind, c.gen)
                self._probe_index[pid] = (run, c, kind, c.gen)
                self.scheduler.add(pid, now, spec)
            self._arm_probes()
        self._mark(run)

    def _drop_probes(self, run: PodRun, c: Ctr) -> None:
        for kind in list(c.probes):
            pid = (run.key, run.uid, c.name, kind, c.gen)
            self.scheduler.remove(pid)
            self._probe_index.pop(pid, None)
        c.probes.clear()

    def _signal(self, run: PodRun, c: Ctr, sig: int, reason: str = "") -> None:
        """Stop a running container: a signal to its process; the default workload loses its sockets."""
        if not c.running():
            return
        c.killed = sig
        if c.process:
            if c.pidfd is not None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(c.pidfd, sig)
            return
        if c.wl_key:
            self.workloads.remove_pod(c.wl_key)
        with contextlib.suppress(OSError), open(self._log(run, c), "a") as f:
            f.write(f"{_now()} testbed/echo: stopped ({signal.Signals(sig).name})\n")
        code = 0 if sig == signal.SIGTERM else 128 + sig  # the echo server exits 0 on SIGTERM
        self._exited(run, c, code, None if sig == signal.SIGTERM else sig)

    def _on_exit_fd(self, run: PodRun, c: Ctr, gen: int) -> None:
        fd = c.pidfd
        if fd is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
            os.close(fd)
            c.pidfd = None
        if c.gen != gen or c.proc is None:
            return
        rc = c.proc.wait()
        c.proc = None
        if rc < 0:
            self._exited(run, c, 128 - rc, -rc)
        else:
            self._exited(run, c, rc, None)

    def _exited(self, run: PodRun, c: Ctr, code: int, sig: int | None) -> None:
        self._drop_probes(run, c)
        c.state = "terminated"
        c.exit_code = code
        c.signal = sig
        c.started = False
        c.finished_at = _now()
        c.finished_mono = time.monotonic()
        self._after_exit(run, c)

    def _after_exit(self, run: PodRun, c: Ctr) -> None:
        self._mark(run)
        if run.terminating:
            self._maybe_finish(run)
            return
        if c.init:
            if c.exit_code == 0:
                nxt = c.index + 1
                if nxt < len(run.inits):
                    self._start(run, run.inits[nxt])
                else:
                    self._start_main(run)
                return
            if run.policy == "Never":
                run.init_failed = True
                self._finish(run, deleted=False)
                return
            self._restart_later(run, c)
            return
        restart = run.policy == "Always" or (run.policy == "OnFailure" and c.exit_code != 0)
        if restart:
            self._restart_later(run, c)
        elif all(x.state == "terminated" for x in run.ctrs):
            self._finish(run, deleted=False)

    def _restart_later(self, run: PodRun, c: Ctr) -> None:
        bkey = (run.uid, c.name)
        wait = self.backoff.remaining(bkey, c.finished_mono)
        if wait <= 0:
            self._restart(run, c, c.gen)
            return
        c.last_state = {"terminated": c.status(run.uid, False)["state"]["terminated"]}
        c.state, c.reason = "waiting", "CrashLoopBackOff"
        c.message = (f"back-off {_fmt_seconds(self.backoff.current(bkey))} restarting failed container={c.name} "
                     f"pod={run.key[1]}_{run.key[0]}({run.uid})")
        self.recorder.event(run.ref, "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod "
                                                           f"{run.key[1]}_{run.key[0]}({run.uid})")
        gen = c.gen
        self.loop.call_later(wait, self._guard, self._restart, run, c, gen)
        self._mark(run)

    def _restart(self, run: PodRun, c: Ctr, gen: int) -> None:
        if c.gen != gen or run.terminating or run.done or c.running():
            return
        if c.state == "terminated":
            c.last_state = {"terminated": c.status(run.uid, False)["state"]["terminated"]}
        self.backoff.next((run.uid, c.name), run.backoff_base)
        c.restart_count += 1
        self._start(run, c)

    # -- termination -------------------------------------------------------------------------
    def _terminate(self, run: PodRun) -> None:
        if run.terminating or run.done:
            return
        run.terminating = True
        grace = run.grace()
        run.deadline = time.monotonic() + grace
        for c in run.all():
            self._drop_probes(run, c)
            if c.state == "waiting":  # a pending restart will not happen
                c.gen += 1
        running = [c for c in run.all() if c.running()]
        for c in running:
            hook = (c.spec.get("lifecycle") or {}).get("preStop") if not c.init else None
            if hook and grace > 0:
                gen = c.gen
                self._run_action(run, c, hook, grace, lambda ok, msg, c=c, gen=gen: self._pre_stop_done(run, c, gen,
                                                                                                          ok, msg))
            elif grace > 0 and not c.process:
                self._drain(run, c)
            else:
                self._signal(run, c, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            self.loop.call_later(grace, self._guard, self._grace_over, run)
        self._maybe_finish(run)

    def _pre_stop_done(self, run: PodRun, c: Ctr, gen: int, ok: bool, msg: str) -> None:
        if not ok:
            self.recorder.event(run.ref, "Warning", "FailedPreStopHook", f"PreStopHook failed: {msg}")
        if c.gen == gen and c.running():
            if time.monotonic() >= run.deadline:
                self._signal(run, c, signal.SIGKILL)
            elif not c.process:
                self._drain(run, c)
            else:
                self._signal(run, c, signal.SIGTERM)
                if c.process:
                    self.loop.call_later(max(0.0, run.deadline - time.monotonic()), self._guard, self._grace_over, run)

    # The default workload shuts down gracefully: on SIGTERM it keeps serving until every
    # node's kube-proxy has applied the EndpointSlices that show the pod terminating (their
    # metrics files name the resourceVersions applied), then closes its sockets. Bounded by
    # the grace period; immediate without proxies or when the pod backs no Service.
    def _drain(self, run: PodRun, c: Ctr) -> None:
        self._draining.setdefault(run.key, (run, []))[1].append((c, c.gen))
        if not self._drain_armed:
            self._drain_armed = True
            self.loop.call_soon(self._guard, self._drain_tick)

    def _proxies_applied(self) -> int | None:
        """The lowest EndpointSlice resourceVersion applied by every node's proxy (None: no proxies)."""
        low = None
        for node in self.plan.nodes:
            try:
                with open(os.path.join(state.directory(self.plan.cluster), f"proxy-{node.name}.json")) as f:
                    m = json.load(f)
            except (OSError, ValueError):
                continue
            if m.get("stopped"):
                continue
            rv = int((m.get("applied_resource_versions") or {}).get("EndpointSlice", 0) or 0)
            if not (m.get("last_sync") or {}).get("ok"):
                rv = 0
            low = rv if low is None else min(low, rv)
        return low

    def _drain_tick(self) -> None:
        applied = self._proxies_applied() if self._draining else None
        slices: list[dict] = []
        if self._draining and applied is not None:
            try:
                slices, _ = self.store.list("EndpointSlice")
            except Exception:  # noqa: BLE001
                slices = []
        for key, (run, ctrs) in list(self._draining.items()):
            live = [(c, g) for c, g in ctrs if c.gen == g and c.running()]
            done = applied is None or run.done
            if not done:
                need, pending = 0, False
                for sl in slices:
                    for e in sl.get("endpoints") or []:
                        if run.plan.ip in (e.get("addresses") or []) and \
                                ((e.get("targetRef") or {}).get("uid") in (None, run.uid)):
                            if not (e.get("conditions") or {}).get("terminating"):
                                pending = True  # the endpoint controller has not caught up yet
                            need = max(need, int(sl["metadata"].get("resourceVersion") or 0))
                done = not pending and applied >= need
            if done or not live:
                del self._draining[key]
                for c, _ in live:
                    self._signal(run, c, signal.SIGTERM)
        if self._draining:
            self.loop.call_later(0.05, self._guard, self._drain_tick)
        else:
            self._drain_armed = False

    def _grace_over(self, run: PodRun) -> None:
        for c in run.all():
            if c.running():
                self._signal(run, c, signal.SIGKILL)

    def _maybe_finish(self, run: PodRun) -> None:
        if not run.done and not any(c.running() for c in run.all()):
            self._finish(run, deleted=True)

    def _finish(self, run: PodRun, deleted: bool) -> None:
        if run.done:
            return
        run.done = True
        for c in run.all():
            self._drop_probes(run, c)
            self.backoff.forget((run.uid, c.name))
        if not deleted:
            self._write(run)  # the terminal phase
        self._dirty.pop(run.key, None)
        if self.runs.get(run.key) is run:
            del self.runs[run.key]
        self.on_done(run.key, run.uid)

    # -- actions (probes and hooks) in worker threads ----------------------------------------
    def _run_action(self, run: PodRun, c: Ctr, handler: dict, timeout: float, done) -> None:
        """Run an exec/httpGet/tcpSocket/sleep handler off the loop; ``done(ok, message)`` on the loop."""
        p = run.plan
        if isinstance(handler.get("exec"), dict):
            argv = [str(a) for a in handler["exec"].get("command") or []]
            env = container_env(run.pod, c.spec, p.ip, run.node_ip)
            fut = self._exec.submit_in(p.netns, prober.run_exec, argv, timeout, env)
        elif isinstance(handler.get("httpGet"), dict):
            h = handler["httpGet"]
            port = prober.resolve_port(h.get("port"), c.spec)
            headers = {x.get("name"): x.get("value", "") for x in h.get("httpHeaders") or [] if x.get("name")}
            fut = self._exec.submit_in(self.node_netns[p.node], prober.http_get, h.get("host") or p.ip, port or 0,
                                       h.get("path") or "/", timeout, headers)
        elif isinstance(handler.get("tcpSocket"), dict):
            h = handler["tcpSocket"]
            port = prober.resolve_port(h.get("port"), c.spec)
            fut = self._exec.submit_in(self.node_netns[p.node], prober.tcp_connect, h.get("host") or p.ip, port or 0,
                                       timeout)
        elif isinstance(handler.get("sleep"), dict):
            secs = float(handler["sleep"].get("seconds") or 0)
            self.loop.call_later(min(secs, timeout), self._guard, done, True, "")
            return
        else:
            self.loop.call_soon(self._guard, done, False, "unsupported handler")
            return

        def finished(f) -> None:
            try:
                ok, msg = f.result()
            except Exception as exc:  # noqa: BLE001
                ok, msg = False, str(exc)
            self.call(done, ok, msg)
        fut.add_done_callback(finished)

    def _arm_probes(self) -> None:
        due = self.scheduler.next_due()
        if due is None or (self._probe_due is not None and self._probe_due <= due):
            return
        if self._probe_timer is not None:
            self._probe_timer.cancel()
        self._probe_due = due
        self._probe_timer = self.loop.call_at(self._loop_time(due), self._guard, self._probe_tick)

    def _loop_time(self, mono: float) -> float:
        return self.loop.time() + (mono - time.monotonic())

    def _probe_tick(self) -> None:
        self._probe_timer = None
        self._probe_due = None
        for pid in self.scheduler.due(time.monotonic()):
            entry = self._probe_index.get(pid)
            if entry is None:
                self.scheduler.remove(pid)
                continue
            run, c, kind, gen = entry
            ps = c.probes.get(kind)
            if ps is None or c.gen != gen or not c.running():
                continue
            self.probes_run += 1
            self._run_action(run, c, {ps.spec.action: ps.spec.handler},
                             ps.spec.timeout, lambda ok, msg, run=run, c=c, kind=kind, gen=gen:
                             self._probe_result(run, c, kind, gen, ok, msg))
        self._arm_probes()

    def _probe_result(self, run: PodRun, c: Ctr, kind: str, gen: int, ok: bool, msg: str) -> None:
        ps = c.probes.get(kind)
        if ps is None or c.gen != gen or not c.running():
            return
        if not ok:
            self.recorder.event(run.ref, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {msg}")
        if not ps.observe(ok, msg):
            return
        if kind == "readiness":
            self._mark(run)
        elif kind == "liveness" and not ps.result and not run.terminating:
            self.recorder.event(run.ref, "Normal", "Killing",
                                f"Container {c.name} failed liveness probe, will be restarted")
            self._signal(run, c, signal.SIGTERM if c.process else signal.SIGKILL)
            if c.process:
                self.loop.call_later(run.grace() if run.grace() > 0 else 0, self._guard, self._kill_if, run, c, c.gen)

    def _kill_if(self, run: PodRun, c: Ctr, gen: int) -> None:
        if c.gen == gen and c.running():
            self._signal(run, c, signal.SIGKILL)

    # -- status --------------------------------------------------------------------------------
    def _mark(self, run: PodRun) -> None:
        if run.done:
            return
        self._dirty[run.key] = run
        if not self._flush_armed:
            self._flush_armed = True
            self.loop.call_soon(self._guard, self._flush)

    def _flush(self) -> None:
        self._flush_armed = False
        dirty, self._dirty = self._dirty, {}
        for run in dirty.values():
            if not run.done:
                self._write(run)

    def _write(self, run: PodRun) -> None:
        st = run.status()
        if st == run.last_status:
            return
        ns, name = run.key
        try:
            self.store.patch(POD, ns, name, {"metadata": {"uid": run.uid}, "status": st}, subresource="status")
            run.last_status = st
        except Exception as exc:  # noqa: BLE001 - gone, or replaced by a pod of the same name
            log.debug("status of %s/%s: %s", ns, name, exc)


def _kill_netns_processes(name: str) -> None:
    """Processes left in a pod's namespace by a previous control plane (adoption restarts them)."""
    ino = netns.inode(name)
    if ino is None:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass


# ==========================================================================================
# the controller
# ==========================================================================================


class Kubelet(Controller):
    name = "kubelet"
    component = "kubelet"
    kinds = (POD,)

    def __init__(self, store: Any, plan: Plan, workloads: Any, runner: netns.Runner, stop=None, *, recorder=None,
                 backoff_base: float | None = None):
        super().__init__(store, stop, recorder=recorder)
        self.plan = plan
        self.workloads = workloads
        self.runner = runner
        self.nodes = {n.name for n in plan.nodes}
        self.ipam = {n.name: HostLocal(ipaddress.IPv4Network(n.pod_cidr)) for n in plan.nodes}
        self.running: dict[tuple, PodPlan] = {}
        self.uids: dict[tuple, str] = {}
        self.finished: set[str] = set()  # uids whose containers ran to the end (never recreated)
        self._done_lock = threading.Lock()
        self._done: list[tuple[tuple, str]] = []
        if backoff_base is None:
            try:
                backoff_base = float(os.environ.get("TESTBED_KUBELET_BACKOFF_SECONDS", "10"))
            except ValueError:
                backoff_base = 10.0
        self.runtime = PodRuntime(store, plan, workloads, self.recorder, self._pod_done, backoff_base=backoff_base)

    def run(self) -> None:
        self.runtime.start()
        try:
            super().run()
        finally:
            self.runtime.stop()

    # -- events ------------------------------------------------------------------------------
    def _node_of(self, pod: dict | None) -> str | None:
        if pod is None:
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        return node if node in self.nodes else None

    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        if own:
            return
        if self._node_of(new) or self._node_of(old):
            self.mark(key_of(new or old))

    def _apply(self, kind: str, typ: str, obj: dict | None) -> None:
        if kind == _LOCAL:
            self.mark(("", "\0done"))  # a wake-up: the finished pods are in self._done
            return
        super()._apply(kind, typ, obj)

    def _pod_done(self, key: tuple, uid: str) -> None:
        """Called on the runtime's thread when a pod's containers are all stopped for good."""
        with self._done_lock:
            self._done.append((key, uid))
        self._inbox.put((_LOCAL, "done", None))

    def on_synced(self) -> None:
        """Adopt pods whose namespaces survived a restart of the control plane; remove orphans."""
        known = set()
        adopt = []
        for pod in self.caches[POD].values():
            node = self._node_of(pod)
            ip = (pod.get("status") or {}).get("podIP")
            if not node or not ip:
                continue
            p = pod_plan(self.plan, pod)
            known.add(p.netns)
            if netns.exists(p.netns) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self.ipam[node].allocated[ip] = f"{p.namespace}/{p.name}"
                adopt.append((pod, p, True))
                self.running[key_of(pod)] = p
                self.uids[key_of(pod)] = pod["metadata"].get("uid", "")
        if adopt:
            self.runtime.run_pods(adopt)
        static = {p.netns for p in self.plan.pods}
        orphans = [n for n in netns.list_names(naming.cluster_prefix(self.plan.cluster) + "pod.")
                   if n not in known and n not in static]
        for name in orphans:
            netns.delete(name)
        if adopt or orphans:
            log.info("kubelet: adopted %d pods, removed %d orphaned namespaces", len(adopt), len(orphans))

    # -- reconcile in batches -------------------------------------------------------------------
    def _process_dirty(self) -> None:
        self.batches += 1
        keys = list(self._dirty)
        self._dirty.clear()
        with self._done_lock:
            done, self._done = self._done, []
        create = []
        for key in keys:
            pod = self.caches[POD].get(key)
            uid = pod["metadata"].get("uid") if pod else None
            if key in self.running:
                if pod is None or uid != self.uids.get(key):
                    self.runtime.force_stop(key)  # removed without grace (or replaced): stop now
                else:
                    self.runtime.update(pod)
                continue
            if pod is None:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                self._finalize(pod)  # never started here
            elif uid in self.finished or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            elif self._node_of(pod):
                create.append(pod)
        if done:
            self._remove(done)
        if create:
            self._create(create)

    def _remove(self, done: list[tuple[tuple, str]]) -> None:
        items = [(key, uid) for key, uid in done if key in self.running and self.uids.get(key) == uid]
        plans = [self.running.pop(key) for key, _ in items]
        for key, uid in items:
            self.uids.pop(key, None)
            self.finished.add(uid)
        if plans:
            topology.remove_pods(self.plan, plans, self.runner)
        for p in plans:
            self.ipam[p.node].release(p.ip)
        for (key, uid), p in zip(items, plans):
            pod = self.caches[POD].get(key)
            ref = pod or {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": key[0], "name": key[1]}}
            self.recorder.event(ref, "Normal", "Killing", f"Stopped the containers and removed the pod network "
                                                          f"{p.ip} ({p.netns})")
            if pod is not None and pod["metadata"].get("uid") == uid and pod["metadata"].get("deletionTimestamp"):
                self._finalize(pod)
            elif pod is not None and pod["metadata"].get("uid") != uid:
                self.mark(key)  # a new pod of the same name waits for this one's namespace

    def _finalize(self, pod: dict) -> None:
        m = pod["metadata"]
        try:
            self.store.delete(POD, m.get("namespace"), m["name"], grace_seconds=0, uid=m.get("uid"))
        except Exception as exc:  # already gone
            log.debug("finalize %s: %s", m["name"], exc)

    _neigh_warned = False

    def _check_neighbour_limit(self, pods: int, example: dict | None) -> None:
        """The ARP table limits are host-wide: say so once when this many pods may exceed them."""
        if self._neigh_warned or example is None:
            return
        problem = hostsettings.neighbour_limit_problem(pods, len(self.plan.nodes), len(self.plan.externals))
        if problem:
            self._neigh_warned = True
            log.warning("kubelet: %s", problem)
            self.recorder.event(example, "Warning", "NeighbourTableLimit",
                                problem.replace("Pass --raise-neigh-limits", "Bring the cluster up with --raise-neigh-limits"))

    def _create(self, pods: list[dict]) -> None:
        plans = []
        for pod in pods:
            node = self._node_of(pod)
            try:
                ip = self.ipam[node].allocate(f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}")
            except RangeFull as exc:
                self.recorder.event(pod, "Warning", "FailedCreatePodSandBox", str(exc))
                continue
            plans.append((pod, pod_plan(self.plan, pod, ip)))
        self._check_neighbour_limit(len(self.running) + len(plans), plans[0][0] if plans else None)
        try:
            topology.add_pods(self.plan, [p for _, p in plans], self.runner)
            failed: list = []
        except Exception:  # one bad pod must not stop the others: retry one by one
            log.exception("kubelet: batch of %d pods failed; retrying one by one", len(plans))
            topology.remove_pods(self.plan, [p for _, p in plans], self.runner)
            failed = []
            for pod, p in plans:
                try:
                    topology.add_pods(self.plan, [p], self.runner)
                except Exception as exc:  # noqa: BLE001
                    topology.remove_pods(self.plan, [p], self.runner)
                    failed.append((pod, p, exc))
        bad = {id(pod) for pod, _, _ in failed}
        for pod, p, exc in failed:
            self.ipam[p.node].release(p.ip)
            self.recorder.event(pod, "Warning", "FailedCreatePodSandBox", f"creating the pod network: {exc}")
            self.requeue_after(key_of(pod), 1.0)
        started = []
        for pod, p in plans:
            if id(pod) in bad:
                continue
            self.running[key_of(pod)] = p
            self.uids[key_of(pod)] = pod["metadata"].get("uid", "")
            started.append((pod, p, False))
        if started:
            self.runtime.run_pods(started)

    def reconcile(self, key) -> None:  # not used: _process_dirty handles keys in batches
        pass
