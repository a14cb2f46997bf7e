"""kube-proxy's userspace mode: the proxy process in the data path (see ``proxier``), and the
iptables rules that steer Service traffic to it (see ``rules``)."""

import importlib

# Loaded when first asked for: every kube-proxy imports this package to clean up after the mode,
# and the proxier's asyncio machinery is a third of such a proxy's start-up imports.
_EXPORTS = {"Notice": "support", "PortMap": "proxier", "RoundRobin": "roundrobin", "RuleContext": "rules",
            "UserspaceProxier": "proxier", "render": "rules"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
