"""Upstream roundrobin.go semantics, driven with a fake clock and an identity shuffle."""

import pytest

from testbed.proxy.userspace.roundrobin import (
    AFFINITY_CLIENT_IP,
    NoEndpointsError,
    RoundRobin,
    UnknownServiceError,
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make(clock=None):
    return RoundRobin(clock=clock or Clock(), shuffle=lambda eps: None)


def test_unknown_and_empty():
    rr = make()
    with pytest.raises(UnknownServiceError):
        rr.next_endpoint("a", "10.0.0.1")
    rr.set_service("a")
    with pytest.raises(NoEndpointsError):
        rr.next_endpoint("a", "10.0.0.1")
    assert not rr.has_endpoints("a")


def test_round_robin_cycles():
    rr = make()
    rr.set_service("a")
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80", "3.3.3.3:80"])
    got = [rr.next_endpoint("a", "10.0.0.1") for _ in range(6)]
    assert got == ["1.1.1.1:80", "2.2.2.2:80", "3.3.3.3:80"] * 2


def test_same_set_keeps_rotation_changed_set_resets():
    rr = make()
    rr.set_service("a")
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80"])
    assert rr.next_endpoint("a", "c") == "1.1.1.1:80"
    assert rr.set_endpoints("a", ["2.2.2.2:80", "1.1.1.1:80"]) is False
    assert rr.next_endpoint("a", "c") == "2.2.2.2:80"
    assert rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80", "3.3.3.3:80"]) is True
    assert rr.next_endpoint("a", "c") == "1.1.1.1:80"


def test_changed_endpoints_are_shuffled():
    calls = []
    rr = RoundRobin(clock=Clock(), shuffle=lambda eps: (calls.append(list(eps)), eps.reverse()))
    rr.set_service("a")
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80"])
    assert calls == [["1.1.1.1:80", "2.2.2.2:80"]]
    assert rr.endpoints("a") == ["2.2.2.2:80", "1.1.1.1:80"]


def test_client_ip_affinity_sticks_until_timeout():
    clock = Clock()
    rr = make(clock)
    rr.set_service("a", AFFINITY_CLIENT_IP, 10)
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80"])
    first = rr.next_endpoint("a", "10.0.0.1")
    other = rr.next_endpoint("a", "10.0.0.2")
    assert first != other
    for _ in range(5):
        clock.now += 9.9          # each use refreshes the record
        assert rr.next_endpoint("a", "10.0.0.1") == first
    clock.now += 10.0             # whole seconds since last use >= ttl: expired
    assert rr.next_endpoint("a", "10.0.0.3") == first     # the rotation's next pick
    assert rr.next_endpoint("a", "10.0.0.1") == other     # expired: round robin again


def test_affinity_reset_skips_remembered_endpoint_and_records_new():
    rr = make()
    rr.set_service("a", AFFINITY_CLIENT_IP, 100)
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80"])
    assert rr.next_endpoint("a", "c") == "1.1.1.1:80"
    assert rr.next_endpoint("a", "c", reset_affinity=True) == "2.2.2.2:80"
    assert rr.next_endpoint("a", "c") == "2.2.2.2:80"
    assert rr.affinity_of("a", "c") == "2.2.2.2:80"


def test_removed_endpoint_drops_its_affinity():
    rr = make()
    rr.set_service("a", AFFINITY_CLIENT_IP, 100)
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80"])
    rr.next_endpoint("a", "c1")                      # 1.1.1.1
    rr.next_endpoint("a", "c2")                      # 2.2.2.2
    rr.set_endpoints("a", ["2.2.2.2:80", "3.3.3.3:80"])
    assert rr.affinity_of("a", "c1") is None
    assert rr.affinity_of("a", "c2") == "2.2.2.2:80"
    assert rr.next_endpoint("a", "c2") == "2.2.2.2:80"


def test_cleanup_stale_sessions():
    clock = Clock()
    rr = make(clock)
    rr.set_service("a", AFFINITY_CLIENT_IP, 5)
    rr.set_endpoints("a", ["1.1.1.1:80"])
    rr.next_endpoint("a", "c1")
    clock.now += 3
    rr.next_endpoint("a", "c2")
    clock.now += 2.5
    assert rr.cleanup_stale_sessions() == 1
    assert rr.affinity_of("a", "c1") is None and rr.affinity_of("a", "c2") == "1.1.1.1:80"


def test_no_affinity_records_without_client_ip_affinity():
    rr = make()
    rr.set_service("a")
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80"])
    rr.next_endpoint("a", "c")
    assert rr.affinity_of("a", "c") is None
    assert rr.next_endpoint("a", "c") == "2.2.2.2:80"


def test_affinity_change_forgets_clients_default_ttl():
    rr = make()
    rr.set_service("a", AFFINITY_CLIENT_IP, 0)       # 0: upstream's 3-hour default
    rr.set_endpoints("a", ["1.1.1.1:80", "2.2.2.2:80"])
    rr.next_endpoint("a", "c")
    rr.set_service("a", "None", 0)
    assert rr.affinity_of("a", "c") is None
    assert rr.endpoints("a") == ["1.1.1.1:80", "2.2.2.2:80"]
