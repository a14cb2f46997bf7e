"""The ingress-nginx add-on, as upstream's bare-metal manifest
(``deploy/static/provider/baremetal/deploy.yaml``) installs it: namespace ``ingress-nginx``,
IngressClass ``nginx``, Deployment and NodePort Service ``ingress-nginx-controller``.

The manifest's RBAC objects, admission webhook and its certificate Jobs are left out (and the
preStop ``/wait-shutdown``: SIGTERM already shuts nginx down gracefully): the
testbed's API server has no authorization and no admission webhooks, and the controller image
runs the testbed's controller (``python -m testbed.ingress``), which validates with
``nginx -t`` itself.
"""

from __future__ import annotations

NAME = "ingress-nginx"
NAMESPACE = "ingress-nginx"
IMAGE = "registry.k8s.io/ingress-nginx/controller:v1.12.0"
CONTROLLER_CLASS = "k8s.io/ingress-nginx"
CLASS_NAME = "nginx"
VERSION = "1.12.0"
SELECTOR = {"app.kubernetes.io/component": "controller", "app.kubernetes.io/instance": "ingress-nginx",
            "app.kubernetes.io/name": "ingress-nginx"}


def labels(component: str | None = "controller") -> dict:
    out = {"app.kubernetes.io/instance": "ingress-nginx", "app.kubernetes.io/name": "ingress-nginx",
           "app.kubernetes.io/part-of": "ingress-nginx", "app.kubernetes.io/version": VERSION}
    if component:
        out["app.kubernetes.io/component"] = component
    return out


def namespace() -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/instance": "ingress-nginx",
                                                       "app.kubernetes.io/name": "ingress-nginx"}}}


def ingress_class() -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": CLASS_NAME, "labels": labels()},
            "spec": {"controller": CONTROLLER_CLASS}}


def deployment() -> dict:
    container = {
        "name": "controller", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["/nginx-ingress-controller", "--election-id=ingress-nginx-leader",
                 f"--controller-class={CONTROLLER_CLASS}", f"--ingress-class={CLASS_NAME}",
                 "--configmap=$(POD_NAMESPACE)/ingress-nginx-controller"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
                          "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1,
                          "successThreshold": 1, "failureThreshold": 5},
        # upstream waits 10 s and probes every 10 s; the testbed's controller is ready once
        # nginx listens, so probing every second lets `up` return that much sooner
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"},
                           "periodSeconds": 1, "timeoutSeconds": 1, "successThreshold": 1,
                           "failureThreshold": 3},
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                  {"name": "https", "containerPort": 443, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "90Mi"}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ingress-nginx-controller", "namespace": NAMESPACE, "labels": labels()},
        "spec": {
            "minReadySeconds": 0, "revisionHistoryLimit": 10,
            "selector": {"matchLabels": dict(SELECTOR)},
            "strategy": {"rollingUpdate": {"maxUnavailable": 1}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {"containers": [container], "dnsPolicy": "ClusterFirst",
                         "nodeSelector": {"kubernetes.io/os": "linux"},
                         "serviceAccountName": "ingress-nginx", "terminationGracePeriodSeconds": 300},
            },
        },
    }


def service() -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ingress-nginx-controller", "namespace": NAMESPACE, "labels": labels()},
        "spec": {"type": "NodePort", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "selector": dict(SELECTOR),
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http", "appProtocol": "http"},
                           {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https",
                            "appProtocol": "https"}]},
    }


def objects(scenario) -> list[dict]:
    return [namespace(), ingress_class(), deployment(), service()]
