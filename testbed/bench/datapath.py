"""Benchmark: the data path of each proxy mode at 100, 1k, 5k and 10k Services
(scripts/bench/datapath; needs root).

Per size one fresh two-node cluster is built with the topology engine (``control_plane=False``:
namespaces, veths, VXLAN, no API server): a client pod on node1, two endpoint pods on node2
running the echo server of ``datapath.c``. The Services are not created through the API (10k
of them would take minutes there): the real proxy code of each mode -- the mode's syncer behind
``ProxyLoop``, as ``testbed.bench.proxy_sync`` does -- is fed a synthetic state of N Services
with 2 endpoints each and programs node1's namespace in one sync. One of the N (the last one
created) is the measured Service; its endpoints are the two real pods. The other endpoints are
addresses nothing answers on; no packet goes to them. Only node1, where the client's packets
are translated, is programmed: the replies are un-translated there by conntrack.

Measured from inside the client pod with ``datapath.c`` (compiled with gcc at start):
- connection set-up latency: p50/p99 of ``--connections`` fresh TCP connections one after the
  other, as ``connect()`` (SYN to SYN-ACK) and as first byte (connect + one 8-byte echo);
- requests per second over ``--conns`` keep-alive connections;
- new connections per second (connect, one echo, close) from ``--conns`` threads.

Modes run one after the other on the same cluster; between them the previous mode's rules are
removed with its ``cleanup()`` and node1's conntrack table is flushed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from .. import netns
from ..cluster import Cluster
from ..errors import TestbedError
from ..proxy import modes
from ..proxy.loop import ProxyLoop
from ..proxy.syncer import ProxyConfig
from ..scenario import parse
from .proxy_sync import endpoint_ip, endpoint_slice, service

SOURCE = os.path.join(os.path.dirname(__file__), "datapath.c")
PORT = 8080
SIZES = (100, 1000, 5000, 10000)


# ---------------------------------------------------------------- pure parts (unit-tested)
@dataclass(frozen=True)
class Latency:
    connect_p50: float   # microseconds
    connect_p99: float
    first_p50: float
    first_p99: float
    samples: int


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (the value at rank ceil(p/100 * n) of the sorted samples)."""
    if not values:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    s = sorted(values)
    rank = -(-len(s) * p // 100)  # ceil without floats
    return s[int(rank) - 1]


def parse_latency(text: str) -> Latency:
    """``datapath latency`` output: one ``CONNECT_NS FIRST_BYTE_NS`` line per connection."""
    connect, first = [], []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"datapath latency output line {n}: expected 'CONNECT_NS FIRST_BYTE_NS', got {line!r}")
        connect.append(int(parts[0]) / 1000)
        first.append(int(parts[1]) / 1000)
    if not connect:
        raise ValueError("datapath latency printed no samples")
    return Latency(percentile(connect, 50), percentile(connect, 99), percentile(first, 50),
                   percentile(first, 99), len(connect))


def parse_rate(text: str, what: str) -> float:
    """``datapath rps|cps`` output: ``WHAT COUNT seconds S errors E``; the rate per second.
    A run with errors is refused: its rate would not be the data path's."""
    parts = text.split()
    if len(parts) != 6 or parts[0] != what or parts[2] != "seconds" or parts[4] != "errors":
        raise ValueError(f"datapath output: expected '{what} N seconds S errors E', got {text.strip()!r}")
    count, seconds, errors = int(parts[1]), float(parts[3]), int(parts[5])
    if errors:
        raise ValueError(f"datapath {what}: {errors} failed of {count + errors}")
    if seconds <= 0:
        raise ValueError(f"datapath {what}: no time elapsed")
    return count / seconds


def table_row(r: dict) -> str:
    lat: Latency = r["latency"]
    return (f"| {r['mode']} | {r['services']:,} | {lat.connect_p50:.0f} / {lat.connect_p99:.0f} us "
            f"| {lat.first_p50:.0f} / {lat.first_p99:.0f} us | {r['rps']:,.0f} | {r['cps']:,.0f} |")


def table(rows: list[dict]) -> str:
    lines = ["| mode | services | connect p50 / p99 | first byte p50 / p99 | keep-alive req/s | new conn/s |",
             "|---|---|---|---|---|---|"]
    return "\n".join(lines + [table_row(r) for r in rows])


