"""Benchmark: cluster DNS with dnsperf, against dnsmasq serving the same names (scripts/bench/dns).

One ``DnsLab`` (a netns, an API, the server process) holds N Services, each with a two-address
EndpointSlice and two named ports, plus dnsmasq in the same namespace answering the same
names from a hosts file (A) and ``srv-host`` lines (SRV), authoritative for cluster.local
(so unknown names are NXDOMAIN).  The query mix is Service A, SRV and NXDOMAIN.  For each
server dnsperf runs twice: unthrottled (the qps a replica sustains) and at a fixed rate with
``-v`` (every answer's latency, for p50/p99).  Then the time from an API write to the first
correct answer is measured for a run of Service creations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import time

import dns.message
import dns.query

from .. import exec as ex
from ..dns.lab import DnsLab

ZONE = "cluster.local"
DNSMASQ = ("127.0.0.3", 5353)


def objects(n: int) -> list[dict]:
    objs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}]
    for j in range(n):
        ip = f"10.96.{j // 250}.{j % 250 + 1}"
        objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{j}", "namespace": "default"},
                     "spec": {"clusterIP": ip, "clusterIPs": [ip],
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                        {"name": "dns", "port": 53, "protocol": "UDP"}]}})
        objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"s{j}-1", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": f"s{j}"}},
                     "addressType": "IPv4",
                     "endpoints": [{"addresses": [f"10.244.{j % 200}.{k + 2}"], "conditions": {"ready": True}}
                                   for k in range(2)],
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                               {"name": "dns", "port": 5353, "protocol": "UDP"}]})
    return objs


def query_file(path: str, n: int, count: int, rng: random.Random) -> None:
    lines = []
    for _ in range(count):
        j, r = rng.randrange(n), rng.random()
        if r < 0.6:
            lines.append(f"s{j}.default.svc.{ZONE} A")
        elif r < 0.8:
            lines.append(f"_http._tcp.s{j}.default.svc.{ZONE} SRV")
        else:
            lines.append(f"nosuch{j}.default.svc.{ZONE} A")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def dnsmasq_config(path: str, hosts: str, n: int) -> None:
    with open(hosts, "w") as f:
        for j in range(n):
            f.write(f"10.96.{j // 250}.{j % 250 + 1} s{j}.default.svc.{ZONE}\n")
    with open(path, "w") as f:
        f.write(f"no-resolv\nno-hosts\naddn-hosts={hosts}\nlocal=/{ZONE}/\nbind-interfaces\n"
                f"listen-address={DNSMASQ[0]}\nport={DNSMASQ[1]}\ncache-size=10000\n")
        for j in range(n):
            f.write(f"srv-host=_http._tcp.s{j}.default.svc.{ZONE},s{j}.default.svc.{ZONE},80\n")


def dnsperf(lab: DnsLab, server: tuple[str, int], queries: str, seconds: int, rate: int | None) -> dict:
    argv = ["dnsperf", "-s", server[0], "-p", str(server[1]), "-d", queries, "-l", str(seconds), "-c", "4",
            "-q", "200"]
    if rate:
        argv += ["-Q", str(rate), "-v"]
    p = lab.exec(argv, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({p.returncode}): {p.stderr.strip() or p.stdout[-500:]}")
    out = {"qps": float(re.search(r"Queries per second:\s+([\d.]+)", p.stdout).group(1)),
           "lost": int(re.search(r"Queries lost:\s+(\d+)", p.stdout).group(1))}
    lat = sorted(float(m.group(1)) for m in re.finditer(r"^> \S+ \S+ \S+ ([\d.]+)$", p.stdout, re.M))
    if lat:
        out["p50_ms"] = round(lat[len(lat) // 2] * 1000, 3)
        out["p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3)
        out["answers"] = len(lat)
    return out


def _socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", 53))
    return s


def change_lag(lab: DnsLab, count: int) -> dict:
    """API write to first correct answer, querying from a socket made in the lab's namespace once
    (a socket keeps its namespace), so the measuring loop costs no thread per query."""
    sock = lab.run_in(_socket)
    lags = []
    for i in range(count):
        ip = f"10.97.{i // 250}.{i % 250 + 1}"
        name = f"lag{i}.default.svc.{ZONE}"
        q = dns.message.make_query(name, "A")
        t0 = time.perf_counter()
        lab.api.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"lag{i}", "namespace": "default"},
                        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 80}]}})
        while [rd.to_text() for rr in dns.query.udp(q, "127.0.0.1", timeout=2, sock=sock).answer for rd in rr] != [ip]:
            pass
        lags.append(time.perf_counter() - t0)
    sock.close()
    lags.sort()
    return {"p50_ms": round(statistics.median(lags) * 1000, 2),
            "p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 2)}


def run(services: int, seconds: int, rate: int, changes: int) -> dict:
    lab = DnsLab(f"bdns{os.getpid() % 1000}", objects=objects(services))
    try:
        qf = os.path.join(lab.dir, "queries")
        query_file(qf, services, 20000, random.Random(1))
        conf, hosts = os.path.join(lab.dir, "dnsmasq.conf"), os.path.join(lab.dir, "hosts")
        dnsmasq_config(conf, hosts, services)
        masq = ex.popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--log-facility=-",
                         "--pid-file=", "--user=root"], netns=lab.netns, sysfs=True,
                        stdout=ex.PIPE, stderr=ex.STDOUT, text=True)
        lab.procs.append(masq)
        for line in masq.stdout:  # listening once it says it started
            if "started" in line:
                break
        else:
            raise RuntimeError(f"dnsmasq exited ({masq.wait()})")
        result = {"services": services, "seconds": seconds, "mix": "60% A, 20% SRV, 20% NXDOMAIN"}
        for name, server in (("testbed-dns", ("127.0.0.1", 53)), ("dnsmasq", DNSMASQ)):
            dnsperf(lab, server, qf, 2, None)  # warm-up: both serve the measured runs from memory
            result[name] = {"max": dnsperf(lab, server, qf, seconds, None),
                            f"at_{rate}qps": dnsperf(lab, server, qf, seconds, rate)}
        result["change_to_answer"] = change_lag(lab, changes)
        return result
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=5000, help="the fixed rate of the latency run (queries/s)")
    ap.add_argument("--changes", type=int, default=100, help="Service creations timed to the first answer")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.services, a.seconds, a.rate, a.changes)
    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{r['services']} Services, {r['mix']}, {r['seconds']} s per run (dnsperf -c 4)")
    print(f"{'server':<12} {'max qps':>9} {'lost':>5}   {'at ' + str(a.rate) + ' qps: p50':>17} {'p99':>8} {'lost':>5}")
    for name in ("testbed-dns", "dnsmasq"):
        mx, fx = r[name]["max"], r[name][f"at_{a.rate}qps"]
        print(f"{name:<12} {mx['qps']:>9.0f} {mx['lost']:>5}   {fx.get('p50_ms', float('nan')):>14.3f} ms "
              f"{fx.get('p99_ms', float('nan')):>5.3f} ms {fx['lost']:>5}")
    c = r["change_to_answer"]
    print(f"API write -> correct answer: p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms ({a.changes} Service creations)")


if __name__ == "__main__":
    main()
