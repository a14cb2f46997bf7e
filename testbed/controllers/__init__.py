"""Controllers that run against the testbed's API (a ``MemoryStore`` or an ``ApiClient``):
the EndpointSlice/Endpoints controller, the scheduler and a load-balancer "cloud provider",
plus the informer machinery they share and an Event recorder. See ``base.py`` for how
they list, watch and batch their work."""

from ..lazyexports import exports

__getattr__, __all__ = exports(__name__, {
    **dict.fromkeys(("Cache", "Controller", "wait_for"), "base"),
    "EndpointSliceController": "endpointslice",
    **dict.fromkeys(("EventRecorder", "object_reference"), "events"),
    **dict.fromkeys(("IPPool", "LoadBalancerController"), "loadbalancer"),
    **dict.fromkeys(("ALL_CONTROLLERS", "ControllerConfig", "ControllerManager"), "manager"),
    "SchedulerController": "scheduler",
})
