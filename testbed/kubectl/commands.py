"""kubectl-like verbs over an API client: apply, delete, get, describe, events.

Each returns text (or yields lines) so the CLI stays a thin layer and tests can call them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from ..apiserver.errors import ApiError, NotFound
from ..k8s import manifests as mf
from . import describe as desc
from . import printers
from .resources import parse_args, resolve


def load(files: list[str]) -> list[dict]:
    """Objects from files (``-`` is stdin): multi-document YAML, ``List`` objects."""
    objs: list[dict] = []
    for f in files:
        if f == "-":
            objs += mf.load_string(sys.stdin.read(), "<stdin>")
        else:
            objs += mf.load_file(f)
    return objs


def _ref(obj: dict) -> str:
    info = resolve(obj["kind"])
    return f"{info.singular}{'.' + info.group if info.group else ''}/{obj['metadata']['name']}"


# the field manager of ``testbed apply``: the user's declaration, applied server-side
APPLY_MANAGER = "testbed-apply"


def apply(api: Any, objs: list[dict], namespace: str | None = None) -> list[str]:
    """``kubectl apply``: create or update each object; one ``kind/name created|configured|unchanged`` line each.

    Server-side apply (forced: the file is the user's word), so what the user does not set is
    left as others wrote it (a Deployment's revision annotation, a Service's allocated
    addresses) and applying the same file again changes nothing."""
    out = []
    for obj in objs:
        src = mf.source_of(obj)
        obj = dict(obj)
        meta = obj.setdefault("metadata", {})
        if namespace and resolve(obj["kind"]).namespaced and not meta.get("namespace"):
            meta["namespace"] = namespace
        try:
            before = api.get(obj["kind"], meta.get("namespace") or "default", meta["name"])
        except NotFound:
            before = None
        try:
            after = api.server_apply(obj, APPLY_MANAGER)
        except ApiError as exc:  # kubectl: Error from server (Invalid): error when creating "f.yaml": ...
            where = f' "{src}"' if src else ""
            reason = getattr(exc, "reason", "") or type(exc).__name__
            raise ApiError(f"Error from server ({reason}): error when {'creating' if before is None else 'applying'}"
                           f"{where}: {exc}") from None
        if before is None:
            verb = "created"
        elif after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]:
            verb = "unchanged"
        else:
            verb = "configured"
        out.append(f"{_ref(obj)} {verb}")
    return out


def delete(api: Any, refs: list[tuple[str, str | None, str]], *, ignore_not_found: bool = False) -> Iterator[str]:
    """Delete (kind, namespace, name) triples, yielding ``kind "name" deleted`` lines. As kubectl,
    an object that is not there does not stop the others: the first NotFound is raised at the end."""
    missing: NotFound | None = None
    for kind, ns, name in refs:
        info = resolve(kind)
        try:
            api.delete(info.kind, ns if info.namespaced else None, name)
            yield f'{info.singular} "{name}" deleted'
        except NotFound as exc:
            if not ignore_not_found and missing is None:
                missing = exc
    if missing is not None:
        raise missing


def get(api: Any, args: list[str], *, namespace: str | None = "default", all_namespaces: bool = False,
        output: str = "", selector: str | None = None) -> str:
    """``kubectl get``; output ``""`` (table), ``wide``, ``json`` or ``yaml``."""
    if output not in ("", "wide", "json", "yaml"):
        raise ValueError(f"unable to match a printer suitable for the output format {output!r}, "
                         "allowed formats are: json, wide, yaml")
    ns = None if all_namespaces else namespace
    chunks, everything = [], []
    single = None
    for info, name in parse_args(args):
        if name is not None:
            obj = api.get(info.kind, ns if info.namespaced else None, name)
            objs = [obj]
            single = obj if len(parse_args(args)) == 1 else None
        else:
            objs, _ = api.list(info.kind, ns if info.namespaced else None, label_selector=selector)
            objs.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        everything += objs
        if output in ("", "wide"):
            text = printers.format_table(info.kind, objs, wide=output == "wide",
                                         all_namespaces=all_namespaces and info.namespaced)
            chunks.append(text or printers.no_resources(ns if info.namespaced else None, info.kind) + "\n")
    if output == "json":
        return printers.to_json(single if single is not None else everything)
    if output == "yaml":
        return printers.to_yaml(single if single is not None else everything)
    return "\n".join(c.rstrip("\n") for c in chunks) + "\n"


def describe(api: Any, kind: str, name: str, namespace: str = "default") -> str:
    info = resolve(kind)
    obj = api.get(info.kind, namespace, name)
    events, _ = api.list("Event", namespace)
    evs = desc.events_for(obj, events)
    if info.kind == "Service":
        slices, _ = api.list("EndpointSlice", namespace, label_selector=f"kubernetes.io/service-name={name}")
        return desc.describe_service(obj, slices, evs)
    if info.kind == "Pod":
        return desc.describe_pod(obj, evs)
    if info.kind == "Ingress":
        return desc.describe_ingress(obj, api.list("Service", namespace)[0], api.list("EndpointSlice", namespace)[0], evs)
    raise ValueError(f"describe supports services, pods and ingresses, not {kind!r}")


def events(api: Any, *, namespace: str | None = None, watch: bool = False) -> Iterator[str]:
    """The cluster's events as a timeline, oldest first; with ``watch`` keep following."""
    items, rv = api.list("Event", namespace)
    items.sort(key=lambda e: (e.get("lastTimestamp") or e.get("firstTimestamp") or "", e["metadata"]["name"]))
    yield _timeline_header()
    for e in items:
        yield _timeline_line(e)
    if not watch:
        return
    for ev in api.watch("Event", namespace, resource_version=rv):
        if ev["type"] in ("ADDED", "MODIFIED"):
            yield _timeline_line(ev["object"])


def _timeline_header() -> str:
    return f"{'TIME':<20}  {'COMPONENT':<22} {'OBJECT':<36} {'REASON':<24} MESSAGE"


def _timeline_line(e: dict) -> str:
    io = e.get("involvedObject") or {}
    obj = f"{io.get('kind', '').lower()}/{io.get('name', '')}"
    src = (e.get("source") or {}).get("component", "")
    host = (e.get("source") or {}).get("host")
    if host:
        src = f"{src}@{host}"
    count = e.get("count") or 1
    msg = e.get("message", "") + (f" (x{count})" if count > 1 else "")
    ts = (e.get("lastTimestamp") or e.get("firstTimestamp") or "").replace("T", " ").rstrip("Z")
    return f"{ts:<20}  {src:<22} {obj:<36} {e.get('reason', ''):<24} {msg}"
