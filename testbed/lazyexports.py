"""Names a package re-exports from its modules, imported when first used (PEP 562).

The API's clients (kubelets, kube-proxies, the CLI) import packages such as ``apiserver`` or
``controllers`` for one small module; importing every re-exported module eagerly was over half
of a kubelet's or a kube-proxy's start-up, paid by each of them as a cluster comes up."""

from __future__ import annotations

import importlib
from typing import Callable


def exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """``(__getattr__, __all__)`` for *package*, whose attribute ``name`` is ``names[name]``'s
    (a module of the package, relative) attribute of that name."""

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__, sorted(names)
