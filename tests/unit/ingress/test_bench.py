"""The ingress benchmark's pure parts: wrk's report parsed, the cluster it builds."""

from __future__ import annotations

from testbed.bench import ingress as bench
from testbed.scenario import parse

WRK = """Running 10s test @ http://172.20.10.2:31234/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    21.03ms   12.20ms 210.11ms   80.12%
    Req/Sec   766.34    101.20     1.01k    70.00%
  Latency Distribution
     50%   19.95ms
     75%   25.01ms
     90%   33.40ms
     99%   57.78ms
  15290 requests in 10.03s, 9.99MB read
  Socket errors: connect 0, read 85, write 1, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   1524.41
Transfer/sec:      0.99MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors():
    r = bench.parse_wrk(WRK)
    assert r["rps"] == 1524.41 and r["requests"] == 15290
    assert (r["p50_ms"], r["p99_ms"]) == (19.95, 57.78)
    assert r["socket_errors"] == {"connect": 0, "read": 85, "write": 1, "timeout": 2}
    assert r["non_2xx"] == 3 and r["failed"] == 91


def test_parse_wrk_without_errors_and_in_seconds():
    out = WRK.replace("  Socket errors: connect 0, read 85, write 1, timeout 2\n", "").replace(
        "  Non-2xx or 3xx responses: 3\n", "").replace("99%   57.78ms", "99%    1.20s")
    r = bench.parse_wrk(out)
    assert r["failed"] == 0 and r["socket_errors"] == {} and r["p99_ms"] == 1200.0


def test_wrk_argv_sends_the_host_header_and_optionally_closes():
    assert bench.wrk_argv("http://h/", 5, 8, 1) == ["wrk", "-t1", "-c8", "-d5s", "--latency", "-H",
                                                    f"Host: {bench.HOST}", "http://h/"]
    assert bench.wrk_argv("http://h/", 5, 8, 1, close=True)[-3:] == ["-H", "Connection: close", "http://h/"]


def test_the_bench_cluster_is_a_valid_scenario():
    s = parse(bench.scenario("bing1", 2))
    kinds = [(o["kind"], o["metadata"]["name"]) for o in s.manifests]
    assert s.addons == ["ingress-nginx"] and ("Ingress", "bench") in kinds
    blue = next(o for o in s.manifests if o["kind"] == "Service" and o["metadata"]["name"] == "blue")
    assert blue["spec"]["ports"][0]["nodePort"] == bench.DIRECT_NODE_PORT
