"""Wait until the cluster's state is what the checks will test: Deployments rolled out,
LoadBalancers given an address, every node's kube-proxy caught up with the API. Waiting is on
API watches and on inotify of the proxies' metrics files (``proxy.status.wait_programmed``),
never on fixed sleeps."""

from __future__ import annotations

import time

from ..errors import TestbedError
from ..proxy.status import wait_programmed


def deployment_done(d: dict) -> bool:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    want = spec.get("replicas", 1)
    return (st.get("observedGeneration", 0) >= (d.get("metadata") or {}).get("generation", 0)
            and st.get("updatedReplicas", 0) == want and st.get("readyReplicas", 0) == want
            and st.get("replicas", 0) == want)


class Settler:
    """Waiting on state for ``Verifier`` (``self.c`` the cluster, ``self.plan`` its plan)."""

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the API's Deployments are rolled out, LoadBalancers have an address and
        every node's proxy has programmed the newest Service and EndpointSlice."""
        from ..controllers.base import wait_for
        from ..controlplane import slowdown

        deadline = time.monotonic() + timeout * slowdown()
        with self.c.api() as api:
            deps, _ = api.list("Deployment") if self._has_kind(api, "Deployment") else ([], None)
            if deps:
                def rolled(items):
                    return all(deployment_done(d) for d in items)
                try:
                    wait_for(api, "Deployment", rolled, timeout=max(1.0, deadline - time.monotonic()))
                except TimeoutError as exc:
                    raise TestbedError(f"Deployments did not become ready: {exc}") from None
            svcs, _ = api.list("Service")
            if any((s.get("spec") or {}).get("type") == "LoadBalancer" for s in svcs):
                def assigned(items):
                    return all((x.get("status") or {}).get("loadBalancer", {}).get("ingress")
                               for x in items if (x.get("spec") or {}).get("type") == "LoadBalancer")
                try:
                    wait_for(api, "Service", assigned, timeout=max(1.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise TestbedError("LoadBalancer Services got no address from the load-balancer controller") from None
            svcs, _ = api.list("Service")
            slices, _ = api.list("EndpointSlice")
        if self.plan.proxy_mode == "none":
            return
        # the kind decides which of the proxy's applied resourceVersions an object is compared with
        objects = [{**o, "kind": "Service"} for o in svcs] + [{**o, "kind": "EndpointSlice"} for o in slices]
        try:
            wait_programmed(self.c.name, objects, [n.name for n in self.plan.nodes],
                            timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError as exc:
            raise TestbedError(f"kube-proxy has not programmed the current Services/EndpointSlices: {exc}") from None

    @staticmethod
    def _has_kind(api, kind: str) -> bool:
        try:
            api.list(kind)
            return True
        except Exception:
            return False
