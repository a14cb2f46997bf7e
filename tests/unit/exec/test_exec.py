import os
import signal
import sys
import time

import pytest

from testbed import exec as tbexec
from testbed.errors import TestbedError


def test_run_returns_output_and_code():
    r = tbexec.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert (r.stdout, r.stderr, r.returncode, r.ok) == ("out\n", "err\n", 0, True)
    assert r.argv[0] == sys.executable


def test_run_passes_input_and_env():
    r = tbexec.run([sys.executable, "-c", "import os, sys; print(sys.stdin.read() + os.environ['X'])"],
                   input="in-", env={"X": "env", "PATH": os.environ.get("PATH", "")})
    assert r.stdout == "in-env\n"


def test_nonzero_exit_raises_with_everything_kept():
    with pytest.raises(tbexec.CommandError) as ei:
        tbexec.run([sys.executable, "-c", "import sys; print('partial'); sys.exit('no such chain')"])
    e = ei.value
    assert isinstance(e, TestbedError)
    assert e.returncode == 1 and e.stdout == "partial\n" and "no such chain" in e.stderr
    assert not e.timed_out
    assert "\n" not in str(e)
    assert str(e).endswith("exit status 1: no such chain")
    assert e.command.startswith(sys.executable)


def test_check_false_returns_the_failure():
    r = tbexec.run([sys.executable, "-c", "import sys; sys.exit(3)"], check=False)
    assert r.returncode == 3 and not r.ok


def test_merge_stderr_interleaves_into_stdout():
    r = tbexec.run([sys.executable, "-c", "import sys; print('a', flush=True); print('b', file=sys.stderr)"],
                   merge_stderr=True)
    assert r.stdout == "a\nb\n" and r.stderr == ""


def test_timeout_kills_the_process_group():
    t0 = time.monotonic()
    with pytest.raises(tbexec.CommandError) as ei:
        # the shell's child must die too, or communicate() would wait for its open stdout
        tbexec.run(["sh", "-c", "sleep 30; true"], timeout=0.3, check=False)
    assert time.monotonic() - t0 < 5
    assert ei.value.timed_out and ei.value.returncode is None
    assert str(ei.value) == "sh -c 'sleep 30; true': timed out after 0.3s"


def test_a_command_that_cannot_start_is_a_command_error():
    with pytest.raises(tbexec.CommandError) as ei:
        tbexec.run(["/nonexistent/binary", "x"])
    e = ei.value
    assert isinstance(e.cause, FileNotFoundError) and e.returncode is None
    assert str(e).startswith("cannot run /nonexistent/binary x: ")


def test_command_line_is_copy_pasteable():
    assert tbexec.command_line(["iptables-save", "-t", "nat"], "tb.c.node.n1") == \
        "ip netns exec tb.c.node.n1 iptables-save -t nat"
    assert tbexec.command_line(["sh", "-c", "echo 'x y'"]) == "sh -c 'echo '\"'\"'x y'\"'\"''"
    e = tbexec.CommandError(["iptables-save"], netns="tb.c.node.n1", returncode=2, stderr="line1\nboom\n")
    assert str(e) == "ip netns exec tb.c.node.n1 iptables-save: exit status 2: boom"


def test_popen_starts_a_new_session_by_default():
    p = tbexec.popen([sys.executable, "-c", "import os; print(os.getsid(0))"], stdout=tbexec.PIPE)
    out, _ = p.communicate(timeout=10)
    assert int(out) == p.pid
    p = tbexec.popen([sys.executable, "-c", "import os; print(os.getsid(0))"], stdout=tbexec.PIPE,
                     new_session=False)
    out, _ = p.communicate(timeout=10)
    assert int(out) == os.getsid(0)


def test_popen_passes_fds():
    r, w = os.pipe()
    try:
        p = tbexec.popen([sys.executable, "-c", f"import os; os.write({w}, b'ready')"], pass_fds=(w,))
        os.close(w)
        assert os.read(r, 16) == b"ready"
        p.wait(timeout=10)
    finally:
        os.close(r)


@pytest.mark.root
def test_run_inside_a_namespace_sees_only_its_links(tmp_path):
    from testbed import netns
    name = f"tb.exectest{os.getpid()}.node.n1"
    t = __import__("threading").Thread(target=lambda: (netns.create_here(name), netns.enter_root()))
    t.start()
    t.join()
    try:
        r = tbexec.run(["ip", "-o", "link"], netns=name)
        assert [ln.split(":")[1].strip() for ln in r.stdout.splitlines()] == ["lo"]
        r = tbexec.run(["ip", "-o", "link"], netns=name, sysfs=True)
        assert "lo" in r.stdout
        with pytest.raises(tbexec.CommandError) as ei:
            tbexec.run(["ip", "link", "show", "nosuch"], netns=name)
        assert str(ei.value).startswith(f"ip netns exec {name} ip link show nosuch: exit status 1: ")
    finally:
        netns.delete(name)


def test_pdeathsig_ends_the_child_with_the_thread_that_started_it():
    import threading
    started = []

    def start():
        p = tbexec.popen(["sh", "-c", "echo ready; exec sleep 60"], stdout=tbexec.PIPE, text=True,
                         pdeathsig=signal.SIGKILL)
        assert p.stdout.readline() == "ready\n"   # the signal is armed before sh runs
        started.append(p)
    t = threading.Thread(target=start)
    t.start()
    t.join()
    p = started[0]
    assert p.wait(timeout=10) == -signal.SIGKILL
    p.stdout.close()


def test_stop_escalates_to_sigkill_past_its_timeout():
    p = tbexec.popen([sys.executable, "-c",
                      "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('ready', flush=True); signal.pause()"], stdout=tbexec.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    tbexec.stop(p, 0.2)
    assert p.returncode == -signal.SIGKILL
    p.stdout.close()


def test_stop_lets_a_child_end_on_its_signal():
    p = tbexec.popen(["sleep", "60"])
    tbexec.stop(p, 5, signal.SIGUSR1)   # ends sleep without a core dump
    assert p.returncode == -signal.SIGUSR1
