"""Benchmark: HTTP through the ingress-nginx add-on against the same backends through their
NodePort, with wrk from an external client (scripts/bench/ingress).

One cluster: the add-on's controller (real nginx in its pod), Deployments ``blue`` and
``green`` of echoserver pods behind NodePort Services, an Ingress routing ``bench.example.com``
to ``blue``.  wrk runs from the external client's namespace against node1: once to the
controller's NodePort (Host header bench.example.com) and once to blue's own NodePort, the
same number of seconds and connections.  Then, with wrk loading the controller, the Ingress is
switched between blue and green N times (four times a second at most); after each write a
prober in the client's namespace requests until green (or blue) answers: the time from the API
write to traffic following it. wrk's error counts across the changes are the failed requests.
The last run also adds and removes a path with every other switch, so nginx reloads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import time

from ..addons import ingress_nginx
from ..cluster import Cluster
from ..controllers.base import wait_for
from ..exec import PIPE, popen
from ..scenario import parse
from ..verify import http
from ..verify.model import HttpRequest
from ..verify.settle import deployment_done

HOST = "bench.example.com"
DIRECT_NODE_PORT = 30080


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "echo", "image": "registry.k8s.io/echoserver:1.10",
                                                           "ports": [{"containerPort": 8080}]}]}}}}


def service(name: str, node_port: int | None) -> dict:
    port: dict = {"port": 80, "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]}}


def ingress(backend: str, extra_path: str | None = None) -> dict:
    """The bench's Ingress: ``/`` to *backend*; *extra_path* adds a location (nginx's text
    changes, so the controller reloads it)."""
    paths = [{"path": p, "pathType": "Prefix", "backend": {"service": {"name": backend, "port": {"number": 80}}}}
             for p in ["/", *([extra_path] if extra_path else [])]]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bench", "namespace": "default"},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": HOST, "http": {"paths": paths}}]}}


def scenario(name: str, replicas: int) -> dict:
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
            "spec": {"nodes": 2, "externals": 1, "addons": [ingress_nginx.NAME]},
            "manifests": [deployment("blue", replicas), deployment("green", replicas),
                          service("blue", DIRECT_NODE_PORT), service("green", None), ingress("blue")]}


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m[1]) * _UNITS[m[2]]


def parse_wrk(out: str) -> dict:
    """requests/s, p50/p99 (ms) and errors from ``wrk --latency`` output (pure)."""
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
         "requests": int(re.search(r"(\d+) requests in", out)[1])}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        r[f"p{pct}_ms"] = round(_ms(m[1]), 3) if m else None
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), (int(x) for x in sock.groups()))) \
        if sock else {}
    r["non_2xx"] = int(non2xx[1]) if non2xx else 0
    r["failed"] = sum(r["socket_errors"].values()) + r["non_2xx"]
    return r


def wrk_argv(url: str, seconds: int, connections: int, threads: int, close: bool = False) -> list[str]:
    extra = ["-H", "Connection: close"] if close else []
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}", *extra, url]


class Bench:
    def __init__(self, cluster: Cluster):
        self.c = cluster
        self.ext = cluster.plan.externals[0].netns
        self.node_ip = cluster.plan.nodes[0].ip
        with cluster.api() as api:
            svc = api.get("Service", ingress_nginx.NAMESPACE, "ingress-nginx-controller")
        self.ingress_port = next(p["nodePort"] for p in svc["spec"]["ports"] if p["name"] == "http")
        self._factory = lambda kind: self.c.run_in("external/" + cluster.plan.externals[0].name,
                                                   socket.socket, socket.AF_INET, kind)

    def answer(self, port: int) -> http.HttpAnswer:
        return http.request(self._factory, self.node_ip, port, HttpRequest(HOST), timeout=2)

    def wait_serving(self, port: int, prefix: str, timeout: float = 30.0) -> None:
        """Until the backend answers through *port*: the Deployments are ready (a watch), then
        the proxies and nginx catch up within moments, which the requests themselves wait out."""
        with self.c.api() as api:
            wait_for(api, "Deployment", lambda items: len(items) >= 3 and all(deployment_done(d) for d in items),
                     timeout=120)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            a = self.answer(port)
            if a.status == 200 and (a.hostname or "").startswith(prefix):
                return
        raise TimeoutError(f"no answer from {prefix}* through port {port} within {timeout:g}s")

    def wrk(self, port: int, seconds: int, connections: int, threads: int) -> dict:
        argv = wrk_argv(f"http://{self.node_ip}:{port}/", seconds, connections, threads)
        p = self.c.exec(f"external/{self.c.plan.externals[0].name}", argv, timeout=seconds + 60,
                        env={**os.environ, "TESTBED_CLUSTER": self.c.name})
        if p.returncode != 0:
            raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr.strip() or p.stdout[-300:]}")
        return parse_wrk(p.stdout)

    def changes(self, count: int, seconds: int, connections: int, threads: int, close: bool,
                reload: bool = False, interval: float = 0.25) -> dict:
        """*count* Ingress changes under wrk's load, one every *interval* seconds at most;
        ``close``: a new connection per request, else keep-alive connections. A change switches
        the backend of ``/`` (posted to nginx's balancer, no reload); with *reload* it also adds
        or removes a path, so nginx reloads: an old worker then closes its idle keep-alive
        connections, and a request wrk sends on one at that moment fails with a read error
        (wrk does not retry, as browsers do)."""
        argv = wrk_argv(f"http://{self.node_ip}:{self.ingress_port}/", seconds, connections, threads, close)
        load = popen(argv, netns=self.ext, stdout=PIPE, stderr=PIPE,
                     env={**os.environ, "TESTBED_CLUSTER": self.c.name})
        follow = []
        try:
            with self.c.api() as api:
                for i in range(count):
                    target = "green" if i % 2 == 0 else "blue"
                    if i:  # spread the changes over the load
                        time.sleep(max(0.0, interval - follow[-1]))
                    t0 = time.perf_counter()
                    spec = ingress(target, f"/v{i}" if reload and i % 2 == 0 else None)["spec"]
                    api.update(dict(api.get("Ingress", "default", "bench"), spec=spec))
                    while not (self.answer(self.ingress_port).hostname or "").startswith(target + "-"):
                        if time.perf_counter() - t0 > 30:
                            raise TimeoutError(f"change {i}: traffic did not move to {target} within 30 s")
                    follow.append(time.perf_counter() - t0)
            if load.poll() is not None:
                raise RuntimeError("wrk finished before the changes did; raise --change-seconds")
        finally:
            if load.poll() is None:
                load.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
            out, err = load.communicate(timeout=60)
        follow.sort()
        r = parse_wrk(out.decode())
        return {"changes": count, "follow_p50_ms": round(follow[len(follow) // 2] * 1000, 1),
                "follow_p99_ms": round(follow[min(len(follow) - 1, int(len(follow) * 0.99))] * 1000, 1),
                "follow_max_ms": round(follow[-1] * 1000, 1), "load": r}


def run(seconds: int, connections: int, threads: int, changes: int, replicas: int, change_seconds: int) -> dict:
    c = Cluster.up(parse(scenario(f"bing{os.getpid() % 1000}", replicas)))
    try:
        b = Bench(c)
        b.wait_serving(b.ingress_port, "blue-")
        b.wait_serving(DIRECT_NODE_PORT, "blue-")
        b.wrk(b.ingress_port, 2, connections, threads)  # warm-up: connections, nginx workers, caches
        out = {"seconds": seconds, "connections": connections, "threads": threads, "replicas": replicas,
               "ingress": b.wrk(b.ingress_port, seconds, connections, threads),
               "nodeport": b.wrk(DIRECT_NODE_PORT, seconds, connections, threads)}
        out["changes"] = b.changes(changes, change_seconds, connections, threads, close=True)
        out["changes_keepalive"] = b.changes(changes, change_seconds, connections, threads, close=False)
        out["reloads_keepalive"] = b.changes(changes, change_seconds, connections, threads, close=False, reload=True)
        return out
    finally:
        c.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=2, help="echoserver pods per Deployment")
    ap.add_argument("--changes", type=int, default=20, help="Ingress changes under load")
    ap.add_argument("--change-seconds", type=int, default=120, help="the longest the load may run across the changes")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.seconds, a.connections, a.threads, a.changes, a.replicas, a.change_seconds)
    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"wrk -t{a.threads} -c{a.connections} -d{a.seconds}s from an external client to node1; "
          f"{a.replicas} echoserver pods")
    print(f"{'path':<28} {'req/s':>9} {'p50':>9} {'p99':>9} {'failed':>7}")
    for key, label in (("ingress", "ingress-nginx NodePort"), ("nodeport", "backend NodePort (direct)")):
        w = r[key]
        print(f"{label:<28} {w['rps']:>9.0f} {w['p50_ms']:>6.2f} ms {w['p99_ms']:>6.2f} ms {w['failed']:>7}")
    for key, what, label in (("changes", "backend switches", "new connection per request"),
                             ("changes_keepalive", "backend switches", "keep-alive connections"),
                             ("reloads_keepalive", "switches + a path added/removed (nginx reloads)",
                              "keep-alive connections")):
        ch = r[key]
        errors = ", ".join(f"{k} {v}" for k, v in ch["load"]["socket_errors"].items() if v) or "none"
        print(f"{ch['changes']} Ingress {what} under load ({label}): traffic follows in p50 {ch['follow_p50_ms']} ms, "
              f"p99 {ch['follow_p99_ms']} ms; {ch['load']['requests']} requests, {ch['load']['failed']} failed "
              f"({ch['load']['non_2xx']} non-2xx; socket errors: {errors})")


if __name__ == "__main__":
    main()
