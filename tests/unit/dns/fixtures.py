"""A small cluster as the API serves it: Services, EndpointSlices and Namespaces as dicts."""

from __future__ import annotations

from testbed.dns.corefile import Kubernetes
from testbed.dns.records import ClusterIndex

K8S = Kubernetes(zones=("cluster.local.", "in-addr.arpa.", "ip6.arpa."), ttl=30, pods="insecure",
                 fallthrough=("in-addr.arpa.", "ip6.arpa."))


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def svc(name, namespace="default", cluster_ip="10.96.0.20", ports=None, **spec):
    s = {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip] if cluster_ip else [],
         "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": s}


def eps(name, service, endpoints, ports=None, namespace="default"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def ep(ip, ready=True, hostname=None, pod=None):
    e = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        e["hostname"] = hostname
    if pod:
        e["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "default"}
    return e


def cluster() -> ClusterIndex:
    idx = ClusterIndex()
    objs = [
        ("Namespace", ns("default")), ("Namespace", ns("kube-system")), ("Namespace", ns("empty")),
        ("Service", svc("web", ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                                      {"name": "dns", "port": 53, "protocol": "UDP"},
                                      {"port": 9000, "protocol": "TCP"}])),
        ("EndpointSlice", eps("web-abcde", "web", [ep("10.244.0.5"), ep("10.244.1.6", ready=False)])),
        ("Service", svc("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])),
        ("EndpointSlice", eps("db-xyz", "db", [ep("10.244.0.7", hostname="db-0", pod="db-0"),
                                                ep("10.244.1.8", hostname="db-1", pod="db-1"),
                                                ep("10.244.1.9", ready=False, hostname="db-2")],
                              ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])),
        ("Service", svc("bare", cluster_ip="None", ports=[])),
        ("EndpointSlice", eps("bare-1", "bare", [ep("10.244.2.2")], ports=[])),
        ("Service", svc("nobody", cluster_ip="None")),
        ("EndpointSlice", eps("nobody-1", "nobody", [ep("10.244.2.3", ready=False)])),
        ("Service", svc("ext", cluster_ip="", ports=[], type="ExternalName", externalName="client.ext.testbed")),
        ("Service", svc("kube-dns", namespace="kube-system", cluster_ip="10.96.0.10",
                        ports=[{"name": "dns", "port": 53, "protocol": "UDP"}])),
    ]
    for kind, obj in objs:
        idx.apply(kind, "ADDED", obj)
    return idx
