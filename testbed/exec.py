"""One way to run a command somewhere: on the host or inside a named network namespace.

Modelled on kind's ``pkg/exec``: every caller gets the same result type and the same error,
which keeps the command, its exit code, its output and a form of it that can be pasted into a
shell (``ip netns exec NS ...``) to reproduce a failure by hand.

A command for a namespace is forked by a thread that has entered the namespace (a child
inherits its parent thread's network namespace), so no ``ip netns exec`` process is paid for.
``sysfs=True`` goes through ``ip netns exec`` instead, for the commands that must also see the
namespace's own ``/sys`` (``ip -d link`` of a device, for example).
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from . import netns as _netns
from .errors import TestbedError

DEVNULL = subprocess.DEVNULL
PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
Popen = subprocess.Popen
TimeoutExpired = subprocess.TimeoutExpired


def command_line(argv: Sequence[str], netns: str | None = None) -> str:
    """The shell form of a command, as a user would type it to run it by hand."""
    return shlex.join(["ip", "netns", "exec", netns, *argv] if netns else list(argv))


class CommandError(TestbedError):
    """A command that could not start, exited non-zero, or ran out of time."""

    def __init__(self, argv: Sequence[str], *, netns: str | None = None, returncode: int | None = None,
                 stdout: str = "", stderr: str = "", timeout: float | None = None,
                 cause: OSError | None = None):
        self.argv = list(argv)
        self.netns = netns
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timeout = timeout
        self.cause = cause
        self.command = command_line(argv, netns)
        super().__init__(self._line())

    @property
    def timed_out(self) -> bool:
        return self.timeout is not None

    @property
    def output(self) -> str:
        """What the command said, stderr first (where tools explain a failure)."""
        return (self.stderr.strip() or self.stdout.strip())

    def _line(self) -> str:
        if self.cause is not None:
            return f"cannot run {self.command}: {self.cause}"
        if self.timeout is not None:
            return f"{self.command}: timed out after {self.timeout:g}s"
        lines = self.output.splitlines()
        said = f": {lines[-1].strip()}" if lines else ""
        return f"{self.command}: exit status {self.returncode}{said}"


@dataclass(frozen=True)
class Result:
    argv: list[str]
    stdout: str
    stderr: str
    returncode: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _wrap(argv: Sequence[str], netns: str | None, sysfs: bool, pdeathsig: signal.Signals | None) -> list[str]:
    full = list(argv)
    if pdeathsig is not None:
        # util-linux setpriv sets PR_SET_PDEATHSIG and keeps it across its exec; a preexec_fn
        # doing the same is not safe in a process with threads
        setpriv = shutil.which("setpriv")
        if setpriv:
            full = [setpriv, "--pdeathsig", pdeathsig.name[3:], "--", *full]
    if netns and sysfs:
        return ["ip", "netns", "exec", netns, *full]
    return full


def _spawn(argv: list[str], netns: str | None, sysfs: bool, kwargs: dict[str, Any]) -> subprocess.Popen:
    if netns and not sysfs:
        return _netns.run_in(netns, subprocess.Popen, argv, **kwargs)
    return subprocess.Popen(argv, **kwargs)


def popen(argv: Sequence[str], *, netns: str | None = None, sysfs: bool = False,
          stdin: int | IO | None = DEVNULL, stdout: int | IO | None = None, stderr: int | IO | None = None,
          env: Mapping[str, str] | None = None, cwd: str | None = None, pass_fds: Sequence[int] = (),
          new_session: bool = True, umask: int = -1, cgroup: str | None = None,
          pdeathsig: signal.Signals | None = None, text: bool = False) -> subprocess.Popen:
    """Start a long-running child (its own session by default, so its process group can be
    signalled as one); a command that cannot start raises ``CommandError``. ``cgroup``: the child
    joins it between fork and exec, so it never runs a single instruction of its own elsewhere.
    ``pdeathsig``: the child gets this signal when the thread that started it dies, so a killed
    parent leaves no child running on (where ``setpriv`` is installed). ``text``: its pipes
    carry str."""
    full = _wrap(argv, netns, sysfs, pdeathsig)
    try:
        if cgroup is not None:
            # The child joins the cgroup between fork and exec through a shell that then becomes
            # the program, not a preexec_fn: with one, Popen forks the whole parent (page tables
            # copied, the GIL held: 2-4 ms for the daemon, twenty times at start) instead of
            # vfork. A program that is not there is still an error here, as Popen's would be.
            path = (env or os.environ).get("PATH", os.defpath)
            relative = os.sep in full[0] and not os.path.isabs(full[0])
            if not (relative and cwd) and shutil.which(full[0], path=path) is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), full[0])
            full = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(cgroup, "cgroup.procs"), *full]
        return _spawn(full, netns, sysfs, dict(stdin=stdin, stdout=stdout, stderr=stderr,
                                               env=dict(env) if env is not None else None, cwd=cwd,
                                               pass_fds=tuple(pass_fds), start_new_session=new_session,
                                               umask=umask, text=text))
    except OSError as exc:
        raise CommandError(argv, netns=netns, cause=exc) from exc


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL a child started by ``popen``/``run`` and everything in its process group."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


def stop(p: subprocess.Popen, timeout: float, sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask a child started by ``popen`` to end with ``sig``; past ``timeout`` seconds, SIGKILL
    its process group. Returns once it has been reaped."""
    if p.poll() is None:
        p.send_signal(sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        p.wait()


def run(argv: Sequence[str], *, netns: str | None = None, input: str | None = None,
        timeout: float | None = None, check: bool = True, env: Mapping[str, str] | None = None,
        cwd: str | None = None, sysfs: bool = False, merge_stderr: bool = False) -> Result:
    """Run a command to completion and return its decoded output.

    ``check`` raises ``CommandError`` on a non-zero exit. A command that cannot start or runs
    past ``timeout`` always raises (there is no exit code to return); on timeout the whole
    process group is killed, so a shell's children go too. ``merge_stderr`` interleaves stderr
    into stdout, as a log would show them.
    """
    p = popen(argv, netns=netns, sysfs=sysfs, stdin=PIPE if input is not None else DEVNULL,
              stdout=PIPE, stderr=STDOUT if merge_stderr else PIPE, env=env, cwd=cwd)
    try:
        out, err = p.communicate(input.encode() if input is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, err = p.communicate()
        raise CommandError(argv, netns=netns, timeout=timeout, stdout=_text(out), stderr=_text(err)) from None
    except BaseException:
        kill_group(p)
        p.wait()
        raise
    res = Result(list(argv), _text(out), _text(err), p.returncode)
    if check and p.returncode != 0:
        raise CommandError(argv, netns=netns, returncode=p.returncode, stdout=res.stdout, stderr=res.stderr)
    return res


def _text(data: bytes | None) -> str:
    return data.decode(errors="replace") if data else ""
