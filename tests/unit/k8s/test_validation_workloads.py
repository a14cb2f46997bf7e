"""Pod, Deployment, ReplicaSet, EndpointSlice, Namespace rules with exact messages."""

import copy

import pytest

from testbed.k8s import Invalid

from .helpers import admission, deployment


def pod_obj(spec, name="p"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


C = {"name": "c", "image": "nginx:1.27"}


def error(obj):
    with pytest.raises(Invalid) as e:
        admission().admit_create(obj)
    return str(e.value)


def ctr(**kw):
    c = dict(C)
    c.update(kw)
    return c


# --- Pod ---------------------------------------------------------------------------

def test_pod_defaults():
    p = admission().admit_create(pod_obj({"containers": [ctr(ports=[{"containerPort": 80}], readinessProbe={"httpGet": {"port": 80}})]}))
    s = p["spec"]
    assert (s["dnsPolicy"], s["restartPolicy"], s["terminationGracePeriodSeconds"], s["schedulerName"]) == (
        "ClusterFirst", "Always", 30, "default-scheduler")
    c = s["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent" and c["ports"][0]["protocol"] == "TCP"
    assert c["readinessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert p["metadata"]["namespace"] == "default" and p["metadata"]["uid"]
    latest = admission().admit_create(pod_obj({"containers": [ctr(image="nginx")]}))
    assert latest["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_pod_containers_required():
    assert error(pod_obj({})) == 'Pod "p" is invalid: spec.containers: Required value'


def test_pod_container_name_required_and_unique():
    assert error(pod_obj({"containers": [{"image": "x"}]})) == 'Pod "p" is invalid: spec.containers[0].name: Required value'
    assert error(pod_obj({"containers": [C, C]})) == 'Pod "p" is invalid: spec.containers[1].name: Duplicate value: "c"'


def test_pod_image_required():
    assert error(pod_obj({"containers": [{"name": "c"}]})) == 'Pod "p" is invalid: spec.containers[0].image: Required value'


def test_container_port_range():
    assert error(pod_obj({"containers": [ctr(ports=[{"containerPort": 0}])]})) == (
        'Pod "p" is invalid: spec.containers[0].ports[0].containerPort: Required value')
    assert error(pod_obj({"containers": [ctr(ports=[{"containerPort": 65536}])]})) == (
        'Pod "p" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 65536: must be between 1 and 65535, inclusive')


def test_container_port_protocol():
    assert error(pod_obj({"containers": [ctr(ports=[{"containerPort": 80, "protocol": "tcp"}])]})) == (
        'Pod "p" is invalid: spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"')


def test_container_port_names():
    assert error(pod_obj({"containers": [ctr(ports=[{"containerPort": 80, "name": "web-http-frontend"}])]})) == (
        'Pod "p" is invalid: spec.containers[0].ports[0].name: Invalid value: "web-http-frontend": must be no more than 15 characters')
    assert error(pod_obj({"containers": [ctr(ports=[{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}])]})) == (
        'Pod "p" is invalid: spec.containers[0].ports[1].name: Duplicate value: "http"')


def test_restart_policy():
    assert error(pod_obj({"containers": [C], "restartPolicy": "Sometimes"})) == (
        'Pod "p" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"')


def test_dns_policy():
    assert error(pod_obj({"containers": [C], "dnsPolicy": "Cluster"})) == (
        'Pod "p" is invalid: spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirst", '
        '"ClusterFirstWithHostNet", "Default", "None"')


def test_probe_needs_exactly_one_handler():
    assert error(pod_obj({"containers": [ctr(livenessProbe={"periodSeconds": 5})]})) == (
        'Pod "p" is invalid: spec.containers[0].livenessProbe: Required value: must specify a handler type')
    assert error(pod_obj({"containers": [ctr(readinessProbe={"tcpSocket": {"port": 80}, "exec": {"command": ["true"]}})]})) == (
        'Pod "p" is invalid: spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type')


def test_probe_fields():
    assert error(pod_obj({"containers": [ctr(livenessProbe={"tcpSocket": {"port": 80}, "successThreshold": 2})]})) == (
        'Pod "p" is invalid: spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1')
    assert error(pod_obj({"containers": [ctr(readinessProbe={"httpGet": {"port": "web_port"}})]})) == (
        'Pod "p" is invalid: spec.containers[0].readinessProbe.httpGet.port: Invalid value: "web_port": must contain only '
        'alpha-numeric characters (a-z, 0-9), and hyphens (-)')
    assert error(pod_obj({"containers": [ctr(readinessProbe={"exec": {"command": ["x"]}, "periodSeconds": -1})]})) == (
        'Pod "p" is invalid: spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0')


def test_pod_name_dns_subdomain():
    assert error(pod_obj({"containers": [C]}, name="Web_1")).startswith(
        'Pod "Web_1" is invalid: metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of')


def test_pod_spec_is_immutable_but_binding_and_images_allowed():
    adm = admission()
    old = adm.admit_create(pod_obj({"containers": [C]}))
    new = copy.deepcopy(old)
    new["spec"]["nodeName"] = "node-a"
    new["spec"]["containers"][0]["image"] = "nginx:1.28"
    assert adm.admit_update(new, old)["spec"]["nodeName"] == "node-a"
    bad = copy.deepcopy(old)
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    with pytest.raises(Invalid, match=r"spec: Forbidden: pod updates may not change fields other than"):
        adm.admit_update(bad, old)


def test_pod_status_update_subresource():
    adm = admission()
    old = adm.admit_create(pod_obj({"containers": [C]}))
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running", "podIP": "10.244.0.5"}
    new["spec"]["restartPolicy"] = "Never"  # ignored on the status subresource
    out = adm.admit_update(new, old, subresource="status")
    assert out["status"]["podIP"] == "10.244.0.5" and out["spec"]["restartPolicy"] == "Always"
    # on the main resource the status is kept from the stored object
    main = copy.deepcopy(old)
    main["status"] = {"phase": "Running"}
    assert adm.admit_update(main, old)["status"]["phase"] == "Pending"


# --- Deployment / ReplicaSet ---------------------------------------------------------

def test_deployment_defaults():
    d = admission().admit_create(deployment())
    s = d["spec"]
    assert s["replicas"] == 1 and s["revisionHistoryLimit"] == 10 and s["progressDeadlineSeconds"] == 600
    assert s["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert s["template"]["spec"]["restartPolicy"] == "Always" and d["metadata"]["generation"] == 1


def test_deployment_selector_required():
    d = deployment()
    del d["spec"]["selector"]
    assert error(d) == 'Deployment.apps "web" is invalid: spec.selector: Required value'


def test_deployment_selector_not_empty():
    assert error(deployment(selector={})) == (
        'Deployment.apps "web" is invalid: spec.selector: Invalid value: {}: empty selector is invalid for deployment')


def test_deployment_selector_matches_template():
    assert error(deployment(labels={"app": "other"})) == (
        'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: {"app":"other"}: '
        '`selector` does not match template `labels`')
    ok = admission().admit_create(deployment(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}))
    assert ok["spec"]["selector"]["matchExpressions"][0]["operator"] == "In"


def test_deployment_selector_expression_shape():
    msg = error(deployment(selector={"matchExpressions": [{"key": "app", "operator": "In"}]}))
    assert "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'" in msg


def test_replicas_non_negative():
    assert error(deployment(spec_extra={"replicas": -1})) == (
        'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0')


def test_template_restart_policy_always():
    d = deployment()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert error(d) == (
        'Deployment.apps "web" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"')


def test_rolling_update_values():
    d = deployment(spec_extra={"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "lots"}}})
    assert error(d) == (
        "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate.maxSurge: Invalid value: lots: a valid percent "
        "string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
    d = deployment(spec_extra={"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}})
    assert error(d) == (
        'Deployment.apps "web" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0')
    d = deployment(spec_extra={"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}})
    assert error(d) == (
        'Deployment.apps "web" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%')
    d = deployment(spec_extra={"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}})
    assert error(d) == (
        "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'")
    d = deployment(spec_extra={"strategy": {"type": "BlueGreen"}})
    assert error(d) == (
        'Deployment.apps "web" is invalid: spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"')


def test_deployment_selector_immutable_and_generation():
    adm = admission()
    old = adm.admit_create(deployment())
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    assert adm.admit_update(new, old)["metadata"]["generation"] == 2
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "x": "y"}}
    new["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    with pytest.raises(Invalid) as e:
        adm.admit_update(new, old)
    assert str(e.value) == ('Deployment.apps "web" is invalid: spec.selector: Invalid value: '
                            '{"matchLabels":{"app":"web","x":"y"}}: field is immutable')


def test_replicaset():
    rs = deployment()
    rs["kind"] = "ReplicaSet"
    out = admission().admit_create(rs)
    assert out["spec"]["replicas"] == 1
    rs["spec"]["template"]["metadata"]["labels"] = {}
    assert error(rs) == ('ReplicaSet.apps "web" is invalid: spec.template.metadata.labels: Invalid value: {}: '
                         '`selector` does not match template `labels`')


# --- EndpointSlice / Endpoints / Namespace ------------------------------------------

def eps(**kw):
    o = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-abc"},
         "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"port": 80}]}
    o.update(kw)
    return o


def test_endpointslice_defaults_and_ok():
    out = admission().admit_create(eps())
    assert out["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]


def test_endpointslice_address_type():
    assert error(eps(addressType="IP")) == (
        'EndpointSlice.discovery.k8s.io "web-abc" is invalid: addressType: Unsupported value: "IP": supported values: '
        '"FQDN", "IPv4", "IPv6"')


def test_endpointslice_endpoints():
    assert error(eps(endpoints=[{"addresses": []}])) == (
        'EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints[0].addresses: Required value: must contain at least 1 address')
    assert error(eps(endpoints=[{"addresses": ["fd00::1"]}])) == (
        'EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints[0].addresses[0]: Invalid value: "fd00::1": '
        'must be a valid IPv4 address')
    assert error(eps(endpoints=[{"addresses": ["127.0.0.1"]}])) == (
        'EndpointSlice.discovery.k8s.io "web-abc" is invalid: endpoints[0].addresses[0]: Invalid value: "127.0.0.1": '
        'may not be in the loopback range (127.0.0.0/8, ::1/128)')


def test_endpointslice_ports():
    assert error(eps(ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}])) == (
        'EndpointSlice.discovery.k8s.io "web-abc" is invalid: ports[1].name: Duplicate value: "a"')
    assert error(eps(ports=[{"port": 80, "protocol": "HTTP"}])) == (
        'EndpointSlice.discovery.k8s.io "web-abc" is invalid: ports[0].protocol: Unsupported value: "HTTP": supported '
        'values: "SCTP", "TCP", "UDP"')


def test_endpointslice_address_type_immutable():
    adm = admission()
    old = adm.admit_create(eps())
    new = copy.deepcopy(old)
    new["addressType"] = "IPv6"
    new["endpoints"] = [{"addresses": ["fd00::5"]}]
    with pytest.raises(Invalid, match=r'addressType: Invalid value: "IPv6": field is immutable'):
        adm.admit_update(new, old)


def test_endpoints_subsets():
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"}, "subsets": [{"ports": [{"port": 80}]}]}
    assert error(ep) == 'Endpoints "web" is invalid: subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`'


def test_namespace():
    ns = admission().admit_create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab", "namespace": "x"}})
    assert "namespace" not in ns["metadata"] and ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "lab"}
    assert ns["status"] == {"phase": "Active"} and ns["spec"] == {"finalizers": ["kubernetes"]}
    assert error({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}) == (
        'Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": must not contain dots')


def test_generate_name():
    p = admission().admit_create({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": {"containers": [C]}})
    assert p["metadata"]["name"].startswith("web-") and len(p["metadata"]["name"]) == 9