def ratios(rows: list[dict]) -> list[str]:
    """Latency at the largest size / at the smallest, per mode; each mode vs iptables per size
    (p50 of first byte, the one latency every mode has to pay in full)."""
    by = {(r["mode"], r["services"]): r for r in rows}
    sizes = sorted({r["services"] for r in rows})
    mode_names = list(dict.fromkeys(r["mode"] for r in rows))
    out = []
    lo, hi = sizes[0], sizes[-1]
    for m in mode_names:
        a, b = by.get((m, lo)), by.get((m, hi))
        if a and b and lo != hi:
            out.append(f"{m}: first-byte p50 at {hi:,} / at {lo:,} = "
                       f"{b['latency'].first_p50 / a['latency'].first_p50:.2f}x, "
                       f"connect p50 {b['latency'].connect_p50 / a['latency'].connect_p50:.2f}x")
    for n in sizes:
        base = by.get(("iptables", n))
        if not base:
            continue
        cells = []
        for m in mode_names:
            r = by.get((m, n))
            if r and m != "iptables":
                cells.append(f"{m} {r['latency'].first_p50 / base['latency'].first_p50:.2f}x latency, "
                             f"{r['rps'] / base['rps']:.2f}x req/s, {r['cps'] / base['cps']:.2f}x conn/s")
        if cells:
            out.append(f"vs iptables at {n:,}: " + "; ".join(cells))
    return out


def parse_list(value: str, field: str, allowed: tuple | None = None, cast=str) -> list:
    items = [x.strip() for x in value.split(",") if x.strip()]
    try:
        out = [cast(x) for x in items]
    except ValueError:
        raise TestbedError(f"{field}: bad value {value!r}; expected comma-separated numbers") from None
    if not out:
        raise TestbedError(f"{field}: empty list")
    for x in out:
        if allowed is not None and x not in allowed:
            raise TestbedError(f"{field}: unknown value {x!r}; allowed: {', '.join(map(str, allowed))}")
        if cast is int and x < 1:
            raise TestbedError(f"{field}: sizes must be positive, got {x}")
    return out


# ---------------------------------------------------------------- the run (root)
def compile_tool(outdir: str) -> str:
    if shutil.which("gcc") is None:
        raise TestbedError("scripts/bench/datapath needs gcc (apt-get install gcc)")
    binary = os.path.join(outdir, "datapath")
    r = subprocess.run(["gcc", "-O2", "-pthread", "-o", binary, SOURCE], capture_output=True, text=True)
    if r.returncode != 0:
        raise TestbedError(f"gcc {SOURCE} failed: {r.stderr.strip().splitlines()[-1:]}")
    return binary


