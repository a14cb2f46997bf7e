"""Defaulting as the API server does it (``pkg/apis/*/v1/defaults.go`` plus the default
admission plugins that change what ``kubectl get -o json`` shows).

Every function mutates the given dict in place and returns it.
"""

from __future__ import annotations

from . import networking

DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_TOLERATION_SECONDS = 300


def _spec(obj: dict) -> dict:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def _meta(obj: dict) -> dict:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


# --- Service ----------------------------------------------------------------------


def default_service_ports(spec: dict) -> None:
    """protocol TCP; targetPort = port when unset (0 or "")."""
    for sp in spec.get("ports") or []:
        if not sp.get("protocol"):
            sp["protocol"] = "TCP"
        if sp.get("targetPort") in (None, 0, ""):
            if sp.get("port") is not None:
                sp["targetPort"] = sp["port"]


def default_session_affinity(spec: dict) -> None:
    """sessionAffinity None (config dropped); ClientIP gets timeoutSeconds 10800."""
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig") or {}
        cip = cfg.get("clientIP") or {}
        if cip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}}


def default_service(svc: dict) -> dict:
    """``SetDefaults_Service``."""
    spec = _spec(svc)
    default_session_affinity(spec)
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    default_service_ports(spec)
    t = spec["type"]
    externally = t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))
    if externally and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and t in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec["internalTrafficPolicy"] = "Cluster"
    if t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    svc.setdefault("status", {}).setdefault("loadBalancer", {})
    return svc


# --- Pod --------------------------------------------------------------------------


def image_pull_policy(image: str) -> str:
    """Always for ``:latest`` or untagged images, IfNotPresent otherwise."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_probe(probe: dict | None) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    hg = probe.get("httpGet")
    if isinstance(hg, dict):
        hg.setdefault("path", "/")
        hg.setdefault("scheme", "HTTP")


def default_container(ctr: dict, host_network: bool) -> None:
    if not ctr.get("imagePullPolicy"):
        image = ctr.get("image")
        ctr["imagePullPolicy"] = image_pull_policy(image) if isinstance(image, str) and image else "IfNotPresent"
    ctr.setdefault("terminationMessagePath", "/dev/termination-log")
    ctr.setdefault("terminationMessagePolicy", "File")
    ctr.setdefault("resources", {})
    res = ctr["resources"]
    if isinstance(res, dict) and res.get("limits"):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)
    for p in ctr.get("ports") or []:
        if not p.get("protocol"):
            p["protocol"] = "TCP"
        if host_network and not p.get("hostPort") and p.get("containerPort"):
            p["hostPort"] = p["containerPort"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        default_probe(ctr.get(probe))


def default_pod_spec(spec: dict) -> dict:
    """``SetDefaults_PodSpec`` + containers, plus what default admission plugins add."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_PERIOD)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", DEFAULT_SCHEDULER_NAME)
    spec.setdefault("enableServiceLinks", True)
    # ServiceAccount admission plugin (without the projected token volume).
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    host_network = bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers"):
        for ctr in spec.get(key) or []:
            if isinstance(ctr, dict):
                default_container(ctr, host_network)
    return spec


def default_tolerations(spec: dict) -> None:
    """DefaultTolerationSeconds admission plugin: tolerate not-ready/unreachable for 300s."""
    tols = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tols):
            tols.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}
            )


def _qos_class(spec: dict) -> str:
    reqs, lims, ctrs = [], [], spec.get("containers") or []
    for c in ctrs:
        r = (c.get("resources") or {})
        reqs.append(r.get("requests") or {})
        lims.append(r.get("limits") or {})
    if not any(reqs) and not any(lims):
        return "BestEffort"
    guaranteed = all(
        l.get("cpu") and l.get("memory") and r.get("cpu", l["cpu"]) == l["cpu"] and r.get("memory", l["memory"]) == l["memory"]
        for r, l in zip(reqs, lims)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(pod: dict) -> dict:
    spec = _spec(pod)
    default_pod_spec(spec)
    default_tolerations(spec)
    spec.setdefault("priority", 0)
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", _qos_class(spec))
    return pod


def default_pod_template(tmpl: dict) -> None:
    if not isinstance(tmpl, dict):
        return
    meta = tmpl.setdefault("metadata", {})
    meta.setdefault("creationTimestamp", None)
    spec = tmpl.get("spec")
    if isinstance(spec, dict):
        default_pod_spec(spec)


# --- apps/v1 ----------------------------------------------------------------------


def default_deployment(dep: dict) -> dict:
    """``SetDefaults_Deployment``: replicas 1, RollingUpdate 25%/25%, history 10, deadline 600."""
    spec = _spec(dep)
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if ru is None:
            ru = strategy["rollingUpdate"] = {}
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = "25%"
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = "25%"
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_pod_template(spec.get("template"))
    dep.setdefault("status", {})
    return dep


def default_replicaset(rs: dict) -> dict:
    spec = _spec(rs)
    spec.setdefault("replicas", 1)
    default_pod_template(spec.get("template"))
    rs.setdefault("status", {"replicas": 0})
    return rs


# --- discovery / endpoints / namespace -------------------------------------------


def default_endpointslice(es: dict) -> dict:
    for p in es.get("ports") or []:
        if p.get("name") is None:
            p["name"] = ""
        if p.get("protocol") is None:
            p["protocol"] = "TCP"
    return es


def default_endpoints(ep: dict) -> dict:
    for ss in ep.get("subsets") or []:
        for p in ss.get("ports") or []:
            if not p.get("protocol"):
                p["protocol"] = "TCP"
    return ep


def default_namespace(ns: dict) -> dict:
    meta = _meta(ns)
    if meta.get("name"):
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    ns.setdefault("status", {}).setdefault("phase", "Active")
    return ns


DEFAULTERS = {
    "Namespace": default_namespace,
    "Pod": default_pod,
    "Service": default_service,
    "Endpoints": default_endpoints,
    "EndpointSlice": default_endpointslice,
    "Deployment": default_deployment,
    "ReplicaSet": default_replicaset,
    **networking.DEFAULTERS,
}


def apply_defaults(obj: dict) -> dict:
    """Default ``obj`` in place according to its kind (unknown kinds untouched)."""
    fn = DEFAULTERS.get(obj.get("kind", ""))
    return fn(obj) if fn else obj
