"""Controllers that run against the testbed's API (a ``MemoryStore`` or an ``ApiClient``):
the EndpointSlice/Endpoints controller, the scheduler and a load-balancer "cloud provider",
plus the informer machinery they share and an Event recorder. See ``base.py`` for how
they list, watch and batch their work."""

from .base import Cache, Controller, wait_for
from .endpointslice import EndpointSliceController
from .events import EventRecorder, object_reference
from .loadbalancer import IPPool, LoadBalancerController
from .manager import ALL_CONTROLLERS, ControllerConfig, ControllerManager
from .scheduler import SchedulerController

__all__ = [
    "ALL_CONTROLLERS", "Cache", "Controller", "ControllerConfig", "ControllerManager",
    "EndpointSliceController", "EventRecorder", "IPPool", "LoadBalancerController",
    "SchedulerController", "object_reference", "wait_for",
]
