"""Per-kind schemas (field -> type or nested schema) for every kind the API serves.

Field names follow the upstream Go types' JSON tags (``k8s.io/api`` core/v1, apps/v1,
discovery/v1 and ``metav1.ObjectMeta``), so a manifest written for a real cluster is
accepted as a whole, even where the testbed ignores a field.  Sub-objects the testbed never
reads (volumes, affinity, security contexts ...) are typed :data:`OBJECT`: their type is
checked, their inside is not.
"""

from __future__ import annotations

from .schema import BOOLEAN, INT_OR_STRING, INTEGER, OBJECT, STRING, Arr, Map, Obj

STRINGS = Arr(STRING)
STRING_MAP = Map(STRING)
QUANTITIES = Map(INT_OR_STRING)
TIME = STRING

OWNER_REFERENCE = Obj({
    "apiVersion": STRING, "kind": STRING, "name": STRING, "uid": STRING,
    "controller": BOOLEAN, "blockOwnerDeletion": BOOLEAN,
})

OBJECT_META = Obj({
    "name": STRING, "generateName": STRING, "namespace": STRING, "selfLink": STRING,
    "uid": STRING, "resourceVersion": STRING, "generation": INTEGER,
    "creationTimestamp": TIME, "deletionTimestamp": TIME, "deletionGracePeriodSeconds": INTEGER,
    "labels": STRING_MAP, "annotations": STRING_MAP, "ownerReferences": Arr(OWNER_REFERENCE),
    "finalizers": STRINGS, "managedFields": Arr(OBJECT),
})

OBJECT_REFERENCE = Obj({
    "kind": STRING, "namespace": STRING, "name": STRING, "uid": STRING, "apiVersion": STRING,
    "resourceVersion": STRING, "fieldPath": STRING,
})

LABEL_SELECTOR = Obj({
    "matchLabels": STRING_MAP,
    "matchExpressions": Arr(Obj({"key": STRING, "operator": STRING, "values": STRINGS})),
})

# metav1.Condition, used by newer status blocks (Service).
CONDITION = Obj({
    "type": STRING, "status": STRING, "observedGeneration": INTEGER, "lastTransitionTime": TIME,
    "reason": STRING, "message": STRING,
})


def _top(**fields) -> Obj:
    return Obj({"apiVersion": STRING, "kind": STRING, "metadata": OBJECT_META, **fields})


# --- core/v1 Pod -------------------------------------------------------------------

_HTTP_GET = Obj({
    "path": STRING, "port": INT_OR_STRING, "host": STRING, "scheme": STRING,
    "httpHeaders": Arr(Obj({"name": STRING, "value": STRING})),
})
_TCP_SOCKET = Obj({"port": INT_OR_STRING, "host": STRING})
_EXEC = Obj({"command": STRINGS})
_HANDLER = Obj({"exec": _EXEC, "httpGet": _HTTP_GET, "tcpSocket": _TCP_SOCKET, "sleep": Obj({"seconds": INTEGER})})

PROBE = Obj({
    "exec": _EXEC, "httpGet": _HTTP_GET, "tcpSocket": _TCP_SOCKET,
    "grpc": Obj({"port": INTEGER, "service": STRING}),
    "initialDelaySeconds": INTEGER, "timeoutSeconds": INTEGER, "periodSeconds": INTEGER,
    "successThreshold": INTEGER, "failureThreshold": INTEGER, "terminationGracePeriodSeconds": INTEGER,
})

CONTAINER_PORT = Obj({
    "name": STRING, "hostPort": INTEGER, "containerPort": INTEGER, "protocol": STRING, "hostIP": STRING,
})

ENV_VAR = Obj({"name": STRING, "value": STRING, "valueFrom": OBJECT})

RESOURCES = Obj({"limits": QUANTITIES, "requests": QUANTITIES, "claims": Arr(OBJECT)})

CONTAINER = Obj({
    "name": STRING, "image": STRING, "command": STRINGS, "args": STRINGS, "workingDir": STRING,
    "ports": Arr(CONTAINER_PORT), "envFrom": Arr(OBJECT), "env": Arr(ENV_VAR),
    "resources": RESOURCES, "resizePolicy": Arr(OBJECT), "restartPolicy": STRING,
    "volumeMounts": Arr(OBJECT), "volumeDevices": Arr(OBJECT),
    "livenessProbe": PROBE, "readinessProbe": PROBE, "startupProbe": PROBE,
    "lifecycle": Obj({"postStart": _HANDLER, "preStop": _HANDLER, "stopSignal": STRING}),
    "terminationMessagePath": STRING, "terminationMessagePolicy": STRING, "imagePullPolicy": STRING,
    "securityContext": OBJECT, "stdin": BOOLEAN, "stdinOnce": BOOLEAN, "tty": BOOLEAN,
})

