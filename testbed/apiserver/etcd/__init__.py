"""The API store on a real etcd: :class:`EtcdStore`, and the etcd process for a cluster."""

from .server import EtcdServer, EtcdServerError, etcdctl_argv, load, start
from .client import TLS
from .store import EtcdStore

__all__ = ["TLS", "EtcdServer", "EtcdServerError", "EtcdStore", "etcdctl_argv", "load", "start"]