def _tool(binary: str, cluster: str, ns: str, args: list[str], timeout: float) -> str:
    """Run the tool in a pod's namespace; argv[0] carries the cluster name (our processes are
    findable by it)."""
    p = netns.run_in(ns, subprocess.run, [f"datapath-{cluster}", *args], executable=binary,
                     capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise TestbedError(f"datapath {' '.join(args)} in {ns} failed: {p.stderr.strip()}")
    return p.stdout


def _start_server(binary: str, cluster: str, ns: str) -> subprocess.Popen:
    p = netns.run_in(ns, subprocess.Popen, [f"datapath-{cluster}", "serve", str(PORT)], executable=binary,
                     stdout=subprocess.PIPE, text=True, start_new_session=True)
    if p.stdout.readline().strip() != "ready":  # blocks until it listens (or died)
        p.kill()
        raise TestbedError(f"the echo server in {ns} did not start")
    return p


def _program(mode: str, cfg: ProxyConfig, services: int, measured_eps: list[str]) -> ProxyLoop:
    """Runs inside node1's namespace: one sync of the mode's real syncer over the synthetic state."""
    loop = ProxyLoop(cfg, modes.get(mode).make_syncer(cfg))
    loop.setup_host()
    st = loop.state
    for i in range(services):
        ips = measured_eps if i == services - 1 else [endpoint_ip(i, 0), endpoint_ip(i, 1)]
        st.update_service(service(i))
        st.update_endpoint_slice(endpoint_slice(i, ips, 10 ** 7 + i))
    rec = loop.sync()
    if not rec.ok:
        raise TestbedError(f"{mode} sync of {services} Services failed: {rec.error}")
    return loop


def _cleanup(mode: str) -> None:
    """Runs inside node1's namespace: the mode's rules out, conntrack emptied, so the next mode
    starts from the same node."""
    modes.get(mode).cleanup()
    subprocess.run(["conntrack", "-F"], capture_output=True)


def measure_mode(c: Cluster, binary: str, mode: str, services: int, args) -> dict:
    p = c.plan
    node1 = next(n for n in p.nodes if n.name == "node1")
    # the kube-proxy process's defaults (``testbed.proxy.__main__``): a cold full sync replaces
    # whole tables instead of upstream's --noflush restore (seconds instead of a minute at 10k)
    cfg = ProxyConfig(cluster=c.name, node_name="node1", node_ip=node1.ip, cluster_cidr=p.pod_network,
                      min_sync_period=0.0, service_cidrs=(p.service_network,),
                      replace_full_sync=True, skip_unchanged_chains=True, cost_based_full_sync=True)
    eps = [c.pod("ep0").ip, c.pod("ep1").ip]
    vip = service(services - 1)["spec"]["clusterIP"]
    client = c.netns_of("pod/client")
    loop = c.run_in("node/node1", _program, mode, cfg, services, eps)
    try:
        lat = parse_latency(_tool(binary, c.name, client, ["latency", vip, "80", str(args.connections)], 600))
        rps = parse_rate(_tool(binary, c.name, client, ["rps", vip, "80", str(args.conns), str(args.seconds)],
                               args.seconds + 60), "requests")
        cps = parse_rate(_tool(binary, c.name, client, ["cps", vip, "80", str(args.conns), str(args.seconds)],
                               args.seconds + 60), "connections")
    finally:
        # userspace mode holds a listener per Service in this process: close them, or the next
        # modes inherit thousands of descriptors
        loop.syncer.close()
        c.run_in("node/node1", _cleanup, mode)
    return {"mode": mode, "services": services, "latency": lat, "rps": rps, "cps": cps}


def run(sizes: list[int], mode_names: list[str], args, progress=print) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="datapath-") as tmp:
        binary = compile_tool(tmp)
        for n in sizes:
            name = f"dp{os.getpid()}"
            pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pn}, "spec": {"nodeName": node}}
                    for pn, node in (("client", "node1"), ("ep0", "node2"), ("ep1", "node2"))]
            doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
                   "spec": {"nodes": 2, "externals": 0}, "manifests": pods}
            c = Cluster.up(parse(doc), control_plane=False)
            servers = []
            try:
                servers = [_start_server(binary, c.name, c.netns_of(f"pod/{ep}")) for ep in ("ep0", "ep1")]
                for m in mode_names:
                    row = measure_mode(c, binary, m, n, args)
                    progress(f"datapath: {table_row(row)}")
                    rows.append(row)
            finally:
                for s in servers:
                    s.kill()
                    s.wait()
                c.down()
    return rows


def descriptor_problem(sizes: list[int], mode_names: list[str], hard_limit: int) -> str | None:
    """Userspace mode holds a listening socket per Service port in this process: past the hard
    descriptor limit its sync fails half-way (EMFILE), so say so before building anything."""
    if "userspace" not in mode_names or hard_limit == resource.RLIM_INFINITY:
        return None
    need = max(sizes) + 1024    # the listeners, plus what the bench and the cluster hold open
    if need <= hard_limit:
        return None
    return (f"--modes: userspace at {max(sizes)} Services needs about {need} open files, the hard "
            f"limit is {hard_limit} (raise it with ulimit -Hn, or leave userspace out with --modes)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated Service counts")
    ap.add_argument("--modes", default=None,
                    help=f"comma-separated proxy modes (default: every registered mode this kernel can run; "
                         f"registered: {', '.join(modes.NAMES)})")
    ap.add_argument("--connections", type=int, default=2000, help="fresh connections for the latency percentiles")
    ap.add_argument("--conns", type=int, default=8, help="concurrent connections/threads for req/s and conn/s")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each req/s and conn/s run")
    args = ap.parse_args(argv)
    try:
        sizes = parse_list(args.sizes, "--sizes", cast=int)
        if args.modes is None:
            names = [m for m in modes.NAMES if modes.get(m).problem() is None]
            for m in modes.NAMES:
                if m not in names:
                    print(f"datapath: leaving out {m}: {modes.get(m).problem()}", file=sys.stderr)
        else:
            names = parse_list(args.modes, "--modes", allowed=modes.NAMES)
            for m in names:
                if modes.get(m).problem():
                    raise TestbedError(f"--modes: {m}: {modes.get(m).problem()}")
        problem = descriptor_problem(sizes, names, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        if problem:
            raise TestbedError(problem)
        rows = run(sizes, names, args, progress=lambda s: print(s, file=sys.stderr, flush=True))
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    print()
    for line in ratios(rows):
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
