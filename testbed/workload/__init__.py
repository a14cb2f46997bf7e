"""The default pod workload: HTTP and UDP answers for many pods from one event loop.

``WorkloadServer`` serves pods in-process; ``python -m testbed.workload --control PATH`` runs
one in its own process, driven with ``WorkloadClient``.
"""

from .control import ControlError, WorkloadClient
from .http import HttpError, Request, RequestParser
from .server import DEFAULT_PORT, PodInfo, WorkloadServer, normalize_ports

__all__ = ["DEFAULT_PORT", "ControlError", "HttpError", "PodInfo", "Request", "RequestParser", "WorkloadClient",
           "WorkloadServer", "normalize_ports"]
