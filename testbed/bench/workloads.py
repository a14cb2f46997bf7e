"""Benchmark: a Deployment of 1,000 replicas on 10 nodes becomes Ready; the control plane's and
kubelets' memory per pod (see scripts/bench/workloads; needs root)."""

from __future__ import annotations

import argparse
import statistics
import time

from .. import state
from ..cluster import Cluster
from ..controllers.base import wait_for
from ..scenario import parse


def deployment(replicas: int, command: list[str] | None = None) -> dict:
    """Pods of the default workload, or ``command`` containers (each a sandbox of its own)."""
    ctr = {"name": "echo", "image": "testbed/echo:v1", "ports": [{"containerPort": 8080}]}
    if command:
        ctr = {"name": "main", "image": "busybox", "command": command}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                     "template": {"metadata": {"labels": {"app": "bench"}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [ctr]}}}}


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cluster_rss_kb(name: str) -> int:
    """The control plane's and the kubelets' RSS (the default workload lives in the kubelets)."""
    pids = state.read_json(name, "state.json")["pids"]
    return sum(rss_kb(pid) for key, pid in pids.items() if key == "control-plane" or key.startswith("kubelet/"))


def available(replicas: int):
    def check(ds: list[dict]):
        for d in ds:
            st = d.get("status") or {}
            if d["metadata"]["name"] == "bench" and st.get("availableReplicas", 0) == replicas and \
                    st.get("updatedReplicas", 0) == replicas and st.get("observedGeneration") == d["metadata"][
                        "generation"]:
                return d
        return None
    return check


def gone(pods: list[dict]) -> bool:
    return not [p for p in pods if (p["metadata"].get("labels") or {}).get("app") == "bench"]


def run_once(name: str, nodes: int, replicas: int, command: list[str] | None = None) -> dict:
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
           "spec": {"nodes": nodes, "proxyMode": "iptables"}}
    c = Cluster.up(parse(doc), raise_neigh_limits=True)
    try:
        with c.api() as api:
            rss0 = cluster_rss_kb(name)
            t0 = time.perf_counter()
            api.create(deployment(replicas, command))
            wait_for(api, "Deployment", available(replicas), timeout=120)
            ready = time.perf_counter() - t0
            rss1 = cluster_rss_kb(name)
            pods, _ = api.list("Pod", "default")
            per_node: dict[str, int] = {}
            for p in pods:
                per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
            t1 = time.perf_counter()
            api.patch("Deployment", "default", "bench", {"spec": {"replicas": 0}})
            wait_for(api, "Pod", gone, timeout=120)
            down = time.perf_counter() - t1
        return {"ready": ready, "scale_down": down, "rss_before_mb": rss0 / 1024, "rss_after_mb": rss1 / 1024,
                "per_pod_kb": (rss1 - rss0) / replicas, "nodes_used": len(per_node)}
    finally:
        c.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--command", action="store_true",
                    help="pods run `sleep infinity` in their sandbox instead of the default workload")
    args = ap.parse_args()
    command = ["sleep", "infinity"] if args.command else None
    results = [run_once(f"wl5bench{i}", args.nodes, args.replicas, command) for i in range(args.runs)]
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"| workloads ({args.runs} runs, medians) | measured |")
    print("|---|---|")
    what = "sandboxed `sleep` pods" if args.command else "replicas"
    print(f"| Deployment of {args.replicas} {what} on {args.nodes} nodes: created -> all Ready/available "
          f"| {med['ready']:.2f} s |")
    print(f"| scale {args.replicas} -> 0 (graceful deletion, namespaces removed) | {med['scale_down']:.2f} s |")
    print(f"| daemon + kubelets RSS before / after | {med['rss_before_mb']:.0f} MB / {med['rss_after_mb']:.0f} MB |")
    print(f"| memory per pod (RSS growth of the daemon and kubelets / replicas) | {med['per_pod_kb']:.0f} KB |")


if __name__ == "__main__":
    main()
