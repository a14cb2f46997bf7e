"""Discovery documents: ``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>`` and
``/version``, with the short names, verbs and categories kubectl resolves ``svc``, ``po``,
``deploy`` or ``all`` through (upstream's values for the same resources)."""

from __future__ import annotations

from .kinds import KINDS, KindInfo
from .scale import SCALE_KINDS

# The one Kubernetes version the testbed speaks: /version and every node's nodeInfo.
KUBERNETES_VERSION = "v1.32.0"
GIT_VERSION = f"{KUBERNETES_VERSION}-testbed"

SHORT_NAMES = {
    "namespaces": ["ns"], "nodes": ["no"], "pods": ["po"], "services": ["svc"], "endpoints": ["ep"],
    "events": ["ev"], "configmaps": ["cm"], "deployments": ["deploy"], "replicasets": ["rs"],
    "ingresses": ["ing"],
}
# upstream puts these in the "all" category (kubectl get all)
CATEGORIES = {"pods": ["all"], "services": ["all"], "deployments": ["all"], "replicasets": ["all"]}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def version() -> dict:
    major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
    return {"major": major, "minor": minor, "gitVersion": GIT_VERSION, "gitCommit": "", "gitTreeState": "clean",
            "buildDate": "", "goVersion": "", "compiler": "gc", "platform": "linux/amd64"}


def _resource(k: KindInfo) -> dict:
    r = {"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced, "kind": k.kind,
         "verbs": VERBS}
    if k.plural in SHORT_NAMES:
        r["shortNames"] = SHORT_NAMES[k.plural]
    if k.plural in CATEGORIES:
        r["categories"] = CATEGORIES[k.plural]
    return r


def resource_list(group_version: str) -> dict | None:
    kinds = [k for k in KINDS.values() if k.api_version == group_version]
    if not kinds:
        return None
    resources = []
    for k in sorted(kinds, key=lambda k: k.plural):
        resources.append(_resource(k))
        if k.status_subresource:
            resources.append({"name": f"{k.plural}/status", "singularName": "", "namespaced": k.namespaced,
                              "kind": k.kind, "verbs": ["get", "patch", "update"]})
        if k.kind == "Pod":
            resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                              "verbs": ["get"]})
        if k.kind in SCALE_KINDS:
            resources.append({"name": f"{k.plural}/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
                              "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def discovery(path: str) -> dict | None:
    """The document served at *path*, or None when *path* is not a discovery path."""
    segs = [s for s in path.split("/") if s]
    if segs == ["version"]:
        return version()
    if segs == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    groups: dict[str, set[str]] = {}
    for k in KINDS.values():
        if k.group:
            groups.setdefault(k.group, set()).add(k.version)
    if segs == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
             "preferredVersion": {"groupVersion": f"{g}/{sorted(vs)[0]}", "version": sorted(vs)[0]}}
            for g, vs in sorted(groups.items())]}
    if len(segs) == 2 and segs[0] == "api":
        return resource_list(segs[1])
    if len(segs) == 3 and segs[0] == "apis":
        return resource_list(f"{segs[1]}/{segs[2]}")
    if len(segs) == 2 and segs[0] == "apis" and segs[1] in groups:
        vs = sorted(groups[segs[1]])
        return {"kind": "APIGroup", "apiVersion": "v1", "name": segs[1],
                "versions": [{"groupVersion": f"{segs[1]}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{segs[1]}/{vs[0]}", "version": vs[0]}}
    return None
