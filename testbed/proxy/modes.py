"""The proxy modes, by name: the one list the scenario validator, ``--proxy-mode`` and the proxy
process read.

A mode is a package under ``testbed/proxy/`` with a ``mode`` module defining:

- ``make_syncer(cfg, **host) -> Syncer`` (``host``: test doubles such as ``iptables=``), run in
  the proxy process, inside the node's network namespace;
- ``problem() -> str | None``: why this kernel cannot run the mode (one line), checked before
  a cluster is built;
- ``dump_rules(netns) -> str``: the node's rules as ``testbed rules node/NAME`` prints them;
- ``check_rules(cluster, node, netns) -> (differences, summary)``: ``testbed rules --check``;
- ``cleanup()``: remove this mode's rules from the calling thread's network namespace
  (upstream ``CleanupLeftovers``), for a node that switches to a mode they conflict with.

Mode modules are imported when first used, so reading the names costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from testbed.errors import TestbedError


@dataclass(frozen=True)
class ProxyMode:
    name: str
    package: str                       # the mode's package; its ``mode`` module has the functions
    summary: str
    coexists_with: frozenset[str] = frozenset()   # modes whose rules may stay while this one runs

    def _module(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.mode")

    def make_syncer(self, cfg, **host: Any):
        return self._module().make_syncer(cfg, **host)

    def problem(self) -> str | None:
        return self._module().problem()

    def dump_rules(self, netns: str) -> str:
        return self._module().dump_rules(netns)

    def check_rules(self, cluster: str, node: str, netns: str) -> tuple[list, str]:
        return self._module().check_rules(cluster, node, netns)

    def cleanup(self) -> None:
        self._module().cleanup()


# iptables and ipvs mode share upstream's KUBE-* chain names: cleaning one would delete the
# other's, so (as upstream) a node switching between them keeps both and lets the next full
# sync replace what it owns.
MODES: dict[str, ProxyMode] = {m.name: m for m in (
    ProxyMode("iptables", "testbed.proxy.iptables", "iptables-restore of upstream's KUBE-* chains",
              frozenset({"ipvs"})),
    ProxyMode("ipvs", "testbed.proxy.ipvs", "IPVS virtual servers, ipsets and a few iptables rules",
              frozenset({"iptables"})),
    ProxyMode("nftables", "testbed.proxy.nftables", "one nft transaction per sync into table ip kube-proxy"),
    ProxyMode("userspace", "testbed.proxy.userspace",
              "the proxy process carries each connection; iptables REDIRECTs Service traffic to it"),
)}

NAMES: tuple[str, ...] = tuple(MODES)


def get(name: str) -> ProxyMode:
    """The mode called ``name``, or a one-line error listing the modes."""
    try:
        return MODES[name]
    except KeyError:
        raise TestbedError(f"proxy mode {name!r} is not implemented; modes: {', '.join(NAMES)}") from None


def cleanup_conflicting(active: str) -> list[str]:
    """Remove, from the calling thread's netns, the rules of every mode that cannot stay while
    ``active`` runs (upstream ``platformCleanup`` when a node changes modes). Returns their names."""
    mode = get(active)
    done = []
    for other in MODES.values():
        if other.name != active and other.name not in mode.coexists_with:
            other.cleanup()
            done.append(other.name)
    return done


@dataclass(frozen=True)
class Renderer:
    """A mode's golden renderer for ``testbed render`` (pure, no root): a module with
    ``render_file(path, *, sorted) -> str`` (the rules of the first sync of a harness inputs
    file) and ``steps_text(path, *, sorted) -> str`` (every sync of a steps file). A mode's
    renderer needs none of its kernel parts, so it is listed apart from ``MODES``."""
    module: str

    def render_file(self, path: str, *, sorted: bool = False) -> str:  # noqa: A002
        return importlib.import_module(self.module).render_file(path, sorted=sorted)

    def steps_text(self, path: str, *, sorted: bool = True) -> str:  # noqa: A002
        return importlib.import_module(self.module).steps_text(path, sorted=sorted)


RENDERERS: dict[str, Renderer] = {
    "iptables": Renderer("testbed.proxy.harness"),
    "nftables": Renderer("testbed.proxy.nftables.golden"),
}


def renderer(name: str) -> Renderer:
    """The golden renderer of mode ``name``, or a one-line error listing the modes that have one."""
    try:
        return RENDERERS[name]
    except KeyError:
        known = "is not implemented" if name not in MODES else "has no renderer"
        raise TestbedError(f"--proxy-mode: proxy mode {name!r} {known}; render supports: "
                           f"{', '.join(RENDERERS)}") from None
