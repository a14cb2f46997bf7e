"""A cluster's choice of API store, and the etcd member ``testbed up`` runs for it.

``up`` records the choice in the cluster's ``state.json`` (``store``: kind, endpoints, client
credentials, whether the testbed runs the member); the control-plane daemon opens the store
from that record, ``testbed etcdctl`` finds the endpoint there, and ``down`` removes what
``up`` created. An etcd given by ``--etcd-endpoints`` is used as it is: never started,
stopped or emptied by the testbed.

Where the member keeps its data: etcd fsyncs its write-ahead log on every commit. The state
directory (``/run/testbed/<cluster>``) is on tmpfs on most hosts, and then the data lives
there; where it is on a disk (measured on this project's CI host: 2.2 ms per fsynced 4 KiB
write idle, seconds under load, against none on tmpfs) the data goes to
``/dev/shm/testbed-etcd/<cluster>`` instead. Either directory is mode 0700.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass, field

from ... import cgroups, state
from ...errors import TestbedError
from .client import TLS
from .server import EtcdServerError, start

EMBEDDED, ETCD = "embedded", "etcd"
TMPFS_ROOT = "/dev/shm/testbed-etcd"
CGROUP = "etcd"


class StoreOptionError(TestbedError):
    """A bad ``--store``/``--etcd-*`` value: bad input, like a bad scenario."""
    exit_code = 2


@dataclass
class StoreConfig:
    """What ``state.json`` says about a cluster's store."""
    kind: str = EMBEDDED
    endpoints: str = ""          # client URLs, comma separated (etcd only)
    tls: dict = field(default_factory=dict)   # cacert/cert/key paths for an HTTPS etcd
    managed: bool = False        # the testbed started this member (and stops it at down)
    data_dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> StoreConfig:
        return cls(**(d or {}))

    @property
    def client_tls(self) -> TLS | None:
        return TLS(**self.tls) if self.tls else None


def read(cluster: str) -> StoreConfig:
    return StoreConfig.from_dict(state.read_json(cluster, "state.json", {}).get("store"))


def requested(kind: str, endpoints: str | None, tls: TLS | None) -> StoreConfig:
    """The store ``up`` was asked for; external endpoints imply etcd. Bad input is a
    :class:`StoreOptionError` naming the option."""
    from ...scenario import STORES

    if kind not in STORES:
        raise StoreOptionError(f"--store: unsupported value {kind!r}; allowed: {', '.join(STORES)}")
    if endpoints:
        for e in endpoints.split(","):
            if not e.strip().startswith(("http://", "https://")):
                raise StoreOptionError(f"--etcd-endpoints: {e.strip()!r} is not a client URL "
                                   f"(expected http://HOST:PORT or https://HOST:PORT)")
        for name, path in asdict(tls or TLS()).items():
            if path and not os.path.isfile(path):
                raise StoreOptionError(f"--etcd-{name}: no such file {path!r}")
        return StoreConfig(ETCD, endpoints, {k: v for k, v in asdict(tls or TLS()).items() if v})
    if tls and any(asdict(tls).values()):
        raise StoreOptionError("--etcd-cacert/--etcd-cert/--etcd-key need --etcd-endpoints")
    return StoreConfig(kind)


def data_dir(cluster: str) -> str:
    """The member's data directory: in the state directory if that is on tmpfs, else on
    /dev/shm (see the module's docstring for why)."""
    d = state.directory(cluster)
    if _tmpfs(os.path.dirname(d)):
        return os.path.join(d, "etcd")
    return os.path.join(TMPFS_ROOT, cluster)


def _tmpfs(path: str) -> bool:
    # statvfs has no filesystem type: the mount table names it
    best, fstype = "", ""
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mnt, typ, *_ = line.split()
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, typ
    return fstype == "tmpfs"


def start_member(cluster: str, config: StoreConfig) -> StoreConfig:
    """Start the cluster's own etcd (in the cluster's cgroup, so ``down`` and crash cleanup
    stop it) unless *config* names an external one; returns the config to record."""
    if config.kind != ETCD or config.endpoints:
        return config
    cg = cgroups.path(cluster, CGROUP)
    cgroups.create([cgroups.cluster_path(cluster), cg])
    ddir = data_dir(cluster)
    if not ddir.startswith(state.directory(cluster)):
        os.makedirs(TMPFS_ROOT, mode=0o700, exist_ok=True)
    try:
        server = start(cluster, state.directory(cluster), data_dir=ddir, cgroup=cg)
    except EtcdServerError as e:
        raise TestbedError(str(e)) from None
    return StoreConfig(ETCD, server.client_url, {}, True, ddir)


def remove(cluster: str) -> None:
    """``down``'s part: the member's data where it is not under the state directory (the
    member itself dies with the cluster's cgroup)."""
    shutil.rmtree(os.path.join(TMPFS_ROOT, cluster), ignore_errors=True)
    with contextlib.suppress(OSError):  # shared by the clusters: only the last one removes it
        os.rmdir(TMPFS_ROOT)


def open_store(config: StoreConfig, state_dir: str, admission):
    """The API store the control plane serves: the embedded one in *state_dir*, or etcd."""
    if config.kind == ETCD:
        from .store import EtcdStore
        return EtcdStore(config.endpoints, admission=admission, tls=config.client_tls)
    from ..memory import MemoryStore
    return MemoryStore(os.path.join(state_dir, "store"), admission=admission)
