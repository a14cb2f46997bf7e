"""What the kubelet reports: one container (:class:`Ctr`) and one pod (:class:`PodRun`) as
their status in the API shows them, kept up to date by the runtime."""

from __future__ import annotations

import datetime as _dt

from .. import exec as ex
from . import prober
from .plan import ANN_BACKOFF, ANN_KILL, ANN_READY, PROCESS_KINDS, PodPlan, program_for


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_seconds(s: float) -> str:
    if s >= 60 and s % 60 == 0:
        return f"{int(s // 60)}m0s"
    if s >= 60:
        return f"{int(s // 60)}m{s % 60:g}s"
    return f"{s:g}s"



class Ctr:
    """One container of a pod (spec + what is running now + what it reports)."""

    def __init__(self, spec: dict, index: int, init: bool):
        self.spec = spec
        self.index = index
        self.init = init
        self.name = spec.get("name") or f"c{index}"
        self.program = program_for(spec)
        self.argv = list(self.program.argv)
        self.process = self.program.kind in PROCESS_KINDS
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
        self.proc: ex.Popen | None = None
        self.pidfd: int | None = None
        self.sync_fd: int | None = None  # readable when the container's program has been exec'd
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
        self.start_time = now()
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
        stamp = now()
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
                self.cond_times[t] = (s, stamp)
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
