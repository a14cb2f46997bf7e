import pytest

from testbed.kubectl import ResourceError, parse_args, parse_ref, resolve


@pytest.mark.parametrize("names, kind", [
    (("pods", "pod", "po", "Pod", "PODS"), "Pod"),
    (("services", "service", "svc"), "Service"),
    (("endpoints", "ep"), "Endpoints"),
    (("endpointslices", "endpointslice", "endpointslices.discovery.k8s.io"), "EndpointSlice"),
    (("deployments", "deployment", "deploy", "deployments.apps", "deploy.apps"), "Deployment"),
    (("replicasets", "replicaset", "rs"), "ReplicaSet"),
    (("nodes", "node", "no"), "Node"),
    (("events", "event", "ev"), "Event"),
    (("namespaces", "namespace", "ns"), "Namespace"),
])
def test_resolve(names, kind):
    for n in names:
        assert resolve(n).kind == kind


def test_unknown_lists_accepted_names():
    with pytest.raises(ResourceError) as e:
        resolve("pdos")
    assert str(e.value) == (
        'the server doesn\'t have a resource type "pdos"; accepted: pods (pod, po), services (service, svc), '
        "endpoints (ep), endpointslices (endpointslice), deployments (deployment, deploy), "
        "replicasets (replicaset, rs), nodes (node, no), events (event, ev), namespaces (namespace, ns), "
        "ingresses (ingress, ing), ingressclasses (ingressclass), secrets (secret), configmaps (configmap, cm)")


def test_kind_name_syntax():
    info, name = parse_ref("svc/web")
    assert (info.kind, info.plural, info.api_version, name) == ("Service", "services", "v1", "web")
    info, name = parse_ref("deployments.apps/web")
    assert (info.kind, info.api_version, name) == ("Deployment", "apps/v1", "web")
    for bad in ("svc/", "/web", "svc", "svc/a/b"):
        with pytest.raises(ResourceError):
            parse_ref(bad)


def test_parse_args():
    assert [(i.kind, n) for i, n in parse_args(["po"])] == [("Pod", None)]
    assert [(i.kind, n) for i, n in parse_args(["svc", "a", "b"])] == [("Service", "a"), ("Service", "b")]
    assert [(i.kind, n) for i, n in parse_args(["pods,svc"])] == [("Pod", None), ("Service", None)]
    assert [(i.kind, n) for i, n in parse_args(["po/a", "svc/b"])] == [("Pod", "a"), ("Service", "b")]
    with pytest.raises(ResourceError, match="no need to specify a resource type"):
        parse_args(["svc", "po/a"])
    with pytest.raises(ResourceError, match="You must specify the type of resource"):
        parse_args([])
    assert not resolve("no").namespaced and resolve("ep").namespaced
