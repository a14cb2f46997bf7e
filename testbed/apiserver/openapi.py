"""OpenAPI documents for the served kinds, generated from ``testbed/k8s/schemas.py`` (the
same trees strict validation walks, so what kubectl is told and what the server enforces
cannot drift apart).

* ``/openapi/v3``: ``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}}}``;
* ``/openapi/v3/api/v1``, ``/openapi/v3/apis/<group>/<version>``: an OpenAPI 3.0 document per
  group-version, schemas named as upstream's (``io.k8s.api.core.v1.Service``), each kind's
  with ``x-kubernetes-group-version-kind``, and the item paths with their operations, whose
  ``PATCH`` lists ``fieldValidation``: that parameter is what kubectl looks for before it
  leaves validation to the server (``cli-runtime``'s query-param verifier);
* ``/openapi/v2``: the same schemas as one Swagger 2.0 document (``definitions``), which
  kubectl only reads as protobuf (``openapi_pb.py``).

Nested objects are named by the table below where upstream's name is known, else by their
parent's name and the field (``DeploymentSpec``); lists carry upstream's patch merge keys
(from ``patch.py``, the one place that knows them)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json

from ..k8s import schemas as S
from ..k8s.schema import BOOLEAN, INT_OR_STRING, INTEGER, NUMBER, OBJECT, STRING, Arr, Map, Obj
from .discovery import KUBERNETES_VERSION
from .kinds import KINDS, KindInfo
from .patch import merge_key

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
INT_OR_STRING_NAME = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_PKG = {"": "io.k8s.api.core.v1", "apps": "io.k8s.api.apps.v1", "discovery.k8s.io": "io.k8s.api.discovery.v1",
        "networking.k8s.io": "io.k8s.api.networking.v1"}
_CORE, _APPS, _NET = _PKG[""], _PKG["apps"], _PKG["networking.k8s.io"]

# shared sub-objects -> upstream's definition names
_NAMES = {id(o): n for o, n in (
    (S.OBJECT_META, f"{META}.ObjectMeta"), (S.OWNER_REFERENCE, f"{META}.OwnerReference"),
    (S.LABEL_SELECTOR, f"{META}.LabelSelector"), (S.CONDITION, f"{META}.Condition"),
    (S.OBJECT_REFERENCE, f"{_CORE}.ObjectReference"), (S.PROBE, f"{_CORE}.Probe"),
    (S.CONTAINER_PORT, f"{_CORE}.ContainerPort"), (S.ENV_VAR, f"{_CORE}.EnvVar"),
    (S.RESOURCES, f"{_CORE}.ResourceRequirements"), (S.CONTAINER, f"{_CORE}.Container"),
    (S.TOLERATION, f"{_CORE}.Toleration"), (S.POD_SPEC, f"{_CORE}.PodSpec"),
    (S.CONTAINER_STATUS, f"{_CORE}.ContainerStatus"), (S.POD_STATUS, f"{_CORE}.PodStatus"),
    (S.POD_TEMPLATE, f"{_CORE}.PodTemplateSpec"), (S.SERVICE_PORT, f"{_CORE}.ServicePort"),
    (S.SERVICE_SPEC, f"{_CORE}.ServiceSpec"), (S.SERVICE_STATUS, f"{_CORE}.ServiceStatus"),
    (S._HTTP_GET, f"{_CORE}.HTTPGetAction"), (S._TCP_SOCKET, f"{_CORE}.TCPSocketAction"),
    (S._EXEC, f"{_CORE}.ExecAction"), (S._HANDLER, f"{_CORE}.LifecycleHandler"),
    (S._CONTAINER_STATE, f"{_CORE}.ContainerState"), (S._POD_CONDITION, f"{_CORE}.PodCondition"),
    (S._ENDPOINT_ADDRESS, f"{_CORE}.EndpointAddress"), (S._ENDPOINT_PORT, f"{_CORE}.EndpointPort"),
    (S._WORKLOAD_CONDITION, f"{_APPS}.DeploymentCondition"), (S._INGRESS_BACKEND, f"{_NET}.IngressBackend"),
    (S._TYPED_LOCAL_REF, f"{_CORE}.TypedLocalObjectReference"),
)}
# anonymous sub-objects, by (parent's short name, field) -> upstream's short name (same package)
_FIELD_NAMES = {
    ("DeploymentSpec", "strategy"): "DeploymentStrategy", ("DeploymentStrategy", "rollingUpdate"):
    "RollingUpdateDeployment", ("LabelSelector", "matchExpressions"): "LabelSelectorRequirement",
    ("ServiceSpec", "sessionAffinityConfig"): "SessionAffinityConfig", ("SessionAffinityConfig", "clientIP"):
    "ClientIPConfig", ("ServiceStatus", "loadBalancer"): "LoadBalancerStatus",
    ("LoadBalancerStatus", "ingress"): "LoadBalancerIngress", ("LoadBalancerIngress", "ports"): "PortStatus",
    ("Endpoints", "subsets"): "EndpointSubset", ("EndpointSlice", "endpoints"): "Endpoint",
    ("Endpoint", "conditions"): "EndpointConditions", ("Endpoint", "hints"): "EndpointHints",
    ("IngressSpec", "rules"): "IngressRule", ("IngressSpec", "tls"): "IngressTLS",
    ("IngressRule", "http"): "HTTPIngressRuleValue", ("HTTPIngressRuleValue", "paths"): "HTTPIngressPath",
    ("IngressBackend", "service"): "IngressServiceBackend", ("IngressServiceBackend", "port"): "ServiceBackendPort",
    ("IngressStatus", "loadBalancer"): "IngressLoadBalancerStatus", ("IngressClassSpec", "parameters"):
    "IngressClassParametersReference", ("NodeSpec", "taints"): "Taint", ("NodeStatus", "addresses"): "NodeAddress",
    ("NodeStatus", "conditions"): "NodeCondition", ("NodeStatus", "nodeInfo"): "NodeSystemInfo",
    ("PodSpec", "dnsConfig"): "PodDNSConfig", ("PodDNSConfig", "options"): "PodDNSConfigOption",
    ("PodSpec", "hostAliases"): "HostAlias", ("PodSpec", "imagePullSecrets"): "LocalObjectReference",
    ("PodSpec", "readinessGates"): "PodReadinessGate", ("PodSpec", "schedulingGates"): "PodSchedulingGate",
    ("PodSpec", "os"): "PodOS", ("PodStatus", "podIPs"): "PodIP", ("PodStatus", "hostIPs"): "HostIP",
    ("Container", "lifecycle"): "Lifecycle", ("Probe", "grpc"): "GRPCAction", ("LifecycleHandler", "sleep"):
    "SleepAction", ("HTTPGetAction", "httpHeaders"): "HTTPHeader", ("Event", "source"): "EventSource",
    ("EndpointHints", "forZones"): "ForZone", ("IngressLoadBalancerStatus", "ingress"): "IngressLoadBalancerIngress",
    ("IngressLoadBalancerIngress", "ports"): "IngressPortStatus",
}

# (definition, field) -> required fields and descriptions, as upstream documents them
REQUIRED = {
    f"{_CORE}.ServicePort": ["port"], f"{_CORE}.Container": ["name"], f"{_CORE}.PodSpec": ["containers"],
    f"{_CORE}.ContainerPort": ["containerPort"], f"{_CORE}.EnvVar": ["name"],
    f"{META}.OwnerReference": ["apiVersion", "kind", "name", "uid"],
    f"{_APPS}.DeploymentSpec": ["selector", "template"], f"{_APPS}.ReplicaSetSpec": ["selector"],
    "io.k8s.api.discovery.v1.EndpointSlice": ["addressType", "endpoints"],
    f"{_CORE}.EndpointAddress": ["ip"], f"{_CORE}.EndpointPort": ["port"],
}
_TOP = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an object. Servers should "
                  "convert recognized schemas to the latest internal value, and may reject unrecognized values.",
    "kind": "Kind is a string value representing the REST resource this object represents. Servers may infer "
            "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.",
    "metadata": "Standard object's metadata.",
    "spec": "Spec defines the desired behavior of the object.",
    "status": "Most recently observed status of the object. Populated by the system. Read-only.",
}
DESCRIPTIONS = {
    f"{_CORE}.Service": "Service is a named abstraction of software service (for example, mysql) consisting of "
                        "local port (for example 3306) that the proxy listens on, and the selector that "
                        "determines which pods will answer requests sent through the proxy.",
    f"{_CORE}.ServiceSpec": "ServiceSpec describes the attributes that a user creates on a service.",
    f"{_CORE}.ServicePort": "ServicePort contains information on service's port.",
    f"{_CORE}.ServiceSpec.ports": "The list of ports that are exposed by this service.",
    f"{_CORE}.ServiceSpec.selector": "Route service traffic to pods with label keys and values matching this "
                                     "selector. If empty or not present, the service is assumed to have an "
                                     "external process managing its endpoints.",
    f"{_CORE}.ServiceSpec.clusterIP": "clusterIP is the IP address of the service and is usually assigned "
                                      "randomly. \"None\" makes a headless service.",
    f"{_CORE}.ServiceSpec.type": "type determines how the Service is exposed. Defaults to ClusterIP. Valid "
                                 "options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
    f"{_CORE}.ServiceSpec.externalTrafficPolicy": "describes how nodes distribute service traffic they "
                                                  "receive on one of the Service's \"externally-facing\" "
                                                  "addresses (NodePorts, ExternalIPs, and LoadBalancer IPs): "
                                                  "Cluster or Local.",
    f"{_CORE}.ServiceSpec.sessionAffinity": "Supports \"ClientIP\" and \"None\". Used to maintain session "
                                            "affinity.",
    f"{_CORE}.ServicePort.name": "The name of this port within the service. This must be a DNS_LABEL. All "
                                 "ports within a ServiceSpec must have unique names.",
    f"{_CORE}.ServicePort.protocol": "The IP protocol for this port. Supports \"TCP\", \"UDP\", and "
                                     "\"SCTP\". Default is TCP.",
    f"{_CORE}.ServicePort.appProtocol": "The application protocol for this port, a hint for implementations.",
    f"{_CORE}.ServicePort.port": "The port that will be exposed by this service.",
    f"{_CORE}.ServicePort.targetPort": "Number or name of the port to access on the pods targeted by the "
                                       "service. Defaults to the value of the 'port' field.",
    f"{_CORE}.ServicePort.nodePort": "The port on each node on which this service is exposed when type is "
                                     "NodePort or LoadBalancer. Usually assigned by the system.",
    f"{_CORE}.Pod": "Pod is a collection of containers that can run on a host.",
    f"{_CORE}.PodSpec.containers": "List of containers belonging to the pod.",
    f"{_CORE}.Container.name": "Name of the container specified as a DNS_LABEL.",
    f"{_CORE}.Container.image": "Container image name.",
    f"{_CORE}.Container.ports": "List of ports to expose from the container.",
    f"{_APPS}.Deployment": "Deployment enables declarative updates for Pods and ReplicaSets.",
    f"{_APPS}.DeploymentSpec.replicas": "Number of desired pods. Defaults to 1.",
    f"{_APPS}.DeploymentSpec.selector": "Label selector for pods. It must match the pod template's labels.",
    f"{_APPS}.DeploymentSpec.template": "Template describes the pods that will be created.",
    f"{_CORE}.ConfigMap": "ConfigMap holds configuration data for pods to consume.",
    f"{META}.ObjectMeta": "ObjectMeta is metadata that all persisted resources must have.",
    f"{META}.ObjectMeta.name": "Name must be unique within a namespace.",
    f"{META}.ObjectMeta.namespace": "Namespace defines the space within which each name must be unique.",
    f"{META}.ObjectMeta.labels": "Map of string keys and values that can be used to organize and categorize "
                                 "(scope and select) objects.",
}
PARAMS = [  # the query parameters of a write, as upstream declares them
    ("dryRun", "When present, indicates that modifications should not be persisted. Valid values: All"),
    ("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
    ("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
                        "containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
]
_SCALARS = {STRING: {"type": "string"}, INTEGER: {"type": "integer", "format": "int64"},
            NUMBER: {"type": "number", "format": "double"}, BOOLEAN: {"type": "boolean"}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _pkg(info: KindInfo) -> str:
    return _PKG.get(info.group) or "io.k8s.api." + info.group.split(".")[0] + "." + info.version


def _gvk(info: KindInfo) -> dict:
    return {"group": info.group, "kind": info.kind, "version": info.version}


class _Builder:
    """Walks one kind's tree, emitting a named schema per object (first encounter wins)."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict] = {}
        self._named: dict[int, str] = {}

    def kind(self, info: KindInfo, tree: Obj) -> None:
        name = f"{_pkg(info)}.{info.kind}"
        self._obj(tree, name, info.kind, ())
        self.schemas[name]["x-kubernetes-group-version-kind"] = [_gvk(info)]

    def _name_for(self, node: Obj, parent: str, field: str) -> str:
        known = _NAMES.get(id(node)) or self._named.get(id(node))
        if known:
            return known
        pkg, _, short = parent.rpartition(".")
        upstream = _FIELD_NAMES.get((short, field))
        base = f"{pkg}.{upstream}" if upstream else f"{parent}{field[:1].upper()}{field[1:]}"
        name, n = base, 2
        while name in self.schemas:
            name, n = f"{base}{n}", n + 1
        return name

    def _obj(self, node: Obj, name: str, kind: str, path: tuple[str, ...]) -> str:
        if id(node) in self._named or name in self.schemas:
            return name
        self._named[id(node)] = name
        out: dict = {"type": "object"}
        self.schemas[name] = out  # before the fields: a recursive type refers to itself
        if name in DESCRIPTIONS:
            out["description"] = DESCRIPTIONS[name]
        props = {}
        short = name.rpartition(".")[2]
        for field, sub in node.fields.items():
            p = self._prop(sub, short, kind, path + (field,), name)
            desc = DESCRIPTIONS.get(f"{name}.{field}") or (_TOP.get(field) if not path else None)
            if desc:
                p["description"] = desc
            if isinstance(sub, Arr):
                key = merge_key(kind, path + (field,))
                if key:
                    p["x-kubernetes-patch-merge-key"] = key
                    p["x-kubernetes-patch-strategy"] = "merge"
                elif field == "finalizers":
                    p["x-kubernetes-patch-strategy"] = "merge"
            props[field] = p
        out["properties"] = props
        if name in REQUIRED:
            out["required"] = REQUIRED[name]
        return name

    def _prop(self, node, parent: str, kind: str, path: tuple[str, ...], parent_full: str) -> dict:
        if isinstance(node, str):
            if node == INT_OR_STRING:
                self.schemas.setdefault(INT_OR_STRING_NAME, {"type": "string", "format": "int-or-string"})
                return {"allOf": [_ref(INT_OR_STRING_NAME)]}
            if node == OBJECT:
                return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            return dict(_SCALARS[node])
        if isinstance(node, Arr):
            return {"type": "array", "items": self._item(node.items, parent, kind, path, parent_full)}
        if isinstance(node, Map):
            return {"type": "object", "additionalProperties": self._item(node.values, parent, kind, path, parent_full)}
        pkg = parent_full.rpartition(".")[0]
        name = self._name_for(node, f"{pkg}.{parent}", path[-1])
        self._obj(node, name, kind, path)
        return {"allOf": [_ref(name)], "default": {}}

    def _item(self, node, parent: str, kind: str, path: tuple[str, ...], parent_full: str) -> dict:
        p = self._prop(node, parent, kind, path, parent_full)
        if isinstance(node, str) and node not in (INT_OR_STRING, OBJECT):
            p["default"] = "" if node == STRING else 0 if node in (INTEGER, NUMBER) else False
        return p


