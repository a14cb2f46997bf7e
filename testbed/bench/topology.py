"""Benchmark: bring-up and teardown of whole clusters (see scripts/bench/topology)."""

from __future__ import annotations

import argparse
import statistics
import time

from ..cluster import Cluster
from ..scenario import parse


def scenario(name: str, nodes: int, pods_per_node: int) -> dict:
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{n}-{k}"},
             "spec": {"nodeName": f"node{n}"}} for n in range(1, nodes + 1) for k in range(pods_per_node)]
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
            "spec": {"nodes": nodes, "externals": 1}, "manifests": pods}


def measure(nodes: int, pods_per_node: int, runs: int) -> tuple[list[float], list[float]]:
    ups, downs = [], []
    for i in range(runs):
        s = parse(scenario(f"bench{i}", nodes, pods_per_node))
        t0 = time.perf_counter()
        c = Cluster.up(s, raise_neigh_limits=True, control_plane=False)
        t1 = time.perf_counter()
        c.down()
        t2 = time.perf_counter()
        ups.append(t1 - t0)
        downs.append(t2 - t1)
    return ups, downs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for nodes, ppn in ((3, 10), (10, 100)):
        ups, downs = measure(nodes, ppn, args.runs)
        pods = nodes * ppn
        rows.append((f"{nodes} nodes x {ppn} pods", pods, statistics.median(ups), statistics.median(downs)))
    print(f"| topology | pods | up (median of {args.runs}) | down (median) | up per pod |")
    print("|---|---|---|---|---|")
    for label, pods, up, down in rows:
        print(f"| {label} | {pods} | {up:.3f} s | {down:.3f} s | {up / pods * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
