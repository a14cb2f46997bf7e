import random

import pytest

from testbed.k8s.allocators import (
    ClusterIPAllocator,
    ErrAllocated,
    ErrFull,
    ErrNotInRange,
    NodePortAllocator,
    ServiceAllocators,
    ip_range_offset,
    port_range_offset,
)


def test_offset_bands_follow_upstream_formula():
    assert ip_range_offset(1 << 20) == 256      # /12
    assert ip_range_offset(256) == 16           # /24
    assert ip_range_offset(16) == 0             # /28
    assert port_range_offset(2768) == 86        # 30000-32767
    assert port_range_offset(10) == 0


def test_dynamic_cluster_ips_avoid_static_band_and_reserved():
    a = ClusterIPAllocator("10.96.0.0/12", rng=random.Random(3))
    assert a.kubernetes_ip == "10.96.0.1" and a.dns_ip == "10.96.0.10"
    got = {a.allocate_next() for _ in range(200)}
    assert len(got) == 200
    # offset band: the first 256 addresses are only for explicit requests
    import ipaddress
    assert all(int(ipaddress.ip_address(ip)) - int(ipaddress.ip_address("10.96.0.1")) >= 256 for ip in got)


def test_reserved_addresses_only_on_request_even_when_small():
    a = ClusterIPAllocator("10.96.0.0/28", rng=random.Random(1))  # 14 usable, no band
    got = []
    while True:
        try:
            got.append(a.allocate_next())
        except ErrFull:
            break
    assert "10.96.0.1" not in got and "10.96.0.10" not in got and len(got) == 12
    assert a.allocate("10.96.0.10") == "10.96.0.10"
    assert a.allocate("10.96.0.1") == "10.96.0.1"
    with pytest.raises(ErrFull, match="range is full"):
        a.allocate_next()


def test_sequential_strategy():
    a = ClusterIPAllocator("10.96.0.0/24", strategy="sequential")
    assert [a.allocate_next() for _ in range(3)] == ["10.96.0.2", "10.96.0.3", "10.96.0.4"]
    p = NodePortAllocator("30000-30100", strategy="sequential")
    assert [p.allocate_next() for _ in range(2)] == [30000, 30001]


def test_cluster_ip_errors_and_release():
    a = ClusterIPAllocator("10.96.0.0/24")
    a.allocate("10.96.0.50")
    with pytest.raises(ErrAllocated, match="provided IP is already allocated"):
        a.allocate("10.96.0.50")
    for bad in ("10.96.0.0", "10.96.0.255", "10.97.0.1"):  # network, broadcast, outside
        with pytest.raises(ErrNotInRange, match=r"The range of valid IPs is 10.96.0.0/24"):
            a.allocate(bad)
    a.release("10.96.0.50")
    assert a.allocate("10.96.0.50") == "10.96.0.50"


def test_node_ports_band_errors_and_release():
    p = NodePortAllocator("30000-32767", rng=random.Random(7))
    got = [p.allocate_next() for _ in range(100)]
    assert all(30086 <= x <= 32767 for x in got) and len(set(got)) == 100
    with pytest.raises(ErrNotInRange, match="^provided port is not in the valid range. The range of valid ports is 30000-32767$"):
        p.allocate(29999)
    p.allocate(30001)
    with pytest.raises(ErrAllocated, match="^provided port is already allocated$"):
        p.allocate(30001)
    p.release(30001)
    assert not p.has(30001)


def test_rebuild_from_existing_services():
    al = ServiceAllocators("10.96.0.0/12", "30000-32767")
    services = [
        {"metadata": {"name": "a", "namespace": "d"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                                                       "ports": [{"port": 80, "nodePort": 30080}]}},
        {"metadata": {"name": "b", "namespace": "d"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.21"],
                                                       "ports": [{"port": 80, "nodePort": 30081}], "healthCheckNodePort": 30082}},
        {"metadata": {"name": "c", "namespace": "d"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}},
        {"metadata": {"name": "dup", "namespace": "d"}, "spec": {"clusterIPs": ["10.96.0.20"]}},
        {"metadata": {"name": "out", "namespace": "d"}, "spec": {"clusterIPs": ["192.168.0.1"]}},
    ]
    problems = al.rebuild(services)
    assert al.ips.used() == ["10.96.0.20", "10.96.0.21"]
    assert al.ports.used() == [30080, 30081, 30082]
    assert problems == ["Service d/dup: cluster IP 10.96.0.20 was assigned to more than one service",
                        "Service d/out: cluster IP 192.168.0.1 is not within the service CIDR 10.96.0.0/12"]
