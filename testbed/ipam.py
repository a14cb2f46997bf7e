"""Pod address allocation as CNI's host-local IPAM does it.

Per node subnet: the gateway ``.1`` is skipped, the first pod gets ``.2``, allocation is
round-robin from the last reserved address, and freed addresses are not reused until the range
wraps.
"""

from __future__ import annotations

import ipaddress


class RangeFull(Exception):
    pass


class HostLocal:
    def __init__(self, subnet: ipaddress.IPv4Network, *, allocated: dict[str, str] | None = None,
                 last: str | None = None):
        self.subnet = subnet
        self.gateway = subnet.network_address + 1
        self.first = int(subnet.network_address) + 1
        self.last_ip = int(subnet.broadcast_address) - 1
        self.allocated: dict[str, str] = dict(allocated or {})  # ip -> owner
        self.last_reserved = int(ipaddress.IPv4Address(last)) if last else None

    def allocate(self, owner: str) -> str:
        size = self.last_ip - self.first + 1
        start = self.first if self.last_reserved is None else self.last_reserved + 1
        for k in range(size):
            cand = self.first + (start - self.first + k) % size
            ip = str(ipaddress.IPv4Address(cand))
            if cand == int(self.gateway) or ip in self.allocated:
                continue
            self.allocated[ip] = owner
            self.last_reserved = cand
            return ip
        raise RangeFull(f"no free address left in {self.subnet}")

    def release(self, ip: str) -> None:
        self.allocated.pop(ip, None)

    def to_dict(self) -> dict:
        last = str(ipaddress.IPv4Address(self.last_reserved)) if self.last_reserved is not None else None
        return {"allocated": self.allocated, "last": last}
