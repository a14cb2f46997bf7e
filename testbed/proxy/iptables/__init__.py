"""kube-proxy ``--proxy-mode=iptables``: chain names, the restore-input renderer, test ordering.

The syncer, the restore streams and the registry entry are the ``syncer``, ``restore`` and
``mode`` modules.
"""

from testbed.proxy.iptables.names import (
    endpoint_chain_name,
    is_service_chain_name,
    port_proto_hash,
    service_chain_names,
)
from testbed.proxy.iptables.render import IptablesConfig, IptablesRenderer, LocalDetector, SyncResult
from testbed.proxy.iptables.sortorder import sort_restore_text

__all__ = [
    "IptablesConfig",
    "IptablesRenderer",
    "LocalDetector",
    "SyncResult",
    "endpoint_chain_name",
    "is_service_chain_name",
    "port_proto_hash",
    "service_chain_names",
    "sort_restore_text",
]
