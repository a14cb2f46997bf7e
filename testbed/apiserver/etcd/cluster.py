"""A cluster's choice of API store, and the etcd member ``testbed up`` runs for it.

``up`` records the choice in the cluster's ``state.json`` (``store``: kind, endpoints, client
credentials, key prefix, whether the testbed runs the member); the control-plane daemon opens
the store from that record, ``testbed etcdctl`` finds the endpoint and prefix there, and
``down`` removes what ``up`` created. An etcd given by ``--etcd-endpoints`` is never started
or stopped by the testbed; several clusters may share it, so each keeps its keys under its
own prefix (kube-apiserver's ``--etcd-prefix``): ``/registry`` in a member of its own,
``/testbed/<cluster>/registry`` (or ``--etcd-prefix``) on a shared one, where ``down``
deletes that prefix and nothing else.

Where the member keeps its data: etcd fsyncs its write-ahead log on every commit, which on a
disk costs (measured on this project's CI host) 2.2 ms per fsynced 4 KiB write idle, seconds
under load, against nothing on tmpfs. The state directory (``/run/testbed/<cluster>``) is a
tmpfs of the cluster's own (``state.in_memory``), and the data lives there; a state directory
on a disk (a cluster an older testbed made) sends it to ``/dev/shm/testbed-etcd/<cluster>``
instead. Either directory is mode 0700.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, replace

from ... import cgroups, state
from ...errors import TestbedError
from .client import TLS, EtcdClient, EtcdError
from .keys import DEFAULT_PREFIX
from .server import EtcdServerError, start

EMBEDDED, ETCD = "embedded", "etcd"
TMPFS_ROOT = "/dev/shm/testbed-etcd"
CGROUP = "etcd"
# a key prefix: "/" and one or more non-empty segments of printable non-blank characters
_PREFIX = re.compile(r"(/[!-.0-~]+)+")

log = logging.getLogger(__name__)


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
    prefix: str = DEFAULT_PREFIX  # where the cluster's keys are (a record without one: upstream's)

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


def shared_prefix(cluster: str) -> str:
    """The default key prefix of *cluster* on an etcd it shares with others."""
    return f"/testbed/{cluster}{DEFAULT_PREFIX}"


def requested(kind: str, endpoints: str | None, tls: TLS | None, prefix: str | None = None,
              cluster: str = "") -> StoreConfig:
    """The store ``up`` was asked for for *cluster*; external endpoints imply etcd. Bad input
    is a :class:`StoreOptionError` naming the option."""
    from ...scenario import STORES

    if prefix is not None:
        if not _PREFIX.fullmatch(prefix.rstrip("/") or "/"):
            raise StoreOptionError(f"--etcd-prefix: {prefix!r} is not a key prefix (expected /SEGMENT[/SEGMENT...] "
                                   f"without blanks, e.g. {shared_prefix(cluster or 'NAME')})")
        prefix = prefix.rstrip("/")
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
        return StoreConfig(ETCD, endpoints, {k: v for k, v in asdict(tls or TLS()).items() if v},
                           prefix=prefix or shared_prefix(cluster))
    if tls and any(asdict(tls).values()):
        raise StoreOptionError("--etcd-cacert/--etcd-cert/--etcd-key need --etcd-endpoints")
    if prefix and kind != ETCD:
        raise StoreOptionError("--etcd-prefix needs --store etcd or --etcd-endpoints")
    return StoreConfig(kind, prefix=prefix or DEFAULT_PREFIX)


def data_dir(cluster: str) -> str:
    """The member's data directory: in the state directory if that is on tmpfs, else on
    /dev/shm (see the module's docstring for why)."""
    d = state.directory(cluster)
    if _tmpfs(d):
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
    return replace(config, endpoints=server.client_url, tls={}, managed=True, data_dir=ddir)


def remove(cluster: str) -> None:
    """``down``'s part: on a shared etcd the keys under the cluster's prefix (its daemon is
    stopped by then: nothing writes there any more); for its own member the data where it is
    not under the state directory (the member itself dies with the cluster's cgroup)."""
    config = read(cluster)
    if config.kind == ETCD and not config.managed and config.endpoints:
        try:
            client = EtcdClient(config.endpoints, tls=config.client_tls)
            try:
                client.delete_prefix(config.prefix + "/")
            finally:
                client.close()
        except (EtcdError, ValueError, OSError) as e:  # down goes on: the rest is still ours to remove
            log.warning("cluster %s: keys under %s/ left in etcd: %s", cluster, config.prefix, e)
    shutil.rmtree(os.path.join(TMPFS_ROOT, cluster), ignore_errors=True)
    with contextlib.suppress(OSError):  # shared by the clusters: only the last one removes it
        os.rmdir(TMPFS_ROOT)


def open_store(config: StoreConfig, state_dir: str, admission):
    """The API store the control plane serves: the embedded one in *state_dir*, or etcd."""
    if config.kind == ETCD:
        from .store import EtcdStore
        return EtcdStore(config.endpoints, admission=admission, tls=config.client_tls, prefix=config.prefix,
                         one_member=config.managed)
    from ..memory import MemoryStore
    return MemoryStore(os.path.join(state_dir, "store"), admission=admission)
