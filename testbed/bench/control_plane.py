"""Benchmark: control-plane reconcile and watch fan-out (see scripts/bench/control-plane).

Runs the real components in this process: the API store with admission, the API server on a
unix socket, and the controller manager.  Pods are bound and given an IP by this script
(standing in for the kubelet, without namespaces), then 1,000 Services are applied through the
API client, and the time until every EndpointSlice lists its 2 endpoints is measured.  Then
one change is made and the time until each of N watchers (separate HTTP watch streams) has the
event is measured. Last, a Deployment of 1,000 replicas is created on 10 Nodes and the time
until it is available is measured (this script's kubelet stand-in marks every bound pod Running
and Ready). Each store runs the same workloads in turn in one run (the embedded store, then a
fresh etcd member on tmpfs), and the table puts them side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

from ..apiserver.client import ApiClient
from ..apiserver.errors import Conflict
from ..apiserver.server import serve
from ..controllers.base import wait_for
from ..controllers.manager import ControllerManager
from ..k8s.admission import Admission
from .stores import STORES, bench_store


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "default", "labels": {"app": f"a{i // 2}"}},
            "spec": {"nodeName": f"node{i % 10 + 1}", "containers": [{"name": "c", "image": "x",
                                                                     "ports": [{"containerPort": 8080}]}]}}


def service(j: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{j}", "namespace": "default"},
            "spec": {"selector": {"app": f"a{j}"}, "ports": [{"port": 80, "targetPort": 8080}]}}


def node(i: int) -> dict:
    # not node1..: the Services' pods are bound to those names and would fill their capacity
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"worker{i}"},
            "status": {"allocatable": {"pods": "110"}, "capacity": {"pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                     "template": {"metadata": {"labels": {"app": "bench"}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


class KubeletStandIn(threading.Thread):
    """Marks every pod bound to a node Running and Ready, as the kubelet would once its
    sandbox runs (no namespaces: this measures the control plane alone)."""

    def __init__(self, api: ApiClient):
        super().__init__(daemon=True)
        self.api = api
        self.stream = None
        self.started = threading.Event()
        self.count = 0

    def run(self) -> None:
        items, rv = self.api.list("Pod", "default")
        self.stream = self.api.watch("Pod", "default", resource_version=rv)
        self.started.set()
        for ev in self.stream:
            p = ev["object"]
            if ev["type"] == "DELETED" or not p["spec"].get("nodeName") or (p.get("status") or {}).get("podIP"):
                continue
            self.count += 1
            p["status"] = {"phase": "Running", "podIP": f"10.245.{self.count // 250}.{self.count % 250 + 2}",
                           "conditions": [{"type": "Ready", "status": "True"}]}
            try:
                self.api.update_status(p)
            except Conflict:  # written meanwhile: the watch brings the newer version
                continue

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()


def deployment_ready(api: ApiClient, replicas: int, nodes: int = 10) -> float:
    for i in range(nodes):
        api.create(node(i + 1))
    kubelet = KubeletStandIn(api)
    kubelet.start()
    kubelet.started.wait(10)
    try:
        t0 = time.perf_counter()
        api.create(deployment(replicas))

        def available(ds: list[dict]) -> bool:
            st = next((d.get("status") or {} for d in ds if d["metadata"]["name"] == "bench"), {})
            return st.get("availableReplicas", 0) == replicas

        wait_for(api, "Deployment", available, namespace="default", timeout=300)
        return time.perf_counter() - t0
    finally:
        kubelet.stop()


def run(services: int, watchers: int, rounds: int, store_kind: str = "embedded", replicas: int = 1000) -> dict:
    with tempfile.TemporaryDirectory() as d, bench_store(store_kind, d, Admission({})) as store:
        server = serve(store, os.path.join(d, "api.sock"))
        manager = ControllerManager(store, {"record_normal_events": False})
        manager.start()
        api = ApiClient(os.path.join(d, "api.sock"))
        try:
            for i in range(services * 2):  # the kubelet's part: bound pods with an address
                p = api.create(pod(i))
                p["status"] = {"phase": "Running", "podIP": f"10.244.{i % 10}.{i // 10 % 250 + 2}",
                               "conditions": [{"type": "Ready", "status": "True"}]}
                api.update_status(p)
            t0 = time.perf_counter()
            for j in range(services):
                api.apply(service(j))
            applied = time.perf_counter() - t0

            def all_there(slices: list[dict]) -> bool:
                ok = sum(1 for s in slices if len(s.get("endpoints") or []) == 2)
                return ok >= services

            wait_for(api, "EndpointSlice", all_there, namespace="default", timeout=120)
            reconciled = time.perf_counter() - t0

            latencies, deliveries = [], []
            for r in range(rounds):
                streams = [ApiClient(os.path.join(d, "api.sock")).watch("Service", "default",
                                                                         resource_version=api.list("Service")[1])
                           for _ in range(watchers)]
                got: list[float] = []
                lock = threading.Lock()
                done = threading.Event()

                def reader(ws):
                    for ev in ws:
                        if ev["object"]["metadata"]["name"] == "s0":
                            with lock:
                                got.append(time.perf_counter())
                                if len(got) == watchers:
                                    done.set()
                            return

                threads = [threading.Thread(target=reader, args=(ws,), daemon=True) for ws in streams]
                for t in threads:
                    t.start()
                t1 = time.perf_counter()
                api.patch("Service", "default", "s0", {"metadata": {"labels": {"round": str(r)}}})
                done.wait(10)
                latencies.append(max(got) - t1 if len(got) == watchers else float("inf"))
                deliveries += [g - t1 for g in got] + [float("inf")] * (watchers - len(got))
                for ws in streams:
                    ws.stop()
            deliveries.sort()
            ready = deployment_ready(ApiClient(os.path.join(d, "api.sock")), replicas) if replicas else float("nan")
            return {"apply": applied, "reconciled": reconciled, "fanout": statistics.median(latencies),
                    "p50": deliveries[len(deliveries) // 2],
                    "p99": deliveries[min(len(deliveries) - 1, len(deliveries) * 99 // 100)],
                    "deployment": ready}
        finally:
            manager.stop()
            api.close()
            server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--watchers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--replicas", type=int, default=1000, help="the Deployment's replicas (0: skip it)")
    ap.add_argument("--store", choices=(*STORES, "both"), default="both",
                    help="the store(s) to measure; both: side by side in this run")
    a = ap.parse_args()
    kinds = STORES if a.store == "both" else (a.store,)
    r = {k: run(a.services, a.watchers, a.rounds, k, a.replicas) for k in kinds}

    def cells(fmt, key, scale=1.0):
        return " | ".join(fmt.format(r[k][key] * scale) for k in kinds)

    def ratio(key):
        return f" | {r['etcd'][key] / r['embedded'][key]:.1f}x" if len(kinds) == 2 else ""

    print(f"| what | target | {' | '.join(kinds)}{' | etcd / embedded' if len(kinds) == 2 else ''} |")
    print("|---|---|" + "---|" * (len(kinds) + (len(kinds) == 2)))
    print(f"| apply {a.services} Services (2 endpoints each) until every EndpointSlice exists | < 5 s, etcd < 2x | "
          f"{cells('{:.2f} s', 'reconciled')}{ratio('reconciled')} |")
    print(f"| one change delivered to all {a.watchers} watchers (median of {a.rounds}) | < 50 ms | "
          f"{cells('{:.1f} ms', 'fanout', 1000)}{ratio('fanout')} |")
    print(f"| watch delivery per watcher, p50 ({a.rounds} x {a.watchers}) | | {cells('{:.1f} ms', 'p50', 1000)}"
          f"{ratio('p50')} |")
    print(f"| watch delivery per watcher, p99 ({a.rounds} x {a.watchers}) | < 50 ms | {cells('{:.1f} ms', 'p99', 1000)}"
          f"{ratio('p99')} |")
    if a.replicas:
        print(f"| Deployment of {a.replicas} replicas on 10 Nodes: created until available (kubelet stand-in) "
              f"| etcd < 2x | {cells('{:.2f} s', 'deployment')}{ratio('deployment')} |")


if __name__ == "__main__":
    main()
