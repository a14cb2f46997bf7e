"""Cluster add-ons: sets of ordinary Kubernetes objects applied at ``up``, as kubeadm applies
its add-ons. Once applied they are objects like any other (``get``, ``apply``, ``scale``).

Each add-on is one module exposing ``NAME`` and ``objects(scenario) -> list[dict]``; the
registry below maps the names a scenario's ``spec.addons`` may list to those modules.
"""

from __future__ import annotations

from types import ModuleType

from . import coredns, ingress_nginx

REGISTRY: dict[str, ModuleType] = {m.NAME: m for m in (coredns, ingress_nginx)}
NAMES: tuple[str, ...] = tuple(REGISTRY)
DEFAULT: tuple[str, ...] = (coredns.NAME,)


def objects(names: list[str] | tuple[str, ...], scenario) -> list[dict]:
    """Every object of the named add-ons, in the order the add-ons are listed."""
    out: list[dict] = []
    for name in names:
        out += REGISTRY[name].objects(scenario)
    return out
