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


def test_the_daemon_alone_runs_on_the_system_allocator(tmp_path):
    """``_child_env`` starts the daemon on glibc's malloc (its freed pages can be given back);
    the daemon drops the setting, so what it starts keeps CPython's arenas."""
    import subprocess
    import sys

    from testbed.controlplane import _child_env

    stats = "import sys; sys._debugmallocstats()"
    child = (f"import os, subprocess, sys; {stats}; sys.stderr.flush(); os.environ.pop('PYTHONMALLOC', None); "
             f"subprocess.run([sys.executable, '-c', {stats!r}])")
    out = subprocess.run([sys.executable, "-c", child], env=_child_env("c"), capture_output=True,
                         text=True, timeout=30).stderr
    daemon, grandchild = out.split("Small block threshold", 1)[0], out
    assert "arenas allocated" not in daemon          # no pymalloc arenas in the daemon
    assert "arenas allocated" in grandchild          # its child has them again
