"""The ingress controller loop: list+watch Ingresses, IngressClasses, Services,
EndpointSlices and Secrets, and on every change (coalesced) resolve, build and render one
nginx.conf, check it with ``nginx -t``, and reload nginx only when the text changed; which
backend each location uses and the backends' ready endpoints are posted to nginx's Lua
balancer instead, so most changes under traffic reload nothing.

A bad Ingress (missing Secret, invalid certificate) gets a Warning event and keeps serving
its last good resolution; a configuration nginx rejects is never installed, the running one
keeps serving and every owned Ingress gets the error as an event.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..apiserver.client import ApiClient, ListWatch
from ..controllers.events import EventRecorder
from . import model, nginx, render

log = logging.getLogger(__name__)

WATCHED = ("Ingress", "IngressClass", "Service", "EndpointSlice", "Secret")
COMPONENT = "nginx-ingress-controller"


@dataclass(frozen=True)
class Options:
    api: str
    pod_namespace: str
    pod_name: str
    directory: str
    ingress_class: str = "nginx"
    controller_class: str = "k8s.io/ingress-nginx"
    publish_status_address: str = ""


class Controller:
    def __init__(self, opts: Options, client: ApiClient | None = None):
        self.opts = opts
        self.client = client or ApiClient(opts.api)
        self.events = EventRecorder(self.client, COMPONENT, host=opts.pod_name)
        self.watches = {k: ListWatch(self.client, k) for k in WATCHED}
        self.wake: queue.Queue = queue.Queue()
        self.stop_event = threading.Event()
        self.dir = Path(opts.directory)
        self.nginx = nginx.Nginx(self.dir, self.dir / "nginx.log")
        self.last_good: dict[str, model.Resolved] = {}
        self.reported: dict[tuple[str, str], str] = {}   # (ingress key, reason) -> last message
        self.applied: tuple[str, dict] | None = None
        self.table: str | None = None   # the dynamic table nginx holds
        self.syncs = 0
        self.reloads = 0
        self.posts = 0

    # --- inputs ---------------------------------------------------------------------

    def _cache(self, kind: str) -> dict:
        return dict(self.watches[kind].cache)

    def _class(self) -> tuple[str, bool] | None:
        """(name, is default) of the IngressClass this controller serves, if it exists."""
        for ic in self._cache("IngressClass").values():
            m = ic.get("metadata") or {}
            if m.get("name") == self.opts.ingress_class and \
                    (ic.get("spec") or {}).get("controller") == self.opts.controller_class:
                default = (m.get("annotations") or {}).get(model.DEFAULT_CLASS_ANNOTATION) == "true"
                return m["name"], default
        return None

    def status_address(self) -> str:
        if self.opts.publish_status_address:
            return self.opts.publish_status_address
        pod = self.client.get("Pod", self.opts.pod_namespace, self.opts.pod_name)
        return (pod.get("status") or {}).get("podIP", "")

    # --- one sync ---------------------------------------------------------------------

    def _report(self, ing: dict, reason: str, message: str) -> None:
        key = (f"{ing['metadata'].get('namespace')}/{ing['metadata']['name']}", reason)
        if self.reported.get(key) != message:
            self.reported[key] = message
            self.events.warning(ing, reason, message)

    def _forget(self, key: str, keep: str = "") -> None:
        for k in [k for k in self.reported if k[0] == key and k[1] != keep]:
            del self.reported[k]

    def owned_ingresses(self) -> list[dict]:
        cls = self._class()
        if cls is None:
            return []
        return [i for i in self._cache("Ingress").values() if model.owns(i, cls[0], cls[1])]

    def sync(self) -> bool:
        """Bring nginx to the current state; returns whether it (re)loaded a configuration."""
        self.syncs += 1
        owned = self.owned_ingresses()
        secrets = self._cache("Secret")
        resolved = []
        live = set()
        for ing in owned:
            key = f"{ing['metadata'].get('namespace')}/{ing['metadata']['name']}"
            live.add(key)
            try:
                r, warnings = model.resolve(ing, secrets)
            except model.ResolveError as e:
                self._report(ing, e.reason, str(e))
                if key in self.last_good:
                    resolved.append(self.last_good[key])
                continue
            self._forget(key, keep="AnnotationParsingFailed")  # a fixed problem is reported again if it returns
            for w in warnings:
                self._report(ing, "AnnotationParsingFailed", w)
            self.last_good[key] = r
            resolved.append(r)
        for gone in [k for k in self.last_good if k not in live]:
            del self.last_good[gone]
        config = model.build(resolved, self._cache("Service"), self._cache("EndpointSlice").values())
        text, table = render.render(config), render.dynamic(config)
        changed = self.applied != (text, config.files)
        if not changed and not self.nginx.running:
            log.warning("nginx is not running; starting it again")
            self.nginx.start()
            self.table = None
        if changed and not self._install(text, config.files, owned, table):
            return False
        if table != self.table:
            self._post(table)
        # only what nginx now serves is "reachable there"; a never-good Ingress gets no address
        served = {r.key for r in resolved}
        self._set_status([i for i in owned if f"{i['metadata'].get('namespace')}/{i['metadata']['name']}" in served])
        return changed

    def _post(self, table: str) -> None:
        self.posts += 1
        try:
            t0 = time.monotonic()
            answer = self.nginx.configure(table, f"{os.getpid()}-{self.posts}")
            log.info("posted the routes: %s (%.0f ms)", answer, (time.monotonic() - t0) * 1000)
        except nginx.NginxError as e:  # the next sync posts again
            log.error("%s", e)
            self.table = None
            return
        self.table = table

    def _install(self, text: str, files: dict, owned: list[dict], table: str) -> bool:
        candidate = nginx.write_tree(self.dir, "nginx.conf.candidate", text, files, remove_stale=False)
        try:
            nginx.check(self.dir, candidate)
        except nginx.NginxError as e:
            log.error("rejected configuration: %s", e)
            for ing in owned:
                self._report(ing, "RELOAD", f"Error reloading NGINX: {e}")
            return False
        os.replace(candidate, self.dir / "nginx.conf")
        for k in [k for k in self.reported if k[1] == "RELOAD"]:
            del self.reported[k]
        nginx.prune(self.dir, files)
        if self.nginx.running:
            # the old workers keep serving their locations until they exit: give them the old
            # routes next to the new ones (a later line wins in the table) until the reload is done
            self._post((self.table or "") + table)
            self.nginx.reload()
            self.reloads += 1
        else:
            self.nginx.start()
        self.table = None
        self.applied = (text, files)
        return True

    def _set_status(self, owned: list[dict]) -> None:
        addr = self.status_address()
        want = [{"ip": addr}] if addr else []
        for ing in owned:
            if ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress", []) != want:
                ing = dict(ing, status={"loadBalancer": {"ingress": want}})
                try:
                    self.client.update_status(ing)
                except Exception as e:  # noqa: BLE001 - retried on the next sync (our write wakes us)
                    log.warning("status of %s: %s", ing["metadata"]["name"], e)

    # --- loop -------------------------------------------------------------------------

    def run(self) -> None:
        nginx.prepare(self.dir)
        for kind, lw in self.watches.items():
            lw.run(lambda ev: self.wake.put(ev), name=f"ingress:{kind}")
        for lw in self.watches.values():
            while not lw.synced.wait(0.5):
                if self.stop_event.is_set():
                    return
        self.wake.put(None)
        while not self.stop_event.is_set():
            item = self.wake.get()
            if item == "stop":
                break
            while True:  # coalesce a burst of events into one sync
                try:
                    if self.wake.get_nowait() == "stop":
                        self.stop_event.set()
                except queue.Empty:
                    break
            if self.stop_event.is_set():
                break
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - keep serving; the next event retries
                log.exception("sync failed")

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.put("stop")
        for lw in self.watches.values():
            lw.stop()
        self.nginx.stop()
