"""The container runtime: every container of every pod, run from one event-loop thread.

Timers for probes, restart back-off and grace periods sit in heaps; process exits are watched
through pidfds; probes and hooks run in a small pool of workers that enter the pods'
namespaces. How a container's program is started and stopped is the job of its launcher
(``workloads.py``), chosen by ``plan.program_for``; this module only runs the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from typing import Any

from .. import cgroups, exec, netns, sandbox as sandbox_proc, state
from ..controllers.base import key_of
from ..plan import Plan, PodPlan
from . import prober, sandbox
from .plan import ANN_KILL, ANN_READY, container_env, previous_log
from .status import Ctr, PodRun, fmt_seconds, now
from .workloads import launchers

log = logging.getLogger(__name__)
POD = "Pod"


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
        self.launchers = launchers(self)
        self.last_cap = sandbox_proc.last_cap()

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
            for run in self.runs.values():  # leave processes to the next kubelet (re-attached) or to down
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
        cluster = self.plan.cluster
        cgroups.create([cgroups.cluster_path(cluster)]
                       + [sandbox.pod_cgroup(cluster, p.namespace, p.name) for _, p, _ in items])
        for pod, p, adopted in items:
            run = PodRun(pod, p, self.node_ips.get(p.node, ""))
            self.runs[run.key] = run
            if adopted:
                self._adopt_status(run)
                if self._reattach(run):
                    if pod["metadata"].get("deletionTimestamp"):
                        self._terminate(run)
                    self._mark(run)
                    continue
                # a pod that cannot be taken over as a whole is started again
                cgroups.kill(sandbox.pod_cgroup(cluster, p.namespace, p.name))
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(run)
                continue
            if run.inits:
                self._start(run, run.inits[0])
            else:
                self._start_main(run)
            self._mark(run)

    def _reattach(self, run: PodRun) -> bool:
        """Take over a pod an earlier kubelet of this node ran: every container process whose
        sandbox still runs is watched again (its exit status comes from the file the sandbox
        writes), the default workload's ports are served again by this process, probes start
        over. False (nothing taken over) when its init containers had not completed or one of its
        container processes is gone."""
        if not run.init_done:
            return False
        found = {}
        for c in run.ctrs:
            if c.process:
                pid = sandbox.running_sandbox(self.container_cgroup(run, c))
                if pid is None:
                    return False
                found[c.name] = pid
        reported = {s.get("name"): s for s in (run.pod.get("status") or {}).get("containerStatuses") or []}
        for c in run.ctrs:
            if c.name not in found:
                self._start(run, c)
                continue
            c.gen += 1
            c.ever_ran = True
            c.state, c.reason = "running", ""
            c.started_at = (((reported.get(c.name) or {}).get("state") or {}).get("running") or {}).get(
                "startedAt") or now()
            try:
                self.launchers[c.program.kind].adopt(run, c, found[c.name])
            except OSError:  # it exited a moment ago
                rc, c.proc = c.proc.wait(), None
                self.exited(run, c, 128 - rc if rc < 0 else rc, -rc if rc < 0 else None)
                continue
            self._up(run, c)
        log.info("kubelet: re-attached pod %s/%s (%d container processes)", *run.key, len(found))
        return True

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

    def sandbox_spec(self, run: PodRun, c: Ctr, binds: list[tuple[str, str]] = ()) -> str:
        """Write the pod's files and the container's sandbox spec; the spec file's path."""
        return sandbox.prepare(self.plan, run.pod, run.plan.ip, c.spec, self.last_cap, binds)

    def container_cgroup(self, run: PodRun, c: Ctr) -> str:
        return sandbox.container_cgroup(self.plan.cluster, run.key[0], run.key[1], c.name)

    def log_file(self, run: PodRun, c: Ctr) -> str:
        ns, name = run.key
        return os.path.join(self.log_dir, f"{ns}_{name}_{c.name}.log")

    def watch_exit(self, run: PodRun, c: Ctr) -> None:
        """Learn of the exit of a container's process from its pidfd, on the loop."""
        self.loop.add_reader(c.pidfd, self._on_exit_fd, run, c, c.gen)

    def _start(self, run: PodRun, c: Ctr) -> None:
        if run.terminating or run.done:
            return
        c.gen += 1
        c.killed = 0
        c.exit_code = c.signal = None
        c.message = ""
        c.started = False
        c.started_at = now()
        c.ever_ran = True
        try:
            what = self.launchers[c.program.kind].start(run, c)
        except Exception as exc:  # noqa: BLE001 - e.g. command not found
            if isinstance(exc, exec.CommandError) and exc.cause is not None:
                exc = exc.cause  # the runtime's reason ("No such file ..."), not our wrapper's line
            c.state = "terminated"
            c.exit_code = 128
            c.message = str(exc)
            c.finished_at = now()
            c.finished_mono = time.monotonic()
            self.recorder.event(run.ref, "Warning", "Failed", f"Error: failed to start container {c.name!r}: {exc}")
            self._after_exit(run, c)
            return
        if c.sync_fd is not None:  # running once the program is exec'd in its sandbox
            self.loop.add_reader(c.sync_fd, self._guard, self._created, run, c, c.gen, what)
            if c.restart_count == 0:  # a restart keeps showing its back-off until it runs, as upstream
                c.state, c.reason = "waiting", "ContainerCreating"
                self._mark(run)
            return
        self._running(run, c, what)

    def _created(self, run: PodRun, c: Ctr, gen: int, what: str) -> None:
        fd, c.sync_fd = c.sync_fd, None
        if fd is None:
            return
        self.loop.remove_reader(fd)
        try:
            failure = os.read(fd, 4096).decode(errors="replace").strip()
        finally:
            os.close(fd)
        if c.gen != gen or c.proc is None:
            return  # it has exited already: the exit is reported
        if failure:
            c.message = failure  # the exit, through the pidfd, follows
            return
        if run.terminating or run.done:
            with contextlib.suppress(OSError):
                cgroups.kill_async(self.container_cgroup(run, c))
            return
        self._running(run, c, what)

    def _running(self, run: PodRun, c: Ctr, what: str) -> None:
        c.state = "running"
        c.reason = ""
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
        """Stop a running container: its launcher delivers the signal (see ``workloads.py``)."""
        if not c.running():
            return
        c.killed = sig
        self.launchers[c.program.kind].signal(run, c, sig)

    def _on_exit_fd(self, run: PodRun, c: Ctr, gen: int) -> None:
        fd = c.pidfd
        if fd is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
            os.close(fd)
            c.pidfd = None
        if c.gen != gen or c.proc is None:
            return
        if c.sync_fd is not None:  # exited before (or instead of) running its program
            with contextlib.suppress(Exception):
                self.loop.remove_reader(c.sync_fd)
            with contextlib.suppress(OSError):
                c.message = c.message or os.read(c.sync_fd, 4096).decode(errors="replace").strip()
            os.close(c.sync_fd)
            c.sync_fd = None
        rc = c.proc.wait()
        c.proc = None
        if rc < 0:
            self.exited(run, c, 128 - rc, -rc)
        else:
            self.exited(run, c, rc, None)

    def exited(self, run: PodRun, c: Ctr, code: int, sig: int | None) -> None:
        self._drop_probes(run, c)
        c.state = "terminated"
        c.exit_code = int(code)
        c.signal = int(sig) if sig is not None else None  # a signal.Signals fails the API's type check
        c.started = False
        c.finished_at = now()
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
        c.message = (f"back-off {fmt_seconds(self.backoff.current(bkey))} restarting failed container={c.name} "
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
        with contextlib.suppress(FileNotFoundError):  # the new instance logs afresh; logs --previous reads this
            os.replace(self.log_file(run, c), previous_log(self.log_file(run, c)))
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
            elif grace > 0 and self.launchers[c.program.kind].drains:
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
            elif self.launchers[c.program.kind].drains:
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
        try:  # the container's main processes are gone; whatever they started goes with the pod
            sandbox.remove(self.plan.cluster, *run.key)
        except (OSError, TimeoutError) as exc:
            log.warning("pod %s/%s: %s", *run.key, exc)
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
            spec = sandbox.spec_path(self.plan.cluster, *run.key, c.name)
            wrapped = argv
            if argv:
                spec = spec if os.path.exists(spec) else self.sandbox_spec(run, c)
                wrapped = sandbox.exec_argv(spec, self.container_cgroup(run, c), argv)
            fut = self._exec.submit_in(p.netns, prober.run_exec, wrapped, timeout, env, argv)
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
        todo = []
        for run in dirty.values():
            if not run.done:
                st = run.status()
                if st != run.last_status:
                    todo.append((run, st))
        pipelined = getattr(self.store, "patch_pipelined", None)
        if len(todo) < 2 or pipelined is None:
            for run, st in todo:
                self._write(run, st)
            return
        # a burst of pods (a batch started together) is written in one request stream: one
        # round trip per window, not per pod, with the runtime's loop waiting on it
        done = 0
        try:
            for (run, st), out in zip(todo, pipelined([(POD, *run.key, self._status_patch(run, st), "status")
                                                       for run, st in todo])):
                done += 1
                if isinstance(out, Exception):
                    self._write_failed(run, out)
                else:
                    run.last_status = st
        except Exception as exc:  # noqa: BLE001 - the API went away: each is written again later
            for run, _ in todo[done:]:
                self._write_failed(run, exc)

    @staticmethod
    def _status_patch(run: PodRun, st: dict) -> dict:
        return {"metadata": {"uid": run.uid}, "status": st}

    def _write(self, run: PodRun, st: dict | None = None) -> None:
        st = run.status() if st is None else st
        if st == run.last_status:
            return
        ns, name = run.key
        try:
            self.store.patch(POD, ns, name, self._status_patch(run, st), subresource="status")
            run.last_status = st
        except Exception as exc:  # noqa: BLE001 - gone, or replaced by a pod of the same name
            self._write_failed(run, exc)

    def _write_failed(self, run: PodRun, exc: Exception) -> None:
        log.debug("status of %s/%s: %s", *run.key, exc)
        if not 400 <= (getattr(exc, "code", 0) or 0) < 500:
            # the API is away (the control plane restarts): the status is written again when
            # it is back, as a kubelet's status manager keeps retrying
            self.loop.call_later(1.0, self._guard, self._mark, run)
