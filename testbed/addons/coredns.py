"""The CoreDNS add-on, as kubeadm installs it (``cmd/kubeadm/app/phases/addons/dns``):
ConfigMap ``coredns`` with kubeadm's Corefile, Deployment ``coredns`` and Service
``kube-dns`` at the service network's 10th address (kubeadm's ``--service-dns-ip`` default,
what kubelets are configured with as ``clusterDNS``)."""

from __future__ import annotations

import ipaddress

from ..dns.corefile import KUBEADM_COREFILE

NAME = "coredns"
IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"
NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}


def cluster_dns_ip(service_network) -> str:
    """kubeadm's DNS Service address: the 10th address of the service network."""
    return str(ipaddress.IPv4Network(str(service_network))[10])


def config_map() -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": NAMESPACE},
            "data": {"Corefile": KUBEADM_COREFILE}}


def deployment() -> dict:
    container = {
        "name": "coredns", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                          "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1,
                          "failureThreshold": 5},
        # kubeadm leaves periodSeconds at 10 s; a replica here syncs in well under a second, so
        # a first probe that comes too early would hold every DNS check back by 10 s
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                           "periodSeconds": 1},
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {"priorityClassName": "system-cluster-critical", "serviceAccountName": "coredns",
                         "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                         {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                         "nodeSelector": {"kubernetes.io/os": "linux"},
                         "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                             {"weight": 100, "podAffinityTerm": {
                                 "labelSelector": {"matchExpressions": [
                                     {"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                                 "topologyKey": "kubernetes.io/hostname"}}]}},
                         "dnsPolicy": "Default", "containers": [container],
                         "volumes": [{"name": "config-volume",
                                      "configMap": {"name": "coredns",
                                                    "items": [{"key": "Corefile", "path": "Corefile"}]}}]},
            },
        },
    }


def service(service_network) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": NAMESPACE,
                     "labels": {**LABELS, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"selector": dict(LABELS), "clusterIP": cluster_dns_ip(service_network),
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]},
    }


def objects(scenario) -> list[dict]:
    return [config_map(), deployment(), service(scenario.service_network)]
