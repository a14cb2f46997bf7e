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
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass

ETCD = "etcd"
ETCDCTL = "etcdctl"


class EtcdServerError(Exception):
    """etcd could not be started or did not become ready (the message says why)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EtcdServer:
    """A running etcd member: ``client_url`` for :class:`~testbed.apiserver.etcd.EtcdStore`
    and etcdctl, ``pid`` for whoever stops it later (:func:`stop_pid`)."""
    cluster: str
    state_dir: str
    client_url: str
    peer_url: str
    pid: int
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.state_dir, "etcd.log")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        else:
            stop_pid(self.pid)


def stop_pid(pid: int) -> None:
    """Stop an etcd started by an earlier process (SIGTERM; etcd shuts down cleanly)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def etcd_argv(cluster: str, data_dir: str, client_url: str, peer_url: str) -> list[str]:
    name = f"testbed-{cluster}"
    return [ETCD, "--name", name, "--data-dir", data_dir,
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}", "--initial-cluster-token", name,
            "--initial-cluster-state", "new",
            # the API server compacts (like kube-apiserver); etcd's own quota stays default
            "--auto-compaction-retention", "0"]


def start(cluster: str, state_dir: str, timeout: float = 30.0) -> EtcdServer:
    """Start etcd for *cluster* with its data in ``<state_dir>/etcd``; returns once it
    serves clients. Raises :class:`EtcdServerError` if it exits or is not ready in time."""
    if shutil.which(ETCD) is None:
        raise EtcdServerError("etcd: command not found (install etcd-server: scripts/install)")
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    os.chmod(state_dir, 0o700)
    data_dir = os.path.join(state_dir, "etcd")
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)  # etcd refuses nothing looser, and other users must not read it
    client_url = f"http://127.0.0.1:{_free_port()}"
    peer_url = f"http://127.0.0.1:{_free_port()}"
    notify_dir = tempfile.mkdtemp(prefix="tb-etcd-")  # short path: sun_path is 108 bytes
    notify_path = os.path.join(notify_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, TESTBED_CLUSTER=cluster)
        with open(os.path.join(state_dir, "etcd.log"), "ab") as logf:
            proc = subprocess.Popen(etcd_argv(cluster, data_dir, client_url, peer_url),
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                    env=env, start_new_session=True)
        server = EtcdServer(cluster, state_dir, client_url, peer_url, proc.pid, proc)
        sock.settimeout(timeout)
        try:
            msg = sock.recv(4096)
        except socket.timeout:
            server.stop()
            raise EtcdServerError(f"etcd for {cluster} not ready after {timeout:.0f} s "
                                  f"(see {server.log_path})") from None
        if b"READY=1" not in msg:
            server.stop()
            raise EtcdServerError(f"etcd for {cluster}: unexpected notification {msg!r}")
    finally:
        sock.close()
        shutil.rmtree(notify_dir, ignore_errors=True)
    if not healthy(client_url):
        server.stop()
        raise EtcdServerError(f"etcd for {cluster} reports unhealthy (see {server.log_path})")
    return server


def healthy(client_url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(client_url + "/health", timeout=timeout) as r:
            return json.loads(r.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def etcdctl_argv(endpoint: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment for ``testbed etcdctl ARGS`` against *endpoint*."""
    env = dict(os.environ, ETCDCTL_API="3", ETCDCTL_ENDPOINTS=endpoint)
    return [ETCDCTL, "--endpoints", endpoint, *args], env