def _group_versions() -> dict[str, list[KindInfo]]:
    out: dict[str, list[KindInfo]] = {}
    for info in KINDS.values():
        if info.kind in S.BY_KIND:
            out.setdefault(info.api_prefix.lstrip("/"), []).append(info)
    return out


def _operations(info: KindInfo, name: str) -> dict:
    """The item path of *info* with get/put/patch/delete (what clients look up)."""
    body = {"content": {"application/json": {"schema": _ref(name)}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": _ref(name)}}}}
    ext = {"x-kubernetes-group-version-kind": _gvk(info)}
    params = [{"name": n, "in": "query", "description": d, "schema": {"type": "string", "uniqueItems": True}}
              for n, d in PARAMS]
    op = lambda verb, action, **kw: {"tags": [info.api_version.replace("/", "_")],  # noqa: E731
                                     "operationId": f"{verb}{info.kind}", "responses": ok,
                                     "x-kubernetes-action": action, **ext, **kw}
    patch_body = {"content": {t: {"schema": {"type": "object"}} for t in (
        "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json")}}
    item = {
        "get": op("read", "get"),
        "put": op("replace", "put", parameters=params, requestBody=body),
        "patch": op("patch", "patch", parameters=params + [{"name": "force", "in": "query", "schema":
                                                              {"type": "boolean", "uniqueItems": True}}],
                    requestBody=patch_body),
        "delete": op("delete", "delete", parameters=params[:1]),
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
    }
    coll = {"post": op("create", "post", parameters=params, requestBody=body)}
    if info.namespaced:
        ns = {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}
        item["parameters"].append(ns)
        coll["parameters"] = [ns]
    return {info.item_path("{namespace}", "{name}"): item, info.collection_path("{namespace}"): coll}


@functools.lru_cache(maxsize=None)
def _v3(gv_path: str) -> str:
    infos = _group_versions().get(gv_path)
    if not infos:
        return ""
    b = _Builder()
    paths: dict = {}
    for info in sorted(infos, key=lambda i: i.kind):
        b.kind(info, S.BY_KIND[info.kind])
        paths.update(_operations(info, f"{_pkg(info)}.{info.kind}"))
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
           "paths": dict(sorted(paths.items())),
           "components": {"schemas": dict(sorted(b.schemas.items()))}}
    return json.dumps(doc, separators=(",", ":"))


def v3_document(gv_path: str) -> dict | None:
    """The OpenAPI v3 document of ``api/v1`` or ``apis/<group>/<version>``; None for others."""
    text = _v3(gv_path.strip("/"))
    return json.loads(text) if text else None


def v3_hash(gv_path: str) -> str:
    return hashlib.sha512(_v3(gv_path).encode()).hexdigest().upper()


def v3_discovery() -> dict:
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={v3_hash(gv)}"}
                      for gv in sorted(_group_versions())}}


