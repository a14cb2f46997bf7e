"""The data-path benchmark's pure parts: the load tool's output, percentiles, the table, ratios."""

import pytest

from testbed.bench.datapath import Latency, descriptor_problem, parse_latency, parse_list, parse_rate, percentile, ratios, table
from testbed.errors import TestbedError


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([3, 1, 2], 50) == 2


def test_percentile_refuses_nonsense():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 0)


def test_parse_latency_nanoseconds_to_microseconds():
    text = "".join(f"{i * 1000} {i * 2000}\n" for i in range(1, 101))
    lat = parse_latency(text)
    assert lat == Latency(connect_p50=50.0, connect_p99=99.0, first_p50=100.0, first_p99=198.0, samples=100)


@pytest.mark.parametrize("text", ["", "12\n", "1 2 3\n", "1 x\n", "-5 6\n"])
def test_parse_latency_refuses_bad_output(text):
    with pytest.raises(ValueError):
        parse_latency(text)


def test_parse_rate():
    assert parse_rate("requests 3000 seconds 1.500000 errors 0\n", "requests") == 2000.0
    with pytest.raises(ValueError, match="2 failed of 12"):
        parse_rate("connections 10 seconds 1.0 errors 2", "connections")
    with pytest.raises(ValueError, match="expected 'connections"):
        parse_rate("requests 10 seconds 1.0 errors 0", "connections")


def _row(mode, n, first, rps=1000.0, cps=100.0):
    return {"mode": mode, "services": n, "latency": Latency(first / 2, first, first, first * 2, 2000),
            "rps": rps, "cps": cps}


def test_table_and_ratios():
    rows = [_row("iptables", 100, 100), _row("nftables", 100, 50, 2000, 200),
            _row("iptables", 10000, 300), _row("nftables", 10000, 55, 2000, 200)]
    text = table(rows)
    assert "| iptables | 10,000 | 150 / 300 us | 300 / 600 us | 1,000 | 100 |" in text
    lines = ratios(rows)
    assert "iptables: first-byte p50 at 10,000 / at 100 = 3.00x, connect p50 3.00x" in lines
    assert "nftables: first-byte p50 at 10,000 / at 100 = 1.10x, connect p50 1.10x" in lines
    assert "vs iptables at 10,000: nftables 0.18x latency, 2.00x req/s, 2.00x conn/s" in lines


def test_parse_list_errors_name_the_option():
    assert parse_list("100, 1000", "--sizes", cast=int) == [100, 1000]
    with pytest.raises(TestbedError, match="--sizes: bad value"):
        parse_list("1k", "--sizes", cast=int)
    with pytest.raises(TestbedError, match="--modes: unknown value 'ipvz'; allowed: iptables, ipvs"):
        parse_list("ipvz", "--modes", allowed=("iptables", "ipvs"))
    with pytest.raises(TestbedError, match="--sizes: empty list"):
        parse_list(",", "--sizes", cast=int)


def test_userspace_needs_a_descriptor_per_service_port():
    # the kernel lane's guest had 4096: userspace failed half-way through 5,000 Services
    assert "hard limit is 4096" in descriptor_problem([100, 5000], ["iptables", "userspace"], 4096)
    assert descriptor_problem([100, 1000], ["userspace"], 4096) is None
    assert descriptor_problem([10000], ["iptables", "ipvs"], 4096) is None
    assert descriptor_problem([10000], ["userspace"], 524288) is None
