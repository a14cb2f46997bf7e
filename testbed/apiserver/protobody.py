"""Request bodies in Kubernetes' protobuf encoding (``application/vnd.kubernetes.protobuf``),
which kubectl 1.33 and newer send for ``create deployment|service|configmap|secret|namespace|ingress``
without asking the server first (and with no fallback on 415), decoded to the JSON object
the same request would have carried.

The body is ``k8s\\0`` and a ``runtime.Unknown`` (typeMeta = 1, raw = 2, contentEncoding = 3,
contentType = 4) whose ``raw`` is the object's message. Field numbers are upstream's
(``k8s.io/api/<group>/<version>/generated.proto``, ``apimachinery``'s meta/v1, intstr and
resource). Go marshals non-pointer fields even when empty; they decode to the zero value,
which JSON (``omitempty``) leaves out, so zeros and empty strings, maps and objects are
dropped here too, except for the pointer fields (``replicas: 0`` is a value). A field
number the tables do not know is refused with its path, never skipped."""

from __future__ import annotations

import base64
import datetime as _dt

from .errors import UnsupportedMediaType
from .protowire import LEN, VARINT, WireError, fields, signed

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

S, I, B, BYTES = "string", "int", "bool", "bytes"
TIME, INTSTR, QTY = "time", "intstr", "quantity"
KEEP_ZERO = "keep"  # a pointer field: a zero is a value, not "unset"
INLINE = "inline"  # an embedded struct whose fields JSON puts in the parent (json:",inline")