TOLERATION = Obj({"key": STRING, "operator": STRING, "value": STRING, "effect": STRING, "tolerationSeconds": INTEGER})

POD_SPEC = Obj({
    "volumes": Arr(OBJECT), "initContainers": Arr(CONTAINER), "containers": Arr(CONTAINER),
    "ephemeralContainers": Arr(OBJECT), "restartPolicy": STRING,
    "terminationGracePeriodSeconds": INTEGER, "activeDeadlineSeconds": INTEGER, "dnsPolicy": STRING,
    "nodeSelector": STRING_MAP, "serviceAccountName": STRING, "serviceAccount": STRING,
    "automountServiceAccountToken": BOOLEAN, "nodeName": STRING, "hostNetwork": BOOLEAN,
    "hostPID": BOOLEAN, "hostIPC": BOOLEAN, "shareProcessNamespace": BOOLEAN, "securityContext": OBJECT,
    "imagePullSecrets": Arr(Obj({"name": STRING})), "hostname": STRING, "subdomain": STRING,
    "affinity": OBJECT, "schedulerName": STRING, "tolerations": Arr(TOLERATION),
    "hostAliases": Arr(Obj({"ip": STRING, "hostnames": STRINGS})), "priorityClassName": STRING,
    "priority": INTEGER, "dnsConfig": Obj({"nameservers": STRINGS, "searches": STRINGS,
                                           "options": Arr(Obj({"name": STRING, "value": STRING}))}),
    "readinessGates": Arr(Obj({"conditionType": STRING})), "runtimeClassName": STRING,
    "enableServiceLinks": BOOLEAN, "preemptionPolicy": STRING, "overhead": QUANTITIES,
    "topologySpreadConstraints": Arr(OBJECT), "setHostnameAsFQDN": BOOLEAN,
    "os": Obj({"name": STRING}), "hostUsers": BOOLEAN, "schedulingGates": Arr(Obj({"name": STRING})),
    "resourceClaims": Arr(OBJECT), "resources": RESOURCES,
})

_CONTAINER_STATE = Obj({
    "waiting": Obj({"reason": STRING, "message": STRING}),
    "running": Obj({"startedAt": TIME}),
    "terminated": Obj({"exitCode": INTEGER, "signal": INTEGER, "reason": STRING, "message": STRING,
                       "startedAt": TIME, "finishedAt": TIME, "containerID": STRING}),
})

CONTAINER_STATUS = Obj({
    "name": STRING, "state": _CONTAINER_STATE, "lastState": _CONTAINER_STATE, "ready": BOOLEAN,
    "restartCount": INTEGER, "image": STRING, "imageID": STRING, "containerID": STRING,
    "started": BOOLEAN, "allocatedResources": QUANTITIES, "resources": RESOURCES,
    "volumeMounts": Arr(OBJECT), "user": OBJECT, "allocatedResourcesStatus": Arr(OBJECT),
    "stopSignal": STRING,
})

_POD_CONDITION = Obj({
    "type": STRING, "observedGeneration": INTEGER, "status": STRING, "lastProbeTime": TIME,
    "lastTransitionTime": TIME, "reason": STRING, "message": STRING,
})

POD_STATUS = Obj({
    "observedGeneration": INTEGER, "phase": STRING, "conditions": Arr(_POD_CONDITION),
    "message": STRING, "reason": STRING, "nominatedNodeName": STRING, "hostIP": STRING,
    "hostIPs": Arr(Obj({"ip": STRING})), "podIP": STRING, "podIPs": Arr(Obj({"ip": STRING})),
    "startTime": TIME, "initContainerStatuses": Arr(CONTAINER_STATUS),
    "containerStatuses": Arr(CONTAINER_STATUS), "ephemeralContainerStatuses": Arr(CONTAINER_STATUS),
    "qosClass": STRING, "resize": STRING, "resourceClaimStatuses": Arr(OBJECT),
})

POD_TEMPLATE = Obj({"metadata": OBJECT_META, "spec": POD_SPEC})

POD = _top(spec=POD_SPEC, status=POD_STATUS)

# --- core/v1 Service, Endpoints ------------------------------------------------------

