"""Host-wide settings the testbed may need: detected and reported, changed only on request.

The neighbour (ARP) table limits are global, not per namespace: every pod's gateway entry and
every node's entry for each local pod count against ``gc_thresh3`` (1024 by default).
"""

from __future__ import annotations

import contextlib

GC_KEYS = ("net.ipv4.neigh.default.gc_thresh1", "net.ipv4.neigh.default.gc_thresh2",
           "net.ipv4.neigh.default.gc_thresh3")


def _path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def read(key: str) -> int:
    with open(_path(key)) as f:
        return int(f.read().split()[0])


def neighbour_entries_needed(pods: int, nodes: int, externals: int) -> int:
    # each pod: its gateway; each node: its pods, the other nodes' VTEPs and the underlay peers
    return 2 * pods + nodes * (2 * nodes + externals + 2) + externals * (nodes + 1)


def neighbour_limit_problem(pods: int, nodes: int, externals: int) -> str | None:
    need = neighbour_entries_needed(pods, nodes, externals)
    limit = read(GC_KEYS[2])
    if need <= limit * 0.9:
        return None
    return (f"{pods} pods need about {need} neighbour (ARP) entries, but the host-wide limit "
            f"net.ipv4.neigh.default.gc_thresh3 is {limit} (the table is shared by all namespaces); "
            f"expect 'neighbour table overflow' and lost packets. Pass --raise-neigh-limits to raise it "
            f"for this cluster (restored by 'testbed down').")


def raise_neighbour_limits(pods: int, nodes: int, externals: int) -> dict[str, int]:
    """Raise gc_thresh1..3 host-wide; returns the previous values for ``restore``."""
    need = neighbour_entries_needed(pods, nodes, externals)
    old = {k: read(k) for k in GC_KEYS}
    new = {GC_KEYS[0]: max(old[GC_KEYS[0]], need // 2), GC_KEYS[1]: max(old[GC_KEYS[1]], need * 2),
           GC_KEYS[2]: max(old[GC_KEYS[2]], need * 4)}
    for k in reversed(GC_KEYS):  # thresh3 first so thresh2 <= thresh3 holds throughout
        with open(_path(k), "w") as f:
            f.write(str(new[k]))
    return old


def restore(old: dict[str, int]) -> None:
    for k in GC_KEYS:
        if k in old:
            with contextlib.suppress(OSError):
                with open(_path(k), "w") as f:
                    f.write(str(old[k]))
