"""The cloud provider's load-balancer part (like MetalLB or a cloud's service controller):
Services of ``type: LoadBalancer`` get ``status.loadBalancer.ingress[0].ip`` from a pool.

* The pool is an IPv4 CIDR; its host addresses are handed out lowest first.
* ``spec.loadBalancerIP`` is honoured when it is in the pool and not used by another
  Service; otherwise the Service keeps what it has (if anything) and a
  ``SyncLoadBalancerFailed`` Warning says why.
* Services with ``spec.loadBalancerClass`` belong to another implementation and are skipped.
* An address is released when its Service is deleted or stops being a LoadBalancer (the
  ingress is then removed from its status); Services waiting for a free address are retried
  whenever one is released.
* On start, the allocations are rebuilt from the Services' existing status (oldest Service
  first when two claim the same address), before anything new is allocated.

Events (``source.component: service-controller``): ``EnsuringLoadBalancer``,
``IPAllocated`` (``Assigned IP ["..."]``), ``EnsuredLoadBalancer``,
``DeletingLoadBalancer``/``DeletedLoadBalancer``, ``SyncLoadBalancerFailed``.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Iterator, Mapping

from .base import Controller, Key, key_of

SERVICE = "Service"
DEFAULT_POOL = "172.18.255.0/24"


def _spec(o: Mapping) -> Mapping:
    return o.get("spec") or {}


def _meta(o: Mapping) -> Mapping:
    return o.get("metadata") or {}


def ingress_ips(svc: Mapping) -> list[str]:
    lb = (svc.get("status") or {}).get("loadBalancer") or {}
    return [i["ip"] for i in lb.get("ingress") or [] if i.get("ip")]


class IPPool:
    """Addresses of an IPv4 CIDR, allocated lowest first."""

    def __init__(self, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        if self.network.version != 4:
            raise ValueError(f"load-balancer pool must be an IPv4 CIDR, not {cidr}")
        self.owner: dict[str, Key] = {}  # ip -> service key

    def __contains__(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def _hosts(self) -> Iterator[ipaddress.IPv4Address]:
        if self.network.prefixlen >= 31:
            return iter(self.network)
        return self.network.hosts()

    def next_free(self) -> str | None:
        for a in self._hosts():
            s = str(a)
            if s not in self.owner:
                return s
        return None

    @property
    def size(self) -> int:
        n = self.network.num_addresses
        return n if self.network.prefixlen >= 31 else n - 2


class LoadBalancerController(Controller):
    name = "loadbalancer-controller"
    component = "service-controller"
    kinds = (SERVICE,)

    def __init__(self, store: Any, stop=None, *, recorder=None, pool: str = DEFAULT_POOL):
        super().__init__(store, stop, recorder=recorder)
        self.pool = IPPool(pool)
        self.assigned: dict[Key, str] = {}
        self._waiting: set[Key] = set()
        self._last_seen: dict[Key, dict] = {}  # for events about deleted Services

    @staticmethod
    def wants_lb(svc: Mapping | None) -> bool:
        return svc is not None and _spec(svc).get("type") == "LoadBalancer" and not _spec(svc).get("loadBalancerClass")

    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        if own:
            return
        obj = new if new is not None else old
        if new is None and key_of(obj) not in self.assigned and not self.wants_lb(old):
            return
        if new is not None and old is not None and not self.wants_lb(new) and not self.wants_lb(old) \
                and key_of(obj) not in self.assigned:
            return
        self.mark(key_of(obj))

    def on_synced(self) -> None:
        """Rebuild the allocations from the Services' status (oldest first)."""
        svcs = sorted(self.caches[SERVICE].values(),
                      key=lambda s: (_meta(s).get("creationTimestamp") or "", key_of(s)))
        for svc in svcs:
            if not self.wants_lb(svc):
                continue
            for ip in ingress_ips(svc):
                if ip in self.pool and ip not in self.pool.owner:
                    self._take(key_of(svc), ip)
                    break

    # -- allocation -------------------------------------------------------------------------
    def _take(self, key: Key, ip: str) -> None:
        self.pool.owner[ip] = key
        self.assigned[key] = ip

    def _release(self, key: Key) -> str | None:
        ip = self.assigned.pop(key, None)
        if ip is not None and self.pool.owner.get(ip) == key:
            del self.pool.owner[ip]
            for k in self._waiting:
                self.mark(k)
        return ip

    # -- reconcile --------------------------------------------------------------------------
    def reconcile(self, key: Key) -> None:
        svc = self.caches[SERVICE].get(key)
        if svc is not None:
            self._last_seen[key] = svc
        if not self.wants_lb(svc):
            self._waiting.discard(key)
            last = svc if svc is not None else self._last_seen.pop(key, None)
            had = key in self.assigned
            if had and last is not None:
                self.recorder.normal(last, "DeletingLoadBalancer", "Deleting load balancer")
            ip = self._release(key)
            if svc is not None and ingress_ips(svc) and not _spec(svc).get("loadBalancerClass"):
                status = dict(svc.get("status") or {})
                status["loadBalancer"] = {}
                out = self.store.update_status({**svc, "status": status})
                self.written(SERVICE, out)
            if had and last is not None:
                self.recorder.normal(last, "DeletedLoadBalancer", f"Deleted load balancer (released {ip})")
            return

        want = _spec(svc).get("loadBalancerIP") or ""
        current = self.assigned.get(key)
        target = current
        if want and want != current:
            if want not in self.pool:
                self.recorder.warning(svc, "SyncLoadBalancerFailed",
                                      f"Error syncing load balancer: requested IP {want} is not in the pool {self.pool.network}")
            elif want in self.pool.owner and self.pool.owner[want] != key:
                other = "/".join(self.pool.owner[want])
                self.recorder.warning(svc, "SyncLoadBalancerFailed",
                                      f"Error syncing load balancer: requested IP {want} is already in use by {other}")
            else:
                if current is not None:
                    self._release(key)
                self._take(key, want)
                target = want
        if target is None:
            for ip in ingress_ips(svc):  # adopt what the status says (e.g. after a restart)
                if ip in self.pool and ip not in self.pool.owner and (not want or ip == want):
                    self._take(key, ip)
                    target = ip
                    break
        if target is None and not want:
            ip = self.pool.next_free()
            if ip is None:
                self._waiting.add(key)
                self.recorder.warning(svc, "SyncLoadBalancerFailed",
                                      f"Error syncing load balancer: no available IPs in pool {self.pool.network}")
                return
            self._take(key, ip)
            target = ip
        if target is None:
            return
        self._waiting.discard(key)
        ingress = [{"ip": target}]
        lb = (svc.get("status") or {}).get("loadBalancer") or {}
        if (lb.get("ingress") or []) == ingress:
            return
        self.recorder.normal(svc, "EnsuringLoadBalancer", "Ensuring load balancer")
        status = dict(svc.get("status") or {})
        status["loadBalancer"] = {"ingress": ingress}
        out = self.store.update_status({**svc, "status": status})
        self.written(SERVICE, out)
        self._last_seen[key] = out
        self.recorder.normal(out, "IPAllocated", f"Assigned IP {json.dumps([target])}")
        self.recorder.normal(out, "EnsuredLoadBalancer", "Ensured load balancer")