SERVICE_PORT = Obj({
    "name": STRING, "protocol": STRING, "appProtocol": STRING, "port": INTEGER,
    "targetPort": INT_OR_STRING, "nodePort": INTEGER,
})

SERVICE_SPEC = Obj({
    "ports": Arr(SERVICE_PORT), "selector": STRING_MAP, "clusterIP": STRING, "clusterIPs": STRINGS,
    "type": STRING, "externalIPs": STRINGS, "sessionAffinity": STRING, "loadBalancerIP": STRING,
    "loadBalancerSourceRanges": STRINGS, "externalName": STRING, "externalTrafficPolicy": STRING,
    "healthCheckNodePort": INTEGER, "publishNotReadyAddresses": BOOLEAN,
    "sessionAffinityConfig": Obj({"clientIP": Obj({"timeoutSeconds": INTEGER})}),
    "ipFamilies": STRINGS, "ipFamilyPolicy": STRING, "allocateLoadBalancerNodePorts": BOOLEAN,
    "loadBalancerClass": STRING, "internalTrafficPolicy": STRING, "trafficDistribution": STRING,
})

SERVICE_STATUS = Obj({
    "loadBalancer": Obj({"ingress": Arr(Obj({
        "ip": STRING, "hostname": STRING, "ipMode": STRING,
        "ports": Arr(Obj({"port": INTEGER, "protocol": STRING, "error": STRING})),
    }))}),
    "conditions": Arr(CONDITION),
})

SERVICE = _top(spec=SERVICE_SPEC, status=SERVICE_STATUS)

_ENDPOINT_ADDRESS = Obj({"ip": STRING, "hostname": STRING, "nodeName": STRING, "targetRef": OBJECT_REFERENCE})
_ENDPOINT_PORT = Obj({"name": STRING, "port": INTEGER, "protocol": STRING, "appProtocol": STRING})

ENDPOINTS = _top(subsets=Arr(Obj({
    "addresses": Arr(_ENDPOINT_ADDRESS), "notReadyAddresses": Arr(_ENDPOINT_ADDRESS),
    "ports": Arr(_ENDPOINT_PORT),
})))

# --- discovery.k8s.io/v1 EndpointSlice --------------------------------------------------

_FOR_NAME = Arr(Obj({"name": STRING}))

ENDPOINT_SLICE = _top(
    addressType=STRING,
    endpoints=Arr(Obj({
        "addresses": STRINGS,
        "conditions": Obj({"ready": BOOLEAN, "serving": BOOLEAN, "terminating": BOOLEAN}),
        "hostname": STRING, "targetRef": OBJECT_REFERENCE, "deprecatedTopology": STRING_MAP,
        "nodeName": STRING, "zone": STRING, "hints": Obj({"forZones": _FOR_NAME, "forNodes": _FOR_NAME}),
    })),
    ports=Arr(_ENDPOINT_PORT),
)

# --- apps/v1 Deployment, ReplicaSet -----------------------------------------------------

_WORKLOAD_CONDITION = Obj({
    "type": STRING, "status": STRING, "lastUpdateTime": TIME, "lastTransitionTime": TIME,
    "reason": STRING, "message": STRING,
})

DEPLOYMENT = _top(
    spec=Obj({
        "replicas": INTEGER, "selector": LABEL_SELECTOR, "template": POD_TEMPLATE,
        "strategy": Obj({"type": STRING, "rollingUpdate": Obj({"maxUnavailable": INT_OR_STRING,
                                                               "maxSurge": INT_OR_STRING})}),
        "minReadySeconds": INTEGER, "revisionHistoryLimit": INTEGER, "paused": BOOLEAN,
        "progressDeadlineSeconds": INTEGER,
    }),
    status=Obj({
        "observedGeneration": INTEGER, "replicas": INTEGER, "updatedReplicas": INTEGER,
        "readyReplicas": INTEGER, "availableReplicas": INTEGER, "unavailableReplicas": INTEGER,
        "terminatingReplicas": INTEGER, "conditions": Arr(_WORKLOAD_CONDITION), "collisionCount": INTEGER,
    }),
)

REPLICA_SET = _top(
    spec=Obj({"replicas": INTEGER, "minReadySeconds": INTEGER, "selector": LABEL_SELECTOR,
              "template": POD_TEMPLATE}),
    status=Obj({
        "replicas": INTEGER, "fullyLabeledReplicas": INTEGER, "readyReplicas": INTEGER,
        "availableReplicas": INTEGER, "terminatingReplicas": INTEGER, "observedGeneration": INTEGER,
        "conditions": Arr(_WORKLOAD_CONDITION),
    }),
)