def _to_v2(node):
    """A v3 schema as Swagger 2.0: refs to ``#/definitions``, a lone ``allOf`` ref unwrapped."""
    if isinstance(node, list):
        return [_to_v2(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "allOf" and len(v) == 1 and "$ref" in v[0]:
            out["$ref"] = v[0]["$ref"].replace("#/components/schemas/", "#/definitions/")
        elif k == "$ref":
            out[k] = v.replace("#/components/schemas/", "#/definitions/")
        elif k not in ("default", "requestBody", "content"):
            out[k] = _to_v2(v)
    return out


@functools.lru_cache(maxsize=1)
def _v2() -> str:
    definitions: dict = {}
    paths: dict = {}
    for gv in sorted(_group_versions()):
        doc = v3_document(gv)
        definitions.update(doc["components"]["schemas"])
        for path, item in doc["paths"].items():
            v2item = {}
            for verb, op in item.items():
                if verb == "parameters":
                    v2item[verb] = [_v2_param(p) for p in op]
                    continue
                op2 = {k: _to_v2(v) for k, v in op.items() if k not in ("requestBody", "responses", "parameters")}
                op2["parameters"] = [_v2_param(p) for p in op.get("parameters", [])]
                if "requestBody" in op:
                    schema = next(iter(op["requestBody"]["content"].values()))["schema"]
                    op2["parameters"].insert(0, {"name": "body", "in": "body", "required": True,
                                                 "schema": _to_v2(schema)})
                op2["responses"] = {"200": {"description": "OK", "schema": _to_v2(_ref(
                    f"{_pkg(KINDS[op['x-kubernetes-group-version-kind']['kind']])}."
                    f"{op['x-kubernetes-group-version-kind']['kind']}"))}}
                v2item[verb] = op2
            paths[path] = v2item
    doc = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
           "paths": dict(sorted(paths.items())), "definitions": _to_v2(dict(sorted(definitions.items())))}
    return json.dumps(doc, separators=(",", ":"))


def _v2_param(p: dict) -> dict:
    out = {k: v for k, v in p.items() if k != "schema"}
    out.update(copy.deepcopy(p.get("schema", {})))
    return out


def v2_document() -> dict:
    """All served kinds as one Swagger 2.0 document (what ``/openapi/v2`` encodes)."""
    return json.loads(_v2())
