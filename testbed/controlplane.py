"""Start and stop a cluster's control-plane process (testbed.daemon) and talk to it."""

from __future__ import annotations

import os
import select
import sys
import threading
import time

from . import cgroups, exec, failpoints, state, teardown
from .apiserver.client import ApiClient
from .errors import TestbedError


def socket_path(cluster: str) -> str:
    return os.path.join(state.directory(cluster), "api.sock")


def slowdown() -> float:
    """``$TESTBED_SLOWDOWN`` (default 1): how many times slower than a native host this one runs
    (the kernel lane's emulated VM sets it); start-up waits are multiplied by it, so that they
    stay bounds on a broken start rather than on a slow one."""
    raw = os.environ.get("TESTBED_SLOWDOWN", "1")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value >= 1:
        raise TestbedError(f"$TESTBED_SLOWDOWN: {raw!r}; allowed: a number >= 1")
    return value


def start(cluster: str, timeout: float = 60.0) -> int:
    """Start the daemon detached from the caller; return once its API answers."""
    timeout *= slowdown()
    d = state.directory(cluster)
    r, w = os.pipe()
    log = state.open_private(os.path.join(d, "control-plane.log"), "ab")
    try:
        p = exec.popen([sys.executable, "-m", "testbed.daemon", "--cluster", cluster, "--ready-fd", str(w)],
                       pass_fds=(w,), stdout=log, stderr=exec.STDOUT, env=_child_env(cluster),
                       # everything the daemon and its children write in the state directory
                       # (store, logs, metrics) is then private without each writer asking
                       umask=0o077)
    finally:
        log.close()
        os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout)
        line = os.read(r, 64) if ready else b""
    finally:
        os.close(r)
    if line.strip() != b"ready":
        teardown.stop_pid(p.pid, timeout=2)
        tail = _tail(os.path.join(d, "control-plane.log"))
        raise TestbedError(f"the control plane of {cluster} did not start"
                           f"{' in time' if not line else ''}; its log ends with:\n{tail}")
    # a crash here leaves a running daemon whose pid nobody saved: ``down`` finds it by its cgroup
    failpoints.hit("control-plane-ready")
    state.update_pids(cluster, {"control-plane": p.pid})
    return p.pid


def _child_env(cluster: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV}
    env["TESTBED_CLUSTER"] = cluster
    # glibc's malloc for every object, not CPython's arenas: the store holds a large cluster's
    # objects for a while (100k endpoints in EndpointSlices, their watch history) among objects
    # that live on (Events), and an arena (1 MiB) goes back to the kernel only when all of it is
    # free: 270 of them stayed, a third in use, after such a load was deleted. malloc_trim gives
    # back any free page (``heap.give_back`` after the history lets objects go). The price is
    # CPU: glibc's malloc is ~40 % slower on the daemon's object churn (README, convergence).
    env["PYTHONMALLOC"] = "malloc"
    return env


def stop(cluster: str) -> None:
    """Stop the daemon found in the control plane's cgroup (its saved pid may never have been
    written: ``up`` can die between the daemon's "ready" and saving it)."""
    for pid in daemon_pids(cluster):
        teardown.stop_pid(pid)


def daemon_pids(cluster: str) -> list[int]:
    cg = cgroups.path(cluster, cgroups.CONTROL_PLANE)
    try:
        with open(os.path.join(cg, "cgroup.procs")) as f:
            pids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"testbed.daemon" in f.read().split(b"\0"):
                    out.append(pid)
        except OSError:
            continue
    return out


def client(cluster: str) -> ApiClient:
    path = socket_path(cluster)
    if not os.path.exists(path):
        try:
            with_control_plane = state.read_json(cluster, "plan.json").get("control_plane", True)
        except (OSError, ValueError):
            with_control_plane = True
        if not with_control_plane:
            raise TestbedError(f"cluster {cluster} was built with --no-control-plane: it has no API server"
                               f" (testbed ls and exec work on its namespaces)")
        raise TestbedError(f"the control plane of cluster {cluster} is not running (no {path}); "
                           f"restart it with: testbed restart {cluster}")
    return ApiClient(path)


def wait_pods_running(api, keys: set[tuple[str, str]], timeout: float = 60.0) -> None:
    """Block (on a watch, no polling) until the given pods are Running with an IP. Each event
    updates the set still waited for (testing every pod on every event was quadratic: a third
    of ``up``'s own CPU at 1,000 pods)."""
    if not keys:
        return

    def running(p: dict) -> bool:
        st = p.get("status") or {}
        return st.get("phase") == "Running" and bool(st.get("podIP"))

    def key(p: dict) -> tuple[str, str]:
        return p["metadata"].get("namespace", "default"), p["metadata"]["name"]

    deadline = time.monotonic() + timeout
    waiting = set(keys)
    while time.monotonic() < deadline:
        items, rv = api.list("Pod")
        waiting = set(keys) - {key(p) for p in items if running(p)}
        if not waiting:
            return
        w = api.watch("Pod", None, rv)
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), w.stop)
        timer.daemon = True
        timer.start()
        try:
            for ev in w:
                if ev.get("type") == "ERROR":  # e.g. 410 Gone: list again
                    break
                obj = ev["object"]
                k = key(obj)
                if k not in keys:
                    continue
                if ev["type"] != "DELETED" and running(obj):
                    waiting.discard(k)
                    if not waiting:
                        return
                else:
                    waiting.add(k)
        finally:
            timer.cancel()
            w.stop()
    names = sorted("/".join(k) for k in waiting)
    raise TestbedError(f"pods did not become Running within {timeout:.0f}s: {len(names)} not Running "
                       f"with an IP: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")
    except OSError:
        return "(no log)"