# message -> field number -> (json name, type, repeated[, KEEP_ZERO]); a type naming another
# message nests it; ("map", V) is a map<string, V> (entries key = 1, value = 2); (INLINE, M)
# is message M whose fields are the parent's
MESSAGES: dict[str, dict[int, tuple]] = {
    "ObjectMeta": {
        1: ("name", S, False), 2: ("generateName", S, False), 3: ("namespace", S, False),
        4: ("selfLink", S, False), 5: ("uid", S, False), 6: ("resourceVersion", S, False),
        7: ("generation", I, False), 8: ("creationTimestamp", TIME, False),
        9: ("deletionTimestamp", TIME, False), 10: ("deletionGracePeriodSeconds", I, False, KEEP_ZERO),
        11: ("labels", ("map", S), False), 12: ("annotations", ("map", S), False),
        13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", S, True),
    },
    "OwnerReference": {1: ("kind", S, False), 3: ("name", S, False), 4: ("uid", S, False),
                       5: ("apiVersion", S, False), 6: ("controller", B, False, KEEP_ZERO),
                       7: ("blockOwnerDeletion", B, False, KEEP_ZERO)},
    "LabelSelector": {1: ("matchLabels", ("map", S), False), 2: ("matchExpressions", "Requirement", True)},
    "Requirement": {1: ("key", S, False), 2: ("operator", S, False), 3: ("values", S, True)},
    # core/v1
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False),
                  3: ("status", "NamespaceStatus", False)},
    "NamespaceSpec": {1: ("finalizers", S, True)},
    "NamespaceStatus": {1: ("phase", S, False)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", ("map", S), False),
                  3: ("binaryData", ("map", BYTES), False), 4: ("immutable", B, False, KEEP_ZERO)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", ("map", BYTES), False), 3: ("type", S, False),
               4: ("stringData", ("map", S), False), 5: ("immutable", B, False, KEEP_ZERO)},
    "Service": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ServiceSpec", False),
                3: ("status", "ServiceStatus", False)},
    "ServiceSpec": {
        1: ("ports", "ServicePort", True), 2: ("selector", ("map", S), False), 3: ("clusterIP", S, False),
        4: ("type", S, False), 5: ("externalIPs", S, True), 7: ("sessionAffinity", S, False),
        8: ("loadBalancerIP", S, False), 9: ("loadBalancerSourceRanges", S, True), 10: ("externalName", S, False),
        11: ("externalTrafficPolicy", S, False), 12: ("healthCheckNodePort", I, False),
        13: ("publishNotReadyAddresses", B, False), 17: ("ipFamilyPolicy", S, False),
        18: ("clusterIPs", S, True), 19: ("ipFamilies", S, True),
        20: ("allocateLoadBalancerNodePorts", B, False, KEEP_ZERO), 21: ("loadBalancerClass", S, False),
        22: ("internalTrafficPolicy", S, False), 23: ("trafficDistribution", S, False),
    },
    "ServicePort": {1: ("name", S, False), 2: ("protocol", S, False), 3: ("port", I, False),
                    4: ("targetPort", INTSTR, False), 5: ("nodePort", I, False), 6: ("appProtocol", S, False)},
    "ServiceStatus": {1: ("loadBalancer", "LoadBalancerStatus", False)},
    "LoadBalancerStatus": {},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    "PodSpec": {
        2: ("containers", "Container", True), 3: ("restartPolicy", S, False),
        4: ("terminationGracePeriodSeconds", I, False, KEEP_ZERO), 5: ("activeDeadlineSeconds", I, False, KEEP_ZERO),
        6: ("dnsPolicy", S, False), 7: ("nodeSelector", ("map", S), False), 8: ("serviceAccountName", S, False),
        9: ("serviceAccount", S, False), 10: ("nodeName", S, False), 11: ("hostNetwork", B, False),
        12: ("hostPID", B, False), 13: ("hostIPC", B, False), 16: ("hostname", S, False),
        17: ("subdomain", S, False), 19: ("schedulerName", S, False), 20: ("initContainers", "Container", True),
        21: ("automountServiceAccountToken", B, False, KEEP_ZERO), 24: ("priorityClassName", S, False),
        25: ("priority", I, False, KEEP_ZERO), 29: ("runtimeClassName", S, False),
        30: ("enableServiceLinks", B, False, KEEP_ZERO), 31: ("preemptionPolicy", S, False),
        35: ("setHostnameAsFQDN", B, False, KEEP_ZERO), 37: ("hostUsers", B, False, KEEP_ZERO),
    },
    "Container": {
        1: ("name", S, False), 2: ("image", S, False), 3: ("command", S, True), 4: ("args", S, True),
        5: ("workingDir", S, False), 6: ("ports", "ContainerPort", True), 7: ("env", "EnvVar", True),
        8: ("resources", "ResourceRequirements", False), 13: ("terminationMessagePath", S, False),
        14: ("imagePullPolicy", S, False), 16: ("stdin", B, False), 17: ("stdinOnce", B, False),
        18: ("tty", B, False), 20: ("terminationMessagePolicy", S, False), 24: ("restartPolicy", S, False),
    },
    "ContainerPort": {1: ("name", S, False), 2: ("hostPort", I, False), 3: ("containerPort", I, False),
                      4: ("protocol", S, False), 5: ("hostIP", S, False)},
    "EnvVar": {1: ("name", S, False), 2: ("value", S, False)},
    "ResourceRequirements": {1: ("limits", ("map", QTY), False), 2: ("requests", ("map", QTY), False)},
    # apps/v1
    "Deployment": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "DeploymentSpec", False),
                   3: ("status", "DeploymentStatus", False)},
    "DeploymentSpec": {
        1: ("replicas", I, False, KEEP_ZERO), 2: ("selector", "LabelSelector", False),
        3: ("template", "PodTemplateSpec", False), 4: ("strategy", "DeploymentStrategy", False),
        5: ("minReadySeconds", I, False), 6: ("revisionHistoryLimit", I, False, KEEP_ZERO),
        7: ("paused", B, False), 9: ("progressDeadlineSeconds", I, False, KEEP_ZERO),
    },
    "DeploymentStrategy": {1: ("type", S, False), 2: ("rollingUpdate", "RollingUpdateDeployment", False)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", INTSTR, False), 2: ("maxSurge", INTSTR, False)},
    "DeploymentStatus": {1: ("observedGeneration", I, False), 2: ("replicas", I, False),
                         3: ("updatedReplicas", I, False), 4: ("availableReplicas", I, False),
                         5: ("unavailableReplicas", I, False), 7: ("readyReplicas", I, False),
                         8: ("collisionCount", I, False, KEEP_ZERO), 9: ("terminatingReplicas", I, False, KEEP_ZERO)},
    # networking.k8s.io/v1
    "Ingress": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "IngressSpec", False),
                3: ("status", "IngressStatus", False)},
    "IngressSpec": {1: ("defaultBackend", "IngressBackend", False), 2: ("tls", "IngressTLS", True),
                    3: ("rules", "IngressRule", True), 4: ("ingressClassName", S, False)},
    "IngressTLS": {1: ("hosts", S, True), 2: ("secretName", S, False)},
    "IngressRule": {1: ("host", S, False), 2: ("", (INLINE, "IngressRuleValue"), False)},
    "IngressRuleValue": {1: ("http", "HTTPIngressRuleValue", False)},
    "HTTPIngressRuleValue": {1: ("paths", "HTTPIngressPath", True)},
    "HTTPIngressPath": {1: ("path", S, False), 2: ("backend", "IngressBackend", False), 3: ("pathType", S, False)},
    "IngressBackend": {3: ("resource", "TypedLocalObjectReference", False), 4: ("service", "IngressServiceBackend", False)},
    "TypedLocalObjectReference": {1: ("apiGroup", S, False), 2: ("kind", S, False), 3: ("name", S, False)},
    "IngressServiceBackend": {1: ("name", S, False), 2: ("port", "ServiceBackendPort", False)},
    "ServiceBackendPort": {1: ("name", S, False), 2: ("number", I, False)},
    "IngressStatus": {1: ("loadBalancer", "IngressLoadBalancerStatus", False)},
    "IngressLoadBalancerStatus": {},
}
# the kinds whose bodies are decoded (their top-level message has the kind's name)
KINDS = ("Namespace", "ConfigMap", "Secret", "Service", "Deployment", "Ingress")


