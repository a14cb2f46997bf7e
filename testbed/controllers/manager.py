"""``ControllerManager``: runs the testbed's controllers (like kube-controller-manager,
kube-scheduler and a cloud controller manager together), each in its own threads, with
one shared stop event and one shared :class:`~testbed.controllers.events.EventRecorder`."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .base import Controller
from .deployment import DeploymentController
from .endpointslice import EndpointSliceController
from .events import EventRecorder
from .loadbalancer import DEFAULT_POOL, LoadBalancerController
from .replicaset import ReplicaSetController
from .scheduler import SchedulerController

ALL_CONTROLLERS = ("endpointslice", "scheduler", "loadbalancer", "replicaset", "deployment")


@dataclass
class ControllerConfig:
    controllers: tuple[str, ...] = ALL_CONTROLLERS
    lb_pool: str = DEFAULT_POOL
    mirror_endpoints: bool = True
    max_endpoints_per_slice: int = 100
    scheduler_name: str = "default-scheduler"
    seed: int | None = None          # for the scheduler's tie-break and slice names
    record_normal_events: bool = True

    @classmethod
    def of(cls, config: Any) -> "ControllerConfig":
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if not isinstance(config, Mapping):
            config = {f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)}
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown controller config keys: {', '.join(sorted(unknown))}")
        kw = dict(config)
        if "controllers" in kw:
            kw["controllers"] = tuple(kw["controllers"])
            bad = set(kw["controllers"]) - set(ALL_CONTROLLERS)
            if bad:
                raise ValueError(f"unknown controllers {sorted(bad)}; known: {', '.join(ALL_CONTROLLERS)}")
        return cls(**kw)


class ControllerManager:
    """``ControllerManager(store, config).start()`` ... ``.stop()`` (also a context manager).

    *config* is a :class:`ControllerConfig`, a mapping with its field names, or None."""

    def __init__(self, store: Any, config: Any = None):
        self.store = store
        self.config = ControllerConfig.of(config)
        self.stop_event = threading.Event()
        self.recorder = EventRecorder(store, "controller-manager")
        c = self.config
        rng = random.Random(c.seed) if c.seed is not None else None
        self.controllers: dict[str, Controller] = {}
        for name in c.controllers:
            if name == "endpointslice":
                ctrl: Controller = EndpointSliceController(
                    store, self.stop_event, recorder=self.recorder, max_endpoints_per_slice=c.max_endpoints_per_slice,
                    mirror_endpoints=c.mirror_endpoints, rng=random.Random(c.seed) if c.seed is not None else None,
                    record_normal_events=c.record_normal_events)
            elif name == "scheduler":
                ctrl = SchedulerController(store, self.stop_event, recorder=self.recorder,
                                           scheduler_name=c.scheduler_name, rng=rng)
            elif name == "replicaset":
                ctrl = ReplicaSetController(store, self.stop_event, recorder=self.recorder)
            elif name == "deployment":
                ctrl = DeploymentController(store, self.stop_event, recorder=self.recorder)
            else:
                ctrl = LoadBalancerController(store, self.stop_event, recorder=self.recorder, pool=c.lb_pool)
            self.controllers[name] = ctrl
        self._started = False

    def __getitem__(self, name: str) -> Controller:
        return self.controllers[name]

    def start(self) -> "ControllerManager":
        if not self._started:
            self._started = True
            for ctrl in self.controllers.values():
                ctrl.start()
        return self

    def wait_synced(self, timeout: float | None = 5.0) -> bool:
        """True once every controller has listed all its kinds."""
        return all(c.synced.wait(timeout) for c in self.controllers.values())

    def stop(self, timeout: float | None = 5.0) -> None:
        self.stop_event.set()
        for ctrl in self.controllers.values():
            ctrl.join(timeout)

    @property
    def running(self) -> bool:
        return self._started and not self.stop_event.is_set()

    def __enter__(self) -> "ControllerManager":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
