"""``pods/exec`` over WebSocket, the way kubectl 1.30+ asks first (``v5.channel.k8s.io``; v4 for
older clients such as the Python one).

Every binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error (one
``metav1.Status`` JSON when the command ends: ``Success``, or ``NonZeroExitCode`` with an
``ExitCode`` cause, which kubectl turns into its own exit code), 4 resize (``{"Width": w,
"Height": h}``), and in v5 255 (the client closed the channel named by the next byte: stdin's
end of file). The server ends with a normal close, which is how the client learns the output
is complete. The command runs in the pod's container sandbox (``Runner``: the same command line
as ``testbed exec pod/...``), with pipes, or a pseudo-terminal for ``tty=true`` (stderr is then
the terminal too, as upstream).

SPDY, which kubectl falls back to when the upgrade is refused, is not served."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import threading
from typing import Callable

from . import websocket
from .errors import BadRequest
from .podlogs import container_of

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
HANGUP_GRACE = 10.0
# (pod, container, argv) -> the command line that runs argv in that container
Runner = Callable[[dict, str, list], list]


def _flag(query: dict, key: str) -> bool:
    v = query.get(key)
    return bool(v) and v[-1].lower() in ("true", "1")


def exec_request(pod: dict, query: dict) -> tuple[str, list[str], dict]:
    """(container, command, streams) of an exec request, checked as upstream checks them."""
    command = query.get("command") or []
    if not command:
        raise BadRequest("you must specify at least 1 command")
    streams = {k: _flag(query, k) for k in ("stdin", "stdout", "stderr", "tty")}
    if not (streams["stdin"] or streams["stdout"] or streams["stderr"]):
        raise BadRequest("you must specify at least one of stdin, stdout, stderr")
    if streams["tty"]:
        streams["stderr"] = False  # a terminal has one output
    container = container_of(pod, (query.get("container") or [None])[-1])
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise BadRequest(f"cannot exec into a container in a completed pod; current phase is {phase}")
    return container, list(command), streams


def exit_status(command: list[str], returncode: int) -> dict:
    """The error channel's Status for a command that ended with *returncode* (negative: killed by
    that signal, reported as a shell would, 128 + signal)."""
    if returncode == 0:
        return {"metadata": {}, "status": "Success"}
    code = 128 - returncode if returncode < 0 else returncode
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def resize(fd: int, message: bytes) -> None:
    try:
        size = json.loads(message)
        rows, cols = int(size.get("Height", 0)), int(size.get("Width", 0))
    except (ValueError, TypeError, AttributeError):
        return
    if 0 < rows < 1 << 16 and 0 < cols < 1 << 16:
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_tty() -> None:  # in the child, after setsid(): the terminal becomes its own
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def serve(handler, pod: dict, query: dict, runner: Runner | None) -> None:
    """Answer the exec request *handler* is serving (the upgrade, then the streams until the
    command ends)."""
    container, command, streams = exec_request(pod, query)
    if runner is None:
        raise BadRequest("exec is not served on this listener (the API's HTTPS port serves it)")
    if not websocket.is_upgrade(handler.headers):
        raise BadRequest("Upgrade request required: pods/exec is served over WebSocket "
                         f"({', '.join(PROTOCOLS)}); SPDY is not supported")
    head, protocol = websocket.handshake(handler.headers, PROTOCOLS)
    argv = runner(pod, container, command)
    handler.close_connection = True
    handler.wfile.write(head)
    conn = websocket.Conn(handler.rfile.read, handler.wfile.write)
    _Session(conn, protocol, command, argv, streams).run()


class _Session:
    def __init__(self, conn: websocket.Conn, protocol: str, command: list[str], argv: list[str], streams: dict):
        self.conn, self.command, self.streams = conn, command, streams
        self.v5 = protocol.startswith("v5.")
        self.master: int | None = None
        if streams["tty"]:
            self.master, slave = os.openpty()
            try:
                self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                             preexec_fn=_controlling_tty)
            finally:
                os.close(slave)
            self.stdin = self.master
            self.outputs = [(STDOUT, self.master)]
        else:
            pipe, null = subprocess.PIPE, subprocess.DEVNULL
            self.proc = subprocess.Popen(argv, stdin=pipe if streams["stdin"] else null,
                                         stdout=pipe if streams["stdout"] else null,
                                         stderr=pipe if streams["stderr"] else null)
            self.stdin = self.proc.stdin.fileno() if self.proc.stdin else None
            self.outputs = [(ch, f.fileno()) for ch, f in ((STDOUT, self.proc.stdout), (STDERR, self.proc.stderr))
                            if f is not None]

    def run(self) -> None:
        pumps = [threading.Thread(target=self._pump, args=out, daemon=True, name="exec-out") for out in self.outputs]
        reader = threading.Thread(target=self._read_client, daemon=True, name="exec-in")
        for t in pumps + [reader]:
            t.start()
        try:
            pidfd = os.pidfd_open(self.proc.pid)
            try:
                select.select([pidfd], [], [])  # readable once the command has exited
            finally:
                os.close(pidfd)
            code = self.proc.wait()
            for t in pumps:
                t.join(5)  # a background child still holding the output does not hold the answer
            with contextlib.suppress(OSError):
                self.conn.send(bytes([ERROR]) + json.dumps(exit_status(self.command, code)).encode())
                self.conn.close()
            reader.join(5)  # the client answers the close; then the handler closes the socket
        finally:
            self._release()

    def _pump(self, channel: int, fd: int) -> None:
        prefix = bytes([channel])
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's last user is gone
                return
            if not data:
                return
            try:
                self.conn.send(prefix + data)
            except OSError:
                return

    def _read_client(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except OSError:
                msg = None
            if msg is None:
                break
            if not msg:
                continue
            channel, data = msg[0], msg[1:]
            if channel == STDIN and self.stdin is not None and data:
                try:
                    os.write(self.stdin, data)
                except OSError:
                    self._close_stdin()
            elif channel == RESIZE and self.master is not None:
                resize(self.master, data)
            elif channel == CLOSE and self.v5 and data[:1] == bytes([STDIN]):
                self._close_stdin()
        # the client went away (or closed): a command still running is hung up on, and killed
        # if it outlives the hang-up by HANGUP_GRACE seconds (nobody is left to read it)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGHUP)
            try:
                pidfd = os.pidfd_open(self.proc.pid)
            except ProcessLookupError:
                return
            try:
                if not select.select([pidfd], [], [], HANGUP_GRACE)[0]:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
            finally:
                os.close(pidfd)

    def _close_stdin(self) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, b"\x04")  # end of file, as a terminal types it
        elif self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            self.stdin = None

    def _release(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
