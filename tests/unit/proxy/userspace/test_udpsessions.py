import pytest

from testbed.proxy.userspace.udpsessions import UdpSessions


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


def test_idle_timeout_counts_both_directions():
    clock = Clock()
    t = UdpSessions(0.25, clock)
    t.add(("10.0.0.1", 5000), "s1")
    t.add(("10.0.0.2", 5000), "s2")
    assert t.next_deadline() == pytest.approx(50.25)
    clock.now += 0.2
    assert t.get(("10.0.0.1", 5000)) == "s1"          # client packet
    clock.now += 0.1
    assert t.expire() == ["s2"]
    clock.now += 0.1
    t.touch(("10.0.0.1", 5000))                       # reply packet
    clock.now += 0.2
    assert t.expire() == [] and len(t) == 1
    clock.now += 0.05
    assert t.expire() == ["s1"] and t.next_deadline() is None


def test_per_client_address():
    t = UdpSessions(1, Clock())
    t.add(("10.0.0.1", 1), "a")
    assert t.get(("10.0.0.1", 2)) is None
    assert t.remove(("10.0.0.1", 1)) == "a" and t.remove(("10.0.0.1", 1)) is None


def test_drain_and_bad_timeout():
    t = UdpSessions(1, Clock())
    t.add(("a", 1), 1)
    t.add(("b", 1), 2)
    assert sorted(t.drain()) == [1, 2] and len(t) == 0
    with pytest.raises(ValueError, match="udp idle timeout must be > 0"):
        UdpSessions(0)
