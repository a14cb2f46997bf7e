"""The ingress-nginx add-on's objects: upstream's names and shapes, valid for the API server."""

from __future__ import annotations

from testbed.addons import ingress_nginx
from testbed.kubelet.plan import INGRESS_NGINX, program_for
from testbed.kubelet.workloads import ingress_controller_flags


def by_kind(objs):
    return {o["kind"]: o for o in objs}


def test_objects_are_upstreams_bare_metal_ones():
    objs = by_kind(ingress_nginx.objects(None))
    assert list(objs) == ["Namespace", "IngressClass", "Deployment", "Service"]
    assert objs["Namespace"]["metadata"]["name"] == "ingress-nginx"
    assert objs["IngressClass"]["metadata"]["name"] == "nginx"
    assert objs["IngressClass"]["spec"]["controller"] == "k8s.io/ingress-nginx"
    dep, svc = objs["Deployment"], objs["Service"]
    assert (dep["metadata"]["name"], dep["metadata"]["namespace"]) == ("ingress-nginx-controller", "ingress-nginx")
    ctr = dep["spec"]["template"]["spec"]["containers"][0]
    assert ctr["image"] == "registry.k8s.io/ingress-nginx/controller:v1.12.0"
    assert svc["spec"]["type"] == "NodePort" and svc["metadata"]["name"] == "ingress-nginx-controller"
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("http", 80, "http"),
                                                                                      ("https", 443, "https")]
    assert {p["name"] for p in ctr["ports"]} >= {"http", "https"}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]


def test_the_controller_image_runs_the_testbed_controller_with_upstreams_flags():
    ctr = by_kind(ingress_nginx.objects(None))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    program = program_for(ctr)
    assert program.kind == INGRESS_NGINX
    kept, ignored = ingress_controller_flags(program.argv)
    assert kept == ["--controller-class=k8s.io/ingress-nginx", "--ingress-class=nginx"]
    assert ignored == ["--election-id=ingress-nginx-leader", "--configmap=$(POD_NAMESPACE)/ingress-nginx-controller"]


def test_flags_with_separate_values_and_without_the_binary():
    assert ingress_controller_flags(["--ingress-class", "internal", "--publish-status-address=1.2.3.4", "--v=2"]) == \
        (["--ingress-class=internal", "--publish-status-address=1.2.3.4"], ["--v=2"])
    assert ingress_controller_flags([]) == ([], [])
