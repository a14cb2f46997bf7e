"""ClusterIP and NodePort allocators, following ``pkg/registry/core/service``.

Upstream allocates randomly with an *offset band*: the low part of the range is kept for
static (user-requested) values and only used for dynamic allocation when the upper part
is full (KEP-3070 for ClusterIPs, KEP-3668 for NodePorts).  Band sizes:

* ClusterIP: ``min(max(16, size/16), 256)`` addresses (0 when the range has <= 16);
* NodePort: ``min(max(16, size/32), 128)`` ports (0 when the range has <= 16).

Testbed additions (documented in the design): the first address of the service CIDR
is reserved for the ``kubernetes`` Service and the 10th (e.g. ``10.96.0.10``) for cluster
DNS; neither is ever handed out dynamically, only when asked for explicitly.

``strategy="sequential"`` gives the lowest free value instead (upstream's contiguous
allocator), handy for reproducible labs.  Both allocators can be rebuilt from the
existing Services after a restart (:meth:`ServiceAllocators.rebuild`).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Iterable

DEFAULT_NODEPORT_RANGE = "30000-32767"
DNS_OFFSET = 10  # 10.96.0.10 for 10.96.0.0/12


class AllocationError(Exception):
    pass


class ErrFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


class ErrAllocated(AllocationError):
    def __init__(self, what: str = "IP") -> None:
        super().__init__(f"provided {what} is already allocated")


class ErrNotInRange(AllocationError):
    pass


def ip_range_offset(size: int) -> int:
    """``calculateRangeOffset`` for service CIDRs."""
    if size <= 16:
        return 0
    return min(max(16, size // 16), 256)


def port_range_offset(size: int) -> int:
    """``calculateRangeOffset`` for node port ranges."""
    if size <= 16:
        return 0
    return min(max(16, size // 32), 128)


class _OffsetAllocator:
    """Items 0..max-1; random scan of the upper band first, then of the lower band."""

    def __init__(self, max_items: int, offset: int, rng: random.Random | None, strategy: str, reserved: Iterable[int] = ()):
        if strategy not in ("random", "sequential"):
            raise ValueError(f"unknown allocation strategy {strategy!r}")
        self.max = max_items
        self.offset = offset
        self.rng = rng or random.Random()
        self.strategy = strategy
        self.reserved = frozenset(i for i in reserved if 0 <= i < max_items)
        self.used: set[int] = set()

    def free(self) -> int:
        return self.max - len(self.used) - len(self.reserved - self.used)

    def _scan(self, lo: int, hi: int, start: int) -> int | None:
        n = hi - lo
        for i in range(n):
            at = lo + (start + i) % n
            if at not in self.used and at not in self.reserved:
                return at
        return None

    def allocate_next(self) -> int:
        if self.free() <= 0:
            raise ErrFull()
        if self.strategy == "sequential":
            got = self._scan(0, self.max, 0)
        else:
            got = None
            upper = self.max - self.offset
            if upper > 0:
                got = self._scan(self.offset, self.max, self.rng.randrange(upper))
            if got is None and self.offset > 0:
                got = self._scan(0, self.offset, self.rng.randrange(self.offset))
        if got is None:
            raise ErrFull()
        self.used.add(got)
        return got


class ClusterIPAllocator:
    """Allocates Service ClusterIPs from one CIDR (network and broadcast addresses excluded)."""

    def __init__(self, cidr: str, rng: random.Random | None = None, strategy: str = "random",
                 reserve_kubernetes: bool = True, reserve_dns: bool = True):
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.network)
        size = self.network.num_addresses
        self.family = "IPv4" if self.network.version == 4 else "IPv6"
        if self.network.version == 4:
            usable = size - 2 if size > 2 else 0
        else:
            usable = size - 1 if size > 1 else 0
        usable = min(usable, 1 << 24)  # cap huge IPv6 ranges
        self.base = int(self.network.network_address) + 1
        reserved = []
        if reserve_kubernetes:
            reserved.append(0)
        if reserve_dns:
            reserved.append(DNS_OFFSET - 1)
        self._alloc = _OffsetAllocator(usable, ip_range_offset(size), rng, strategy, reserved)

    # helpers
    def _offset(self, ip: str) -> int | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version != self.network.version or addr not in self.network:
            return None
        off = int(addr) - self.base
        if off < 0 or off >= self._alloc.max:
            return None
        return off

    def _ip(self, offset: int) -> str:
        return str(ipaddress.ip_address(self.base + offset))

    @property
    def kubernetes_ip(self) -> str:
        """First address of the range: the ``kubernetes`` Service's ClusterIP."""
        return self._ip(0)

    @property
    def dns_ip(self) -> str:
        """The 10th address (``10.96.0.10`` for ``10.96.0.0/12``), reserved for cluster DNS."""
        return self._ip(DNS_OFFSET - 1)

    def allocate(self, ip: str) -> str:
        """Reserve a specific IP (reserved addresses included)."""
        off = self._offset(ip)
        if off is None:
            raise ErrNotInRange(
                f"the provided IP ({ip}) is not in the valid range. The range of valid IPs is {self.cidr}"
            )
        if off in self._alloc.used:
            raise ErrAllocated("IP")
        self._alloc.used.add(off)
        return self._ip(off)

    def allocate_next(self) -> str:
        return self._ip(self._alloc.allocate_next())

    def release(self, ip: str) -> None:
        off = self._offset(ip)
        if off is not None:
            self._alloc.used.discard(off)

    def has(self, ip: str) -> bool:
        off = self._offset(ip)
        return off is not None and off in self._alloc.used

    def contains(self, ip: str) -> bool:
        return self._offset(ip) is not None

    def free(self) -> int:
        return self._alloc.free()

    def used(self) -> list[str]:
        return [self._ip(o) for o in sorted(self._alloc.used)]

    def clear(self) -> None:
        self._alloc.used.clear()


