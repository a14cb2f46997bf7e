"""Benchmark: kube-proxy convergence at 100k endpoints (scripts/bench/converge).

A real cluster (``Cluster.up``: namespaces, VXLAN, the control-plane daemon with its API
server, controllers and kubelets, one kube-proxy process per node) gets a Deployment of
``--replicas`` pods; once they are Ready, ``--services`` Services selecting all of them are
created through the API: services x replicas endpoints, on every node. Measured:

- programmed: from the last Service write until every node's proxy reports, in its metrics
  file, a successful sync holding every Service and endpoint (woken by inotify, no polling);
- cleaned up: from the last delete (Services and Deployment) until every proxy holds none;
- RSS of each kube-proxy and of the control-plane daemon: before the load, at its peak
  (programmed) and after the deletion;
- CPU seconds each kube-proxy (with its iptables-restore children) and the control plane used
  from the first Service write until programmed, and until cleaned up (their cgroups'
  ``cpu.stat``): less at the mercy of a loaded machine than the times;
- when the EndpointSlice controller wrote its last slice (from its Events), after the last
  Service write;
- the proxies' sync counters (full, partial, written whole, deadline kills, failures).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

from ..cluster import Cluster
from ..controllers.base import wait_for
from ..proxy import status
from .. import cgroups, state
from ..errors import TestbedError

APP = "converge"


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": APP, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": APP}},
                     "template": {"metadata": {"labels": {"app": APP}},
                                  "spec": {"containers": [{"name": "echo", "image": "testbed/echo",
                                                           "ports": [{"containerPort": 8080}]}]}}}}


def service(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{APP}-{i}", "namespace": "default"},
            "spec": {"selector": {"app": APP}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def scenario_file(directory: str, name: str, nodes: int) -> str:
    path = os.path.join(directory, "converge.yaml")
    with open(path, "w") as f:
        json.dump({"apiVersion": "testbed/v1", "kind": "Scenario",
                   "metadata": {"name": name, "description": "kube-proxy convergence benchmark"},
                   "spec": {"nodes": nodes}, "manifests": []}, f)
    return path


def rss_mib(pid: int | None) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, TypeError):
        return None
    return None


def memory(cluster: str) -> dict:
    pids = state.read_json(cluster, "state.json").get("pids", {})
    out = {"control-plane": rss_mib(pids.get("control-plane"))}
    for node, m in sorted(status.proxy_metrics(cluster).items()):
        out[f"kube-proxy/{node}"] = rss_mib(m.get("pid"))
    return out


def cpu_seconds(cluster: str) -> dict:
    """CPU used so far by the control plane and each kube-proxy cgroup (children included)."""
    groups = {"control-plane": cgroups.CONTROL_PLANE}
    groups.update((f"kube-proxy/{n}", cgroups.proxy_name(n)) for n in sorted(status.proxy_metrics(cluster)))
    out = {}
    for name, group in groups.items():
        try:
            with open(os.path.join(cgroups.path(cluster, group), "cpu.stat")) as f:
                usage = next(int(line.split()[1]) for line in f if line.startswith("usage_usec "))
        except (OSError, StopIteration):
            continue
        out[name] = usage / 1e6
    return out


def slices_done(api, since_wall: float) -> float | None:
    """Seconds from ``since_wall`` to the EndpointSlice controller's last EndpointSlice write
    (its newest EndpointSliceCreated/Updated Event; whole seconds, as Events are stamped)."""
    items, _ = api.list("Event", "default")
    stamps = [e.get("lastTimestamp") for e in items
              if e.get("reason") in ("EndpointSliceCreated", "EndpointSliceUpdated") and e.get("lastTimestamp")]
    if not stamps:
        return None
    last = datetime.datetime.strptime(max(stamps), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return round(last.timestamp() - since_wall, 1)


def _since(now: dict, then: dict) -> dict:
    return {k: round(v - then.get(k, 0.0), 1) for k, v in now.items()}


def _synced(nodes: int):
    def check(ms: dict):
        ok = [m for m in ms.values() if (m.get("last_sync") or {}).get("ok")]
        return ms if len(ok) >= nodes else None
    return check


def _holding(base: dict, services: int, endpoints: int):
    """Every node's proxy holds its baseline (the ``kubernetes`` Service, add-ons) plus the load."""
    def check(ms: dict):
        for node, b in base.items():
            m = ms.get(node) or {}
            if not (m.get("last_sync") or {}).get("ok") or m.get("services") != b["services"] + services \
                    or m.get("endpoints") != b["endpoints"] + endpoints:
                return None
        return ms
    return check


