"""The endpoint controller: keeps every selector Service's EndpointSlices (and the v1
Endpoints mirror) in line with its pods.

Decisions come from :mod:`testbed.k8s.endpoints` (``desired_slices``, ``endpoints_mirror``);
this module only feeds them from informer caches and writes the differences:

* watches Services, Pods, EndpointSlices, Endpoints and Nodes (nodes are passed to
  ``desired_slices`` only when there are any, so a store without Node objects works);
* events mark *Service keys* dirty (pods through a label index of selectors, slices
  through their ``kubernetes.io/service-name`` label); the worker reconciles each dirty
  Service once per batch, so a burst of thousands of events costs one pass per Service;
* our own writes are applied to the caches at once (write-through), and their watch
  events are then recognised as already known and ignored;
* a deleted Service's managed slices and its Endpoints are deleted (there is no garbage
  collector in the testbed to follow the ownerReferences); slices managed by anything
  else are never touched.

Events (``source.component: endpointslice-controller``) on the Service:
``ClusterIPAllocated`` when the controller first works on a Service (with its ClusterIP),
``EndpointSliceCreated``/``Updated``/``Deleted``, ``EndpointsCreated``/``Updated``, and
``FailedToUpdateEndpointSlices``/``FailedToUpdateEndpoint`` warnings on errors.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Mapping

from testbed.k8s import endpoints as ep
from testbed.k8s.selectors import matches_set

from .base import Controller, Key, key_of

SERVICE, POD, SLICE, ENDPOINTS, NODE = "Service", "Pod", "EndpointSlice", "Endpoints", "Node"


def _meta(o: Mapping) -> Mapping:
    return o.get("metadata") or {}


def _spec(o: Mapping) -> Mapping:
    return o.get("spec") or {}


def _pod_projection(pod: Mapping) -> tuple:
    """What of a pod can change its endpoints (other changes are ignored)."""
    m, s, st = _meta(pod), _spec(pod), pod.get("status") or {}
    ready = None
    for c in st.get("conditions") or []:
        if c.get("type") == "Ready":
            ready = c.get("status")
    ports = tuple(
        (p.get("name"), p.get("containerPort"), p.get("protocol"))
        for c in (s.get("containers") or []) + (s.get("initContainers") or [])
        for p in c.get("ports") or []
    )
    labels = m.get("labels") or {}
    return (tuple(sorted(labels.items())), ready, st.get("phase"), st.get("podIP"),
            tuple(i.get("ip") for i in st.get("podIPs") or []), m.get("deletionTimestamp"),
            s.get("nodeName"), s.get("hostname"), s.get("subdomain"), m.get("uid"), ports)


def _selector_index_key(svc: Mapping) -> tuple | None:
    sel = _spec(svc).get("selector")
    if not sel or _spec(svc).get("type") == "ExternalName":
        return None
    k = min(sel)
    return (_meta(svc).get("namespace", ""), k, sel[k])


def _ports_text(ports: list[dict]) -> str:
    if not ports:
        return "<none>"
    return ",".join(f"{p.get('name') + '=' if p.get('name') else ''}{p.get('port')}/{p.get('protocol', 'TCP')}"
                    for p in ports)


def _slice_summary(sl: Mapping) -> str:
    eps = sl.get("endpoints") or []
    ready = sum(1 for e in eps if (e.get("conditions") or {}).get("ready") is not False)
    return (f"{len(eps)} endpoint{'s' if len(eps) != 1 else ''} ({ready} ready), "
            f"{sl.get('addressType')}, ports {_ports_text(sl.get('ports') or [])}")


class EndpointSliceController(Controller):
    name = "endpointslice-controller"
    component = "endpointslice-controller"
    kinds = (SERVICE, POD, SLICE, ENDPOINTS, NODE)

    def __init__(self, store: Any, stop=None, *, recorder=None, namespace: str | None = None,
                 max_endpoints_per_slice: int = ep.MAX_ENDPOINTS_PER_SLICE,
                 mirror_endpoints: bool = True, rng: random.Random | None = None,
                 record_normal_events: bool = True):
        super().__init__(store, stop, recorder=recorder, namespace=namespace)
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self.mirror_endpoints = mirror_endpoints
        self.rng = rng or random.Random()
        self.record_normal_events = record_normal_events
        # (ns, label key, value) -> {pod key: pod}
        self._pods_by_label: dict[tuple, dict[Key, dict]] = defaultdict(dict)
        # (ns, first selector key, value) -> {service key}
        self._svcs_by_selector: dict[tuple, set[Key]] = defaultdict(set)
        # (ns, service name) -> {slice key}
        self._slices_by_service: dict[Key, set[Key]] = defaultdict(set)
        self._introduced: set[str] = set()  # Service uids with a ClusterIPAllocated event

    # -- indexes ----------------------------------------------------------------------------
    def _index_pod(self, pod: Mapping, add: bool) -> None:
        k = key_of(pod)
        ns = k[0]
        for lk, lv in (_meta(pod).get("labels") or {}).items():
            bucket = self._pods_by_label[(ns, lk, lv)]
            if add:
                bucket[k] = pod
            else:
                bucket.pop(k, None)
                if not bucket:
                    del self._pods_by_label[(ns, lk, lv)]

    def _services_for_pod(self, pod: Mapping) -> set[Key]:
        ns = _meta(pod).get("namespace", "")
        labels = _meta(pod).get("labels") or {}
        out: set[Key] = set()
        for lk, lv in labels.items():
            for sk in self._svcs_by_selector.get((ns, lk, lv), ()):
                svc = self.caches[SERVICE].get(sk)
                if svc is not None and matches_set(_spec(svc).get("selector") or {}, labels):
                    out.add(sk)
        return out

    def pods_for(self, svc: Mapping) -> list[dict]:
        sel = _spec(svc).get("selector") or {}
        if not sel:
            return []
        ns = _meta(svc).get("namespace", "")
        buckets = [self._pods_by_label.get((ns, k, v)) for k, v in sel.items()]
        if any(b is None for b in buckets):
            return []
        smallest = min(buckets, key=len)
        return [p for p in smallest.values() if matches_set(sel, _meta(p).get("labels"))]

    @staticmethod
    def _slice_service(sl: Mapping) -> Key | None:
        name = (_meta(sl).get("labels") or {}).get(ep.LABEL_SERVICE_NAME)
        return (_meta(sl).get("namespace", ""), name) if name else None

    @staticmethod
    def _is_managed(sl: Mapping) -> bool:
        return (_meta(sl).get("labels") or {}).get(ep.LABEL_MANAGED_BY) == ep.CONTROLLER_NAME

    # -- events -----------------------------------------------------------------------------
    def handle(self, kind: str, old: dict | None, new: dict | None, own: bool = False) -> None:
        if kind == POD:
            if old is not None and new is not None and _pod_projection(old) == _pod_projection(new):
                return
            keys: set[Key] = set()
            if old is not None:
                self._index_pod(old, False)
                keys |= self._services_for_pod(old)
            if new is not None:
                self._index_pod(new, True)
                keys |= self._services_for_pod(new)
            for k in keys:
                self.mark(k)
        elif kind == SERVICE:
            _reindex(self._svcs_by_selector, _selector_index_key, old, new)
            if not own:
                self.mark(key_of(new if new is not None else old))
        elif kind == SLICE:
            _reindex(self._slices_by_service, self._slice_service, old, new)
            if not own:
                for o in (old, new):
                    if o is not None and self._is_managed(o):
                        sk = self._slice_service(o)
                        if sk is not None:
                            self.mark(sk)
        elif kind == ENDPOINTS:
            # someone else changed an Endpoints object: put it back if its Service is ours
            k = key_of(new if new is not None else old)
            svc = self.caches[SERVICE].get(k)
            if not own and self.mirror_endpoints and svc is not None and _spec(svc).get("selector"):
                self.mark(k)
        elif kind == NODE:
            if old is not None and new is not None and \
                    (_meta(old).get("labels") or {}).get(ep.LABEL_ZONE) == (_meta(new).get("labels") or {}).get(ep.LABEL_ZONE):
                return
            for svc in self.caches[SERVICE].values():
                if _spec(svc).get("selector"):
                    self.mark(key_of(svc))

    # -- reconcile --------------------------------------------------------------------------
    def slices_of(self, key: Key) -> list[dict]:
        cache = self.caches[SLICE]
        return [s for s in (cache.get(k) for k in self._slices_by_service.get(key, ())) if s is not None]

    def reconcile(self, key: Key) -> None:
        svc = self.caches[SERVICE].get(key)
        if svc is None:
            self._service_gone(key)
            return
        existing = self.slices_of(key)
        spec = _spec(svc)
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return
        uid = _meta(svc).get("uid", "")
        if uid not in self._introduced:
            self._introduced.add(uid)
            if not any(self._is_managed(s) for s in existing) and self.record_normal_events:
                cip = spec.get("clusterIP") or ""
                if cip == "None":
                    msg = "Headless Service stored (clusterIP None); endpoints come from its selector"
                elif cip:
                    msg = f"Service stored with ClusterIP {', '.join(spec.get('clusterIPs') or [cip])}"
                else:
                    msg = "Service stored without a ClusterIP"
                self.recorder.normal(svc, "ClusterIPAllocated", msg)
        nodes = self.caches[NODE]
        creates, updates, deletes = ep.desired_slices(
            svc, self.pods_for(svc), existing,
            nodes={k[1]: n for k, n in nodes.objects.items()} if len(nodes) else None,
            max_endpoints_per_slice=self.max_endpoints_per_slice, rng=self.rng)
        try:
            for sl in creates:
                out = self.store.create(sl)
                self.written(SLICE, out)
                if self.record_normal_events:
                    self.recorder.normal(svc, "EndpointSliceCreated",
                                         f"Created EndpointSlice {_meta(out)['name']}: {_slice_summary(out)}")
            for sl in updates:
                out = self.store.update(sl)
                self.written(SLICE, out)
                if self.record_normal_events:
                    self.recorder.normal(svc, "EndpointSliceUpdated",
                                         f"Updated EndpointSlice {_meta(out)['name']}: {_slice_summary(out)}")
            for sl in deletes:
                name = _meta(sl).get("name", "")
                try:
                    self.store.delete(SLICE, key[0], name)
                except Exception as e:  # noqa: BLE001
                    if getattr(e, "code", None) != 404:
                        raise
                self.deleted(SLICE, (key[0], name))
                if self.record_normal_events:
                    self.recorder.normal(svc, "EndpointSliceDeleted", f"Deleted EndpointSlice {name}")
        except Exception as e:
            self.recorder.warning(svc, "FailedToUpdateEndpointSlices",
                                  f"Error updating Endpoint Slices for Service {key[0]}/{key[1]}: {e}")
            raise
        if self.mirror_endpoints:
            self._mirror(svc, key)

    def _mirror(self, svc: dict, key: Key) -> None:
        managed = [s for s in self.slices_of(key) if self._is_managed(s)]
        want = ep.endpoints_mirror(svc, managed)
        if want is None:
            return
        have = self.caches[ENDPOINTS].get(key)
        try:
            if have is None:
                out = self.store.create(want)
                self.written(ENDPOINTS, out)
                if self.record_normal_events:
                    self.recorder.normal(svc, "EndpointsCreated", f"Created Endpoints {key[1]}: {_addresses_text(out)}")
                return
            hm, wm = _meta(have), want["metadata"]
            hann = dict(hm.get("annotations") or {})
            wann = dict(hann)
            if (wm.get("annotations") or {}).get(ep.ANNOTATION_OVER_CAPACITY):
                wann[ep.ANNOTATION_OVER_CAPACITY] = "truncated"
            else:
                wann.pop(ep.ANNOTATION_OVER_CAPACITY, None)
            if (hm.get("labels") or {}) == (wm.get("labels") or {}) and hann == wann \
                    and (have.get("subsets") or []) == (want.get("subsets") or []):
                return
            new = {k: v for k, v in have.items() if k != "subsets"}
            new["metadata"] = dict(hm, labels=wm.get("labels") or {})
            if wann:
                new["metadata"]["annotations"] = wann
            else:
                new["metadata"].pop("annotations", None)
            if want.get("subsets"):
                new["subsets"] = want["subsets"]
            out = self.store.update(new)
            self.written(ENDPOINTS, out)
            if self.record_normal_events:
                self.recorder.normal(svc, "EndpointsUpdated", f"Updated Endpoints {key[1]}: {_addresses_text(out)}")
        except Exception as e:
            if getattr(e, "code", None) == 409 or getattr(e, "code", None) == 404:
                raise  # stale cache: retried quietly
            self.recorder.warning(svc, "FailedToUpdateEndpoint", f"Failed to update endpoint {key[0]}/{key[1]}: {e}")
            raise

    def _service_gone(self, key: Key) -> None:
        for sl in self.slices_of(key):
            if not self._is_managed(sl):
                continue
            name = _meta(sl).get("name", "")
            try:
                self.store.delete(SLICE, key[0], name)
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 404:
                    raise
            self.deleted(SLICE, (key[0], name))
        if self.mirror_endpoints and self.caches[ENDPOINTS].get(key) is not None:
            try:
                self.store.delete(ENDPOINTS, key[0], key[1])
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 404:
                    raise
            self.deleted(ENDPOINTS, key)


def _addresses_text(endpoints: Mapping, limit: int = 3) -> str:
    addrs = []
    for ss in endpoints.get("subsets") or []:
        ports = ss.get("ports") or [{}]
        for a in ss.get("addresses") or []:
            for p in ports:
                addrs.append(f"{a['ip']}:{p['port']}" if p.get("port") else a["ip"])
    if not addrs:
        return "<none>"
    more = len(addrs) - limit
    return ",".join(addrs[:limit]) + (f" + {more} more..." if more > 0 else "")


def _reindex(index, index_key, old: dict | None, new: dict | None) -> None:
    """Move an object's key in a ``{index key: set of object keys}`` index from old to new."""
    for o, add in ((old, False), (new, True)):
        if o is None:
            continue
        ik = index_key(o)
        if ik is None:
            continue
        if add:
            index[ik].add(key_of(o))
        else:
            members = index.get(ik)
            if members is not None:
                members.discard(key_of(o))
                if not members:
                    del index[ik]