def parse_port_range(spec: "str | tuple[int, int] | range") -> tuple[int, int]:
    """``"30000-32767"``, ``"30000+2767"``, ``(lo, hi)`` or ``range`` -> inclusive (lo, hi)."""
    if isinstance(spec, range):
        return spec.start, spec.stop - 1
    if isinstance(spec, (tuple, list)):
        lo, hi = int(spec[0]), int(spec[1])
    else:
        s = str(spec).strip()
        if "+" in s:
            a, b = s.split("+", 1)
            lo, hi = int(a), int(a) + int(b)
        elif "-" in s:
            a, b = s.split("-", 1)
            lo, hi = int(a), int(b)
        else:
            lo = hi = int(s)
    if not (0 < lo <= hi <= 65535):
        raise ValueError(f"invalid port range {spec!r}")
    return lo, hi


class NodePortAllocator:
    """Allocates node ports (and health-check node ports) from a port range."""

    def __init__(self, port_range: "str | tuple[int, int]" = DEFAULT_NODEPORT_RANGE,
                 rng: random.Random | None = None, strategy: str = "random"):
        self.lo, self.hi = parse_port_range(port_range)
        self.range = f"{self.lo}-{self.hi}"
        size = self.hi - self.lo + 1
        self._alloc = _OffsetAllocator(size, port_range_offset(size), rng, strategy)

    def contains(self, port: int) -> bool:
        return isinstance(port, int) and self.lo <= port <= self.hi

    def allocate(self, port: int) -> int:
        if not self.contains(port):
            raise ErrNotInRange(
                f"provided port is not in the valid range. The range of valid ports is {self.range}"
            )
        off = port - self.lo
        if off in self._alloc.used:
            raise ErrAllocated("port")
        self._alloc.used.add(off)
        return port

    def allocate_next(self) -> int:
        return self.lo + self._alloc.allocate_next()

    def release(self, port: int) -> None:
        if self.contains(port):
            self._alloc.used.discard(port - self.lo)

    def has(self, port: int) -> bool:
        return self.contains(port) and (port - self.lo) in self._alloc.used

    def free(self) -> int:
        return self._alloc.free()

    def used(self) -> list[int]:
        return [self.lo + o for o in sorted(self._alloc.used)]

    def clear(self) -> None:
        self._alloc.used.clear()


# --- per-Service bookkeeping ------------------------------------------------------


def service_cluster_ips(svc: dict) -> list[str]:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [ip for ip in ips if ip and ip != "None"]


def service_node_ports(svc: dict) -> list[int]:
    """Node ports a Service holds (unique), health-check node port included."""
    spec = svc.get("spec") or {}
    out: list[int] = []
    for p in spec.get("ports") or []:
        np = p.get("nodePort")
        if isinstance(np, int) and np and np not in out:
            out.append(np)
    hc = spec.get("healthCheckNodePort")
    if isinstance(hc, int) and hc and hc not in out:
        out.append(hc)
    return out


@dataclass
class Transaction:
    """Allocations made during one admission; ``rollback()`` undoes them, ``commit()``
    performs the releases that were deferred until success."""

    allocated: list[tuple[object, object]] = field(default_factory=list)
    deferred_release: list[tuple[object, object]] = field(default_factory=list)

    def allocated_by(self, allocator, item) -> None:
        self.allocated.append((allocator, item))

    def release_later(self, allocator, item) -> None:
        self.deferred_release.append((allocator, item))

    def rollback(self) -> None:
        for alloc, item in reversed(self.allocated):
            alloc.release(item)
        self.allocated.clear()
        self.deferred_release.clear()

    def commit(self) -> None:
        for alloc, item in self.deferred_release:
            alloc.release(item)
        self.allocated.clear()
        self.deferred_release.clear()


class ServiceAllocators:
    """The cluster's ClusterIP and NodePort allocators together."""

    def __init__(self, service_network: str, nodeport_range: "str | tuple[int, int]" = DEFAULT_NODEPORT_RANGE,
                 rng: random.Random | None = None, strategy: str = "random"):
        self.ips = ClusterIPAllocator(service_network, rng=rng, strategy=strategy)
        self.ports = NodePortAllocator(nodeport_range, rng=rng, strategy=strategy)

    def release_service(self, svc: dict) -> None:
        for ip in service_cluster_ips(svc):
            self.ips.release(ip)
        for p in service_node_ports(svc):
            self.ports.release(p)

    def rebuild(self, services: Iterable[dict]) -> list[str]:
        """Forget everything and re-reserve what the given Services hold (the repair
        controllers' job after a restart).  Returns problems found (duplicates, values
        outside the configured ranges); they are reported, not fixed."""
        self.ips.clear()
        self.ports.clear()
        problems: list[str] = []
        for svc in services:
            meta = svc.get("metadata") or {}
            who = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
            for ip in service_cluster_ips(svc):
                try:
                    self.ips.allocate(ip)
                except ErrAllocated:
                    problems.append(f"Service {who}: cluster IP {ip} was assigned to more than one service")
                except ErrNotInRange:
                    problems.append(f"Service {who}: cluster IP {ip} is not within the service CIDR {self.ips.cidr}")
            for port in service_node_ports(svc):
                try:
                    self.ports.allocate(port)
                except ErrAllocated:
                    problems.append(f"Service {who}: node port {port} was assigned to more than one service")
                except ErrNotInRange:
                    problems.append(f"Service {who}: node port {port} is not within the port range {self.ports.range}")
        return problems