def counters(ms: dict) -> dict:
    keys = ("full_syncs_total", "partial_syncs_total", "sync_failures_total",
            "partial_syncs_written_whole_total", "restore_deadline_kills_total")
    return {node: {k: m.get(k, 0) for k in keys} for node, m in ms.items()}


def keep_logs(cluster: str, dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    d = state.directory(cluster)
    for f in os.listdir(d):
        if f.endswith(".log"):
            shutil.copy(os.path.join(d, f), dest)


def run(nodes: int, replicas: int, services: int, timeout: float, log=print, logs: str | None = None,
        settle: float = 0.0) -> dict:
    name = f"conv{os.getpid()}"
    result: dict = {"nodes": nodes, "replicas": replicas, "services": services,
                    "endpoints_per_node": replicas * services}
    with tempfile.TemporaryDirectory() as d:
        t = time.monotonic()
        cluster = Cluster.up(scenario_file(d, name, nodes), name=name, raise_neigh_limits=True)
        try:
            result["up_seconds"] = round(time.monotonic() - t, 2)
            api = cluster.api()
            base = status.wait_metrics(name, _synced(nodes), 60, "every kube-proxy synced")
            base = {n: {"services": m["services"], "endpoints": m["endpoints"]} for n, m in base.items()}
            result["rss_mib_before"] = memory(name)
            t = time.monotonic()
            api.create(deployment(replicas))
            wait_for(api, "Pod", lambda pods: sum(
                1 for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                       for c in (p.get("status") or {}).get("conditions") or [])) >= replicas,
                namespace="default", timeout=timeout)
            result["pods_ready_seconds"] = round(time.monotonic() - t, 2)
            log(f"{replicas} pods ready in {result['pods_ready_seconds']} s; creating {services} Services")
            cpu0 = cpu_seconds(name)
            t = time.monotonic()
            for i in range(services):
                api.create(service(i))
            t_last, wall_last = time.monotonic(), time.time()
            result["service_writes_seconds"] = round(t_last - t, 2)
            ms = status.wait_metrics(name, _holding(base, services, services * replicas), timeout,
                                     f"{services * replicas} endpoints programmed on every node")
            result["programmed_seconds"] = round(time.monotonic() - t_last, 2)
            result["rss_mib_peak"] = memory(name)
            result["cpu_seconds_to_programmed"] = _since(cpu_seconds(name), cpu0)
            result["last_slice_write_seconds"] = slices_done(api, wall_last)
            result["syncs_after_load"] = counters(ms)
            log(f"programmed on every node {result['programmed_seconds']} s after the last write; deleting")
            cpu1 = cpu_seconds(name)
            t = time.monotonic()
            for i in range(services):
                api.delete("Service", "default", f"{APP}-{i}")
            api.delete("Deployment", "default", APP)
            t_last = time.monotonic()
            result["delete_writes_seconds"] = round(t_last - t, 2)
            ms = status.wait_metrics(name, _holding(base, 0, 0), timeout, "every kube-proxy emptied")
            result["cleaned_up_seconds"] = round(time.monotonic() - t_last, 2)
            result["syncs_total"] = counters(ms)
            result["cpu_seconds_to_cleaned_up"] = _since(cpu_seconds(name), cpu1)
            result["rss_mib_after_delete"] = memory(name)
            if settle > 0:   # the API's watch history lets deleted objects go 75 s on
                time.sleep(settle)   # a figure taken this long after, not a wait for some state
                result[f"rss_mib_{settle:g}s_after_delete"] = memory(name)
        finally:
            if logs:
                keep_logs(name, logs)
            cluster.down()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench/converge", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--replicas", type=int, default=200)
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each stage")
    p.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                   help="also report RSS this long after the cleanup (the API keeps deleted objects' "
                        "events 75 s)")
    p.add_argument("--logs", metavar="DIR", help="copy the cluster's logs (kube-proxy's syncs) here")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    for flag in ("nodes", "replicas", "services"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag}: must be at least 1")
    try:
        res = run(args.nodes, args.replicas, args.services, args.timeout,
                  log=(lambda m: print(m, file=sys.stderr)), logs=args.logs, settle=args.settle)
    except (TimeoutError, TestbedError) as exc:
        print(f"converge: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:24} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