def _refuse(msg: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"the protobuf body could not be read: {msg}; accepted media types include: "
                                "application/json, application/yaml")


def _scalar(typ: str, wt: int, v, path: str):
    if typ in (S, BYTES):
        if wt != LEN:
            raise _refuse(f"{path}: expected a length-delimited field")
        if typ == BYTES:
            return base64.b64encode(v).decode()
        try:
            return v.decode()
        except UnicodeDecodeError:
            raise _refuse(f"{path}: not UTF-8") from None
    if typ in (I, B):
        if wt != VARINT:
            raise _refuse(f"{path}: expected a varint")
        return bool(v) if typ == B else signed(v)
    if typ == TIME:  # Time{seconds = 1, nanos = 2}
        secs = next((signed(x) for n, _, x in fields(v) if n == 1), 0)
        if not secs:
            return None
        return _dt.datetime.fromtimestamp(secs, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if typ == INTSTR:  # IntOrString{type = 1 (0 int, 1 string), intVal = 2, strVal = 3}
        got = {n: x for n, _, x in fields(v)}
        return got.get(3, b"").decode() if got.get(1) == 1 else signed(got.get(2, 0))
    if typ == QTY:  # Quantity{string = 1}
        return next((x.decode() for n, _, x in fields(v) if n == 1), "")
    raise _refuse(f"{path}: unknown type {typ}")


def _empty(v) -> bool:
    return v is None or v == "" or v == {} or v is False or (type(v) is int and v == 0)


def _message(name: str, buf: bytes, path: str) -> dict:
    table = MESSAGES[name]
    out: dict = {}
    for num, wt, v in fields(buf):
        spec = table.get(num)
        if spec is None:
            raise _refuse(f"field {num} of {name} at {path or '.'} is not supported")
        key, typ, repeated = spec[:3]
        where = f"{path}.{key}" if path else key
        if isinstance(typ, tuple) and typ[0] == INLINE:
            out.update(_message(typ[1], v, path))
            continue
        if isinstance(typ, tuple):  # map entry {key = 1, value = 2}
            entry = {n: (w, x) for n, w, x in fields(v)}
            k = entry.get(1, (LEN, b""))[1].decode()
            w, x = entry.get(2, (LEN, b""))
            out.setdefault(key, {})[k] = _scalar(typ[1], w, x, f"{where}[{k}]")
            continue
        if typ in MESSAGES:
            if wt != LEN:
                raise _refuse(f"{where}: expected a message")
            value = _message(typ, v, where)
        else:
            value = _scalar(typ, wt, v, where)
        if repeated:
            out.setdefault(key, []).append(value)
        elif not _empty(value) or (len(spec) > 3 and value is not None and typ in (I, B)):
            out[key] = value
    return out


def decode(body: bytes) -> dict:
    """The JSON object of a protobuf request body (``k8s\\0`` + ``runtime.Unknown``)."""
    if not body.startswith(MAGIC):
        raise _refuse("it does not start with the k8s\\0 envelope")
    try:
        unknown = {n: v for n, _, v in fields(body[len(MAGIC):])}
        type_meta = {n: v.decode() for n, _, v in fields(unknown.get(1, b""))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        if unknown.get(3):
            raise _refuse(f"contentEncoding {unknown[3].decode()!r}")
        if kind not in KINDS:
            raise _refuse(f"kind {kind!r} (decoded: {', '.join(KINDS)})")
        obj = _message(kind, unknown.get(2, b""), "")
    except WireError as exc:
        raise _refuse(str(exc)) from None
    return {"apiVersion": api_version, "kind": kind, **obj}
