"""``$TESTBED_SLOWDOWN``: the factor start-up waits are multiplied by on a slow (emulated) host."""

import pytest

from testbed.controlplane import slowdown
from testbed.errors import TestbedError


def test_default_is_native_speed(monkeypatch):
    monkeypatch.delenv("TESTBED_SLOWDOWN", raising=False)
    assert slowdown() == 1.0


def test_a_factor_scales(monkeypatch):
    monkeypatch.setenv("TESTBED_SLOWDOWN", "10")
    assert slowdown() == 10.0


@pytest.mark.parametrize("bad", ["fast", "0.5", "0", "-3", "nan"])
def test_bad_values_are_one_line_errors(monkeypatch, bad):
    monkeypatch.setenv("TESTBED_SLOWDOWN", bad)
    with pytest.raises(TestbedError, match=r"TESTBED_SLOWDOWN: .*allowed: a number >= 1"):
        slowdown()
