"""Benchmark: control-plane reconcile and watch fan-out (see scripts/bench/control-plane).

Runs the real components in this process: the API store with admission, the API server on a
unix socket, and the controller manager.  Pods are bound and given an IP by this script
(standing in for the kubelet, without namespaces), then 1,000 Services are applied through the
API client, and the time until every EndpointSlice lists its 2 endpoints is measured.  Then
one change is made and the time until each of N watchers (separate HTTP watch streams) has the
event is measured. ``--store etcd`` runs the same on a fresh etcd member.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

from ..apiserver.client import ApiClient
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


def run(services: int, watchers: int, rounds: int, store_kind: str = "embedded") -> dict:
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
            return {"apply": applied, "reconciled": reconciled, "fanout": statistics.median(latencies),
                    "p50": deliveries[len(deliveries) // 2], "p99": deliveries[min(len(deliveries) - 1, len(deliveries) * 99 // 100)]}
        finally:
            manager.stop()
            api.close()
            server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--watchers", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--store", choices=STORES, default="embedded")
    a = ap.parse_args()
    r = run(a.services, a.watchers, a.rounds, a.store)
    print(f"store: {a.store}")
    print("| what | target | measured |")
    print("|---|---|---|")
    print(f"| apply {a.services} Services (2 endpoints each) until every EndpointSlice exists | < 5 s | "
          f"{r['reconciled']:.2f} s (apply alone {r['apply']:.2f} s) |")
    print(f"| one change delivered to all {a.watchers} watchers (median of {a.rounds}) | < 50 ms | "
          f"{r['fanout'] * 1000:.1f} ms |")
    print(f"| watch delivery per watcher, p50 / p99 ({a.rounds} x {a.watchers}) | p99 < 50 ms | "
          f"{r['p50'] * 1000:.1f} / {r['p99'] * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
