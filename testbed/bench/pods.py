"""Benchmark: ``testbed up``/``down`` of N nodes x M pods of the default workload, until every pod
is Running and Ready, with the time at which each stage ended (see scripts/bench/pods; needs root).

Stages, in seconds since ``up`` started: the topology (underlay and nodes), the control plane
answering, the API writes of the scenario's pods, every pod scheduled (``spec.nodeName``), every
pod's namespace built (``status.podIP``), every container running (``Running``), every pod
``Ready``; then ``down``. ``--tree NAME=PATH`` runs the same measurement with another checkout's
code (e.g. ``before=/work/main``), alternating the trees run by run so that a loaded machine
weighs on each alike. Imports are absolute, so this file runs against any checkout's package.
Each run starts on an idle host (``settle``: the kernel has freed the previous run's namespaces);
``--back-to-back`` starts it right after the previous ``down`` instead.

CPU seconds of each part, from ``up`` until every pod is Ready (the cgroups' own accounting, so
they hold on a machine loaded by other work, where the wall times above swing 2-4x): the
kubelets, the kube-proxies, the control plane (the daemon) and ``up`` itself (this process).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

STAGES = ("topology", "control plane", "API writes", "scheduled", "namespaces", "running", "ready", "up", "down")
CPU = ("cpu kubelets", "cpu kube-proxies", "cpu control plane", "cpu up")


def cgroup_cpu(cluster: str) -> dict[str, float]:
    """CPU seconds so far of the cluster's kubelets, kube-proxies and control plane (summed over
    their cgroups, ``cpu.stat`` ``usage_usec``: kept by the kernel whether or not the cpu
    controller is enabled) and of this process."""
    from testbed import cgroups

    out = dict.fromkeys(CPU, 0.0)
    base = cgroups.cluster_path(cluster)
    for name in os.listdir(base):
        part = ("cpu kubelets" if name.startswith("kubelet.") else "cpu kube-proxies" if name.startswith("proxy.")
                else "cpu control plane" if name == cgroups.CONTROL_PLANE else None)
        if part is None:
            continue
        with open(os.path.join(base, name, "cpu.stat")) as f:
            usec = next(int(line.split()[1]) for line in f if line.startswith("usage_usec "))
        out[part] += usec / 1e6
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu up"] = ru.ru_utime + ru.ru_stime
    return out


def scenario(name: str, nodes: int, pods: int) -> dict:
    manifests = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "labels": {"app": "bench"}},
                  "spec": {"containers": [{"name": "echo", "image": "testbed/echo:v1",
                                           "ports": [{"containerPort": 8080}]}]}} for i in range(pods)]
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
            "spec": {"nodes": nodes, "proxyMode": "iptables"}, "manifests": manifests}


class _PodStages:
    """Follows the Pods through a watch and notes when all ``n`` reached each stage."""

    def __init__(self, api, n: int, t0: float):
        self.api, self.n, self.t0 = api, n, t0
        self.at: dict[str, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _stages(p: dict) -> set[str]:
        st = p.get("status") or {}
        out = set()
        if (p.get("spec") or {}).get("nodeName"):
            out.add("scheduled")
        if st.get("podIP"):
            out.add("namespaces")
        if st.get("phase") == "Running":
            out.add("running")
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []):
            out.add("ready")
        return out

    def _run(self) -> None:
        # counted incrementally per event: re-reading every pod on each event would make the
        # watcher, not the cluster, the slow part
        have: dict[tuple, set[str]] = {}
        count = dict.fromkeys(("scheduled", "namespaces", "running", "ready"), 0)

        def apply(obj: dict, deleted: bool = False) -> None:
            m = obj["metadata"]
            key = (m.get("namespace"), m["name"])
            new = set() if deleted else self._stages(obj)
            old = have.get(key, set())
            for s in new - old:
                count[s] += 1
            for s in old - new:
                count[s] -= 1
            have[key] = new
            now = time.perf_counter() - self.t0
            for s, n in count.items():
                if n >= self.n and s not in self.at:
                    self.at[s] = now

        try:
            items, rv = self.api.list("Pod")
            for p in items:
                apply(p)
            if len(self.at) < 4:
                w = self.api.watch("Pod", None, rv)
                timer = threading.Timer(600, w.stop)
                timer.daemon = True
                timer.start()
                for ev in w:
                    apply(ev["object"], ev["type"] == "DELETED")
                    if len(self.at) == 4:
                        break
                timer.cancel()
                w.stop()
        finally:
            self.done.set()


def run_once(name: str, nodes: int, pods: int) -> dict:
    from testbed import controlplane
    from testbed.cluster import Cluster
    from testbed.scenario import parse

    at: dict[str, float] = {}
    watcher: list[_PodStages] = []
    t0 = time.perf_counter()

    def progress(stage: str, i: int, n: int) -> None:
        now = time.perf_counter() - t0
        if stage in ("underlay", "nodes"):
            at["topology"] = now
        elif stage == "control plane" and i == n:
            at["control plane"] = now
            w = _PodStages(controlplane.client(name), pods, t0)
            w.thread.start()
            watcher.append(w)
        elif stage == "manifests" and i == n:
            at["API writes"] = now

    c = Cluster.up(parse(scenario(name, nodes, pods)), raise_neigh_limits=True, progress=progress, timeout=600)
    at["up"] = time.perf_counter() - t0
    try:
        watcher[0].done.wait(600)
        at.update(watcher[0].at)
        watcher[0].api.close()
        at.update(cgroup_cpu(name))
    finally:
        t1 = time.perf_counter()
        c.down()
        at["down"] = time.perf_counter() - t1
    return at


def _env(tree: str, pycache: str) -> dict:
    """The environment of a run with ``tree``'s code. Bytecode is cached (under *pycache*, never
    in the tree) whatever the caller's PYTHONDONTWRITEBYTECODE says: otherwise every process
    ``up`` starts (daemon, a kubelet and a kube-proxy per node) compiles its modules again, a
    cost an installed testbed does not have."""
    env = {**os.environ, "PYTHONPATH": tree, "PYTHONPYCACHEPREFIX": pycache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _child(tree: str, name: str, nodes: int, pods: int, pycache: str) -> dict:
    """One run with the code of ``tree`` (a checkout of the repository), in a process of its own."""
    env = _env(tree, pycache)
    code = (f"import json, runpy; m = runpy.run_path({__file__!r}, run_name='bench'); "
            f"print(json.dumps(m['run_once']({name!r}, {nodes}, {pods})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the run with {tree} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)  # all but idle and iowait; all


def settle(quiet: float = 0.5, below: float = 0.1, limit: float = 15.0) -> float:
    """Wait until the host's CPUs were less than ``below`` busy for ``quiet`` seconds (at most
    ``limit``); the seconds waited. ``down`` returns once the namespaces are unmounted, and the
    kernel frees them (1,000 pods' worth: ~1 CPU-second) in the background afterwards: a run
    started at once would measure that too."""
    t0 = time.monotonic()
    prev = _busy()
    while time.monotonic() - t0 < limit:
        time.sleep(quiet)
        cur = _busy()
        if (cur[0] - prev[0]) < below * max(1, cur[1] - prev[1]):
            break
        prev = cur
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                    help="also measure this checkout (repeatable); this one is 'this'")
    ap.add_argument("--back-to-back", action="store_true",
                    help="start each run right after the previous one's down, while the kernel is "
                         "still freeing its namespaces (default: wait until the host is idle)")
    args = ap.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trees = [t.split("=", 1) for t in args.tree] + [["this", here]]
    results: dict[str, list[dict]] = {n: [] for n, _ in trees}
    pycache = tempfile.mkdtemp(prefix="testbed-bench-pycache-")
    atexit.register(shutil.rmtree, pycache, True)
    for _, path in trees:  # compiled before the first run, not during it
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(path, "testbed")],
                       env=_env(path, pycache), stdout=subprocess.DEVNULL, check=True)
    for i in range(args.runs):
        for label, path in trees:
            if not args.back_to_back:
                settle()
            r = _child(path, f"podbench{os.getpid() % 10000}{i}", args.nodes, args.pods, pycache)
            results[label].append(r)
            print(f"# run {i + 1} {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), file=sys.stderr)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.nodes} nodes x {args.pods} pods of the default workload, {args.runs} runs each "
          f"({'back to back' if args.back_to_back else 'each on an idle host'}; seconds since up started; "
          f"min / median / max); load average at the end {load}")
    print("| stage | " + " | ".join(label for label, _ in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for s in STAGES + CPU:
        cells = []
        for label, _ in trees:
            v = [r[s] for r in results[label] if s in r]
            cells.append(f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}" if v else "-")
        print(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