# --- cluster-scoped and bookkeeping kinds -------------------------------------------------

NAMESPACE = _top(
    spec=Obj({"finalizers": STRINGS}),
    status=Obj({"phase": STRING, "conditions": Arr(OBJECT)}),
)

NODE = _top(
    spec=Obj({
        "podCIDR": STRING, "podCIDRs": STRINGS, "providerID": STRING, "unschedulable": BOOLEAN,
        "taints": Arr(Obj({"key": STRING, "value": STRING, "effect": STRING, "timeAdded": TIME})),
        "configSource": OBJECT, "externalID": STRING,
    }),
    status=Obj({
        "capacity": QUANTITIES, "allocatable": QUANTITIES, "phase": STRING,
        "conditions": Arr(Obj({"type": STRING, "status": STRING, "lastHeartbeatTime": TIME,
                               "lastTransitionTime": TIME, "reason": STRING, "message": STRING})),
        "addresses": Arr(Obj({"type": STRING, "address": STRING})),
        "daemonEndpoints": OBJECT,
        "nodeInfo": Obj({
            "machineID": STRING, "systemUUID": STRING, "bootID": STRING, "kernelVersion": STRING,
            "osImage": STRING, "containerRuntimeVersion": STRING, "kubeletVersion": STRING,
            "kubeProxyVersion": STRING, "operatingSystem": STRING, "architecture": STRING, "swap": OBJECT,
        }),
        "images": Arr(OBJECT), "volumesInUse": STRINGS, "volumesAttached": Arr(OBJECT),
        "config": OBJECT, "runtimeHandlers": Arr(OBJECT), "features": OBJECT,
    }),
)

EVENT = _top(
    involvedObject=OBJECT_REFERENCE, reason=STRING, message=STRING,
    source=Obj({"component": STRING, "host": STRING}), firstTimestamp=TIME, lastTimestamp=TIME,
    count=INTEGER, type=STRING, eventTime=TIME, series=OBJECT, action=STRING,
    related=OBJECT_REFERENCE, reportingComponent=STRING, reportingInstance=STRING,
)

CONFIG_MAP = _top(immutable=BOOLEAN, data=STRING_MAP, binaryData=STRING_MAP)
SECRET = _top(immutable=BOOLEAN, data=STRING_MAP, stringData=STRING_MAP, type=STRING)

# --- networking.k8s.io/v1 -----------------------------------------------------------

_TYPED_LOCAL_REF = Obj({"apiGroup": STRING, "kind": STRING, "name": STRING})
_INGRESS_BACKEND = Obj({
    "service": Obj({"name": STRING, "port": Obj({"name": STRING, "number": INTEGER})}),
    "resource": _TYPED_LOCAL_REF,
})
_LB_INGRESS = Arr(Obj({"ip": STRING, "hostname": STRING,
                       "ports": Arr(Obj({"port": INTEGER, "protocol": STRING, "error": STRING}))}))
INGRESS = _top(
    spec=Obj({
        "ingressClassName": STRING,
        "defaultBackend": _INGRESS_BACKEND,
        "tls": Arr(Obj({"hosts": STRINGS, "secretName": STRING})),
        "rules": Arr(Obj({
            "host": STRING,
            "http": Obj({"paths": Arr(Obj({"path": STRING, "pathType": STRING, "backend": _INGRESS_BACKEND}))}),
        })),
    }),
    status=Obj({"loadBalancer": Obj({"ingress": _LB_INGRESS})}),
)
INGRESS_CLASS = _top(spec=Obj({
    "controller": STRING,
    "parameters": Obj({"apiGroup": STRING, "kind": STRING, "name": STRING, "namespace": STRING, "scope": STRING}),
}))

BY_KIND: dict[str, Obj] = {
    "Namespace": NAMESPACE,
    "Pod": POD,
    "Service": SERVICE,
    "Endpoints": ENDPOINTS,
    "EndpointSlice": ENDPOINT_SLICE,
    "Deployment": DEPLOYMENT,
    "ReplicaSet": REPLICA_SET,
    "Node": NODE,
    "Event": EVENT,
    "ConfigMap": CONFIG_MAP,
    "Secret": SECRET,
    "Ingress": INGRESS,
    "IngressClass": INGRESS_CLASS,
}
