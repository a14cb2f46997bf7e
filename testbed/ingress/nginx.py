"""Debian's nginx as a child process: write a configuration tree, check it with ``nginx -t``,
start it, reload it gracefully (SIGHUP: old workers finish their in-flight requests), post it
the dynamic table (routes and endpoints, read by its Lua balancer), stop it.

Everything lives under one directory (``-p DIR -c DIR/nginx.conf -e stderr``), so nginx never
reads or writes /etc/nginx or /var/log/nginx.
"""

from __future__ import annotations

import http.client
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from .. import exec as ex
from ..inotify import DirWatch
from .certs import FAKE_CERT_CN, self_signed
from .render import CONTROL_PORT, DEFAULT_CERT, LUA_MODULE

NGINX = "/usr/sbin/nginx"
LUA_SOURCE = Path(__file__).with_name("lua") / f"{LUA_MODULE}.lua"
TMP_DIRS = ("client-body", "proxy", "fastcgi", "uwsgi", "scgi")


class NginxError(RuntimeError):
    pass


def _write(path: Path, content: str, mode: int) -> None:
    """Atomically, so a reload never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(content)
    # nginx workers (user www-data) read htpasswd files at request time
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def prepare(directory: str | Path) -> Path:
    """Create the tree nginx needs (temp dirs, the default certificate) once."""
    d = Path(directory)
    for sub in TMP_DIRS:
        (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    lua = d / "lua" / LUA_SOURCE.name
    source = LUA_SOURCE.read_text()
    if not lua.exists() or lua.read_text() != source:
        _write(lua, source, 0o644)
    cert = d / DEFAULT_CERT
    if not cert.exists():
        crt, key = self_signed(FAKE_CERT_CN, ["ingress.local"])
        _write(cert, crt.decode() + key.decode(), 0o600)
    return d


def write_tree(directory: str | Path, name: str, conf: str, files: dict[str, str], remove_stale: bool = True) -> Path:
    """Write *conf* as ``<directory>/<name>`` and the files it references; returns its path."""
    d = prepare(directory)
    for rel, content in files.items():
        _write(d / rel, content, 0o600 if rel.startswith("ssl/") else 0o644)
    conf_path = d / name
    _write(conf_path, conf, 0o644)
    if remove_stale:
        prune(d, files)
    return conf_path


def prune(directory: str | Path, files: dict[str, str]) -> None:
    """Remove certificates and htpasswd files the configuration no longer references."""
    d = Path(directory)
    for sub in ("ssl", "auth"):
        for f in (d / sub).glob("*") if (d / sub).is_dir() else ():
            rel = f"{sub}/{f.name}"
            if rel not in files and rel != DEFAULT_CERT:
                f.unlink()


def _cmd(directory: Path, conf: Path, *extra: str) -> list[str]:
    return [NGINX, "-p", f"{directory}/", "-c", str(conf), "-e", "stderr", *extra]


def check(directory: str | Path, conf: str | Path) -> None:
    """``nginx -t`` on *conf*; raises :class:`NginxError` with nginx's own message."""
    d = Path(directory)
    r = ex.run(_cmd(d, Path(conf), "-t", "-q"), check=False)
    if r.returncode != 0:
        msg = " ".join(line.strip() for line in (r.stderr or r.stdout).splitlines() if "test failed" not in line)
        raise NginxError(msg or f"nginx -t exited {r.returncode}")


class Nginx:
    """One nginx master; :meth:`start` in the caller's network namespace.

    nginx's stderr (its error log) is copied to *log_path* by a thread that also follows the
    reloads: an old worker logs "gracefully shutting down" right before it closes the listening
    sockets, so :meth:`reload` returns only once no worker with the old configuration accepts.
    """

    def __init__(self, directory: str | Path, log_path: str | Path):
        self.directory = Path(directory)
        self.conf = self.directory / "nginx.conf"
        self.log_path = Path(log_path)
        self.proc: ex.Popen | None = None
        self._cond = threading.Condition()
        self._retired = 0          # old workers that stopped accepting
        self._errors: list[str] = []

    def start(self, timeout: float = 10.0) -> None:
        """Start nginx and return once it listens: nginx writes its pid file only after it
        has bound every listening socket, so wait for that file (inotify, no polling)."""
        pid_file = self.directory / "nginx.pid"
        pid_file.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        with DirWatch(str(self.directory)) as watch:
            # if the controller is killed outright (SIGKILL when its pod's grace period runs
            # out), nginx must not outlive it holding the pod's ports
            self.proc = ex.popen(_cmd(self.directory, self.conf, "-g", "daemon off;"),
                                 stdout=ex.DEVNULL, stderr=ex.PIPE, pdeathsig=signal.SIGTERM)
            threading.Thread(target=self._follow_log, args=(self.proc,), name="nginx-log", daemon=True).start()
            while not (pid_file.exists() and pid_file.read_text().strip()):
                if self.proc.poll() is not None:
                    raise NginxError(f"nginx exited with status {self.proc.returncode}; see {self.log_path}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NginxError(f"nginx did not start within {timeout:g}s; see {self.log_path}")
                watch.wait(left)

    def _follow_log(self, proc: ex.Popen) -> None:
        with open(self.log_path, "ab") as log:
            for line in proc.stderr:
                log.write(line)
                log.flush()
                if b"gracefully shutting down" in line or b"[emerg]" in line:
                    with self._cond:
                        if b"[emerg]" in line:
                            self._errors.append(line.decode(errors="replace").strip())
                        else:
                            self._retired += 1
                        self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP, then wait until the old worker stopped accepting (it finishes its in-flight
        requests in the background)."""
        if not self.running:
            raise NginxError("nginx is not running")
        with self._cond:
            retired, errors = self._retired, len(self._errors)
            self.proc.send_signal(signal.SIGHUP)
            done = self._cond.wait_for(
                lambda: self._retired > retired or len(self._errors) > errors or not self.running, timeout)
            if len(self._errors) > errors:
                raise NginxError(self._errors[-1])
            if not done or not self.running:
                raise NginxError(f"nginx did not finish the reload within {timeout:g}s; see {self.log_path}")

    def configure(self, table: str, version: str, timeout: float = 10.0) -> str:
        """Post the dynamic table (routes, endpoints) to the running nginx's control server
        (``127.0.0.1``: the caller is in nginx's network namespace)."""
        conn = http.client.HTTPConnection("127.0.0.1", CONTROL_PORT, timeout=timeout)
        headers = {"X-Version": version, "Content-Type": "text/plain"}
        try:
            conn.request("POST", "/configuration", body=table.encode(), headers=headers)
            r = conn.getresponse()
            body = r.read().decode(errors="replace").strip()
        except OSError as e:
            raise NginxError(f"posting the configuration to nginx: {e}") from None
        finally:
            conn.close()
        if r.status != 200:
            raise NginxError(f"nginx refused the configuration ({r.status}): {body}")
        return body

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGQUIT), SIGKILL if it does not finish in time."""
        if self.proc is None:
            return
        ex.stop(self.proc, timeout, signal.SIGQUIT)
        self.proc = None
