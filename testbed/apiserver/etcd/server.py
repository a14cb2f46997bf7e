"""Run Debian's ``etcd`` (etcd-server 3.4) for one cluster, and build ``etcdctl`` command lines.

The member listens on loopback only: clients at ``http://127.0.0.1:<port>``, peers at
``http://127.0.0.1:<port>`` (etcd 3.4 takes no unix-socket URL without a host:port), both
ports free at start. Its data directory and the state directory are mode 0700, so other users
cannot read the objects. The member is named after the cluster (``--name testbed-<cluster>``)
so ``ps`` shows whose it is. Readiness is etcd's own systemd notification (``READY=1`` on
``$NOTIFY_SOCKET``, sent once it serves clients), confirmed by one ``/health`` request.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass

from ... import exec
from .client import TLS

ETCD = "etcd"
ETCDCTL = "etcdctl"


class EtcdServerError(Exception):
    """etcd could not be started or did not become ready (the message says why)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STATE_FILE = "etcd.json"  # in the state directory: how a later process finds the member


@dataclass
class EtcdServer:
    """A running etcd member: ``client_url`` for :class:`~testbed.apiserver.etcd.EtcdStore`
    and etcdctl. :func:`load` finds it again from another process (``testbed down``)."""
    cluster: str
    state_dir: str
    client_url: str
    peer_url: str
    pid: int
    proc: subprocess.Popen | None = None

    @property
    def member_name(self) -> str:
        return f"testbed-{self.cluster}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.state_dir, "etcd.log")

    def running(self) -> bool:
        """True while the process with our pid is this cluster's etcd (not a reused pid)."""
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return False
        return self.member_name.encode() in argv

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (etcd shuts down cleanly), SIGKILL after *timeout*; waits for the exit."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        elif self.running():
            pidfd = os.pidfd_open(self.pid)
            try:
                os.kill(self.pid, signal.SIGTERM)
                if not select.select([pidfd], [], [], timeout)[0]:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
        try:
            os.unlink(os.path.join(self.state_dir, STATE_FILE))
        except FileNotFoundError:
            pass


def load(state_dir: str) -> EtcdServer | None:
    """The member :func:`start` recorded in *state_dir*, or None if there is none."""
    try:
        with open(os.path.join(state_dir, STATE_FILE)) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    return EtcdServer(rec["cluster"], state_dir, rec["client_url"], rec["peer_url"], rec["pid"])


def etcd_argv(cluster: str, data_dir: str, client_url: str, peer_url: str) -> list[str]:
    name = f"testbed-{cluster}"
    return [ETCD, "--name", name, "--data-dir", data_dir,
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}", "--initial-cluster-token", name,
            "--initial-cluster-state", "new",
            # the API server compacts (like kube-apiserver); etcd's own quota stays default
            "--auto-compaction-retention", "0"]


def start(cluster: str, state_dir: str, timeout: float = 30.0, *, data_dir: str | None = None,
          cgroup: str | None = None) -> EtcdServer:
    """Start etcd for *cluster* with its data in *data_dir* (default ``<state_dir>/etcd``),
    born in *cgroup* if given; returns once it serves clients. Raises
    :class:`EtcdServerError` if it exits or is not ready in time. A data directory from an
    earlier start is reused (the objects survive a restart)."""
    if shutil.which(ETCD) is None:
        raise EtcdServerError("etcd: command not found (install etcd-server: scripts/install)")
    data_dir = data_dir or os.path.join(state_dir, "etcd")
    try:
        for d in (state_dir, data_dir):  # other users must not read the objects
            os.makedirs(d, mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
    except OSError as e:
        raise EtcdServerError(f"etcd for {cluster}: cannot prepare {e.filename}: {e.strerror}") from None
    client_url = f"http://127.0.0.1:{_free_port()}"
    peer_url = f"http://127.0.0.1:{_free_port()}"
    notify_dir = tempfile.mkdtemp(prefix="tb-etcd-")  # short path: sun_path is 108 bytes
    notify_path = os.path.join(notify_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, TESTBED_CLUSTER=cluster)
        with open(os.path.join(state_dir, "etcd.log"), "ab") as logf:
            proc = exec.popen(etcd_argv(cluster, data_dir, client_url, peer_url),
                              stdout=logf, stderr=logf, env=env, cgroup=cgroup)
        server = EtcdServer(cluster, state_dir, client_url, peer_url, proc.pid, proc)
        # wait for READY=1 or for etcd to exit, whichever comes first
        pidfd = os.pidfd_open(proc.pid)
        try:
            readable, _, _ = select.select([sock, pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if sock not in readable:
            exited = proc.poll() is not None
            server.stop()
            why = f"exited with status {proc.returncode}" if exited else f"not ready after {timeout:.0f} s"
            raise EtcdServerError(f"etcd for {cluster} {why} (see {server.log_path}: {_last_line(server.log_path)})")
        msg = sock.recv(4096)
        if b"READY=1" not in msg:
            server.stop()
            raise EtcdServerError(f"etcd for {cluster}: unexpected notification {msg!r}")
    finally:
        sock.close()
        shutil.rmtree(notify_dir, ignore_errors=True)
    if not healthy(client_url):
        server.stop()
        raise EtcdServerError(f"etcd for {cluster} reports unhealthy (see {server.log_path})")
    with open(os.path.join(state_dir, STATE_FILE), "w") as f:
        json.dump({"cluster": cluster, "pid": proc.pid, "client_url": client_url, "peer_url": peer_url}, f)
    return server


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def healthy(client_url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(client_url + "/health", timeout=timeout) as r:
            return json.loads(r.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def etcdctl_argv(endpoint: str, args: list[str], tls: TLS | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment for ``testbed etcdctl ARGS`` against *endpoint*
    (client URLs separated by commas, as etcdctl takes them)."""
    # etcdctl refuses a flag that an ETCDCTL_* variable also sets
    env = {k: v for k, v in os.environ.items()
           if k not in ("ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY")}
    env["ETCDCTL_API"] = "3"
    return [ETCDCTL, "--endpoints", endpoint, *(tls.etcdctl_flags() if tls else []), *args], env
