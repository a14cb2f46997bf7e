"""Type and unknown-field checks run before any other code sees a request body."""

import pytest

from testbed.k8s import Invalid, schema, schemas
from testbed.k8s.errors import BadRequest

from .helpers import admission, deployment, svc


def pod_obj(spec, name="p", **top):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec, **top}


C = {"name": "c", "image": "nginx:1.27"}


def invalid(obj) -> str:
    with pytest.raises(Invalid) as e:
        admission().admit_create(obj)
    return str(e.value)


def bad_request(obj) -> str:
    with pytest.raises(BadRequest) as e:
        admission().admit_create(obj)
    return str(e.value)


def test_containers_as_string():
    assert invalid(pod_obj({"containers": "x"})) == (
        'Pod "p" is invalid: spec.containers: Invalid value: "string": '
        "spec.containers in body must be of type array")


def test_container_as_string_inside_list():
    assert invalid(pod_obj({"containers": ["x"]})) == (
        'Pod "p" is invalid: spec.containers[0]: Invalid value: "string": '
        "spec.containers[0] in body must be of type object")


def test_service_selector_written_as_a_list():
    s = svc(spec={"selector": ["app=web"], "ports": [{"port": 80}]})
    assert invalid(s) == (
        'Service "web" is invalid: spec.selector: Invalid value: "array": '
        "spec.selector in body must be of type object")


def test_deployment_selector_as_list_and_replicas_as_string():
    d = deployment(spec_extra={"replicas": "3"}, selector=[{"app": "web"}])
    assert invalid(d) == (
        'Deployment.apps "web" is invalid: [spec.selector: Invalid value: "array": '
        'spec.selector in body must be of type object, spec.replicas: Invalid value: "string": '
        "spec.replicas in body must be of type integer]")


def test_every_type_error_is_reported_with_its_path():
    p = pod_obj({"containers": [dict(C, ports=[{"containerPort": "80"}], command="sleep 1")],
                 "hostNetwork": "yes"})
    msg = invalid(p)
    assert "spec.containers[0].command: Invalid value: \"string\": spec.containers[0].command in body must be of type array" in msg
    assert "spec.containers[0].ports[0].containerPort: Invalid value: \"string\"" in msg
    assert "spec.hostNetwork: Invalid value: \"string\": spec.hostNetwork in body must be of type boolean" in msg


def test_label_value_must_be_a_string():
    p = pod_obj({"containers": [C]})
    p["metadata"]["labels"] = {"enabled": True}
    assert invalid(p) == (
        'Pod "p" is invalid: metadata.labels.enabled: Invalid value: "boolean": '
        "metadata.labels.enabled in body must be of type string")


def test_int_or_string_accepts_both_and_nothing_else():
    ok = svc(spec={"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]})
    admission().admit_create(ok)
    bad = svc(spec={"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": [8080]}]})
    assert invalid(bad).endswith(
        'spec.ports[0].targetPort: Invalid value: "array": spec.ports[0].targetPort in body must be of type integer,string')


def test_float_is_not_an_integer():
    assert invalid(deployment(spec_extra={"replicas": 1.5})).endswith(
        'spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer')


def test_metadata_must_be_an_object():
    assert invalid(pod_obj({"containers": [C]}) | {"metadata": ["p"]}) == (
        'Pod "" is invalid: metadata: Invalid value: "array": metadata in body must be of type object')


def test_null_means_unset():
    p = pod_obj({"containers": [C], "nodeSelector": None})
    admission().admit_create(p)


def test_unknown_field_in_pod_spec_is_a_strict_decoding_error():
    assert bad_request(pod_obj({"containers": [C], "foo": 1})) == (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.foo"')


def test_unknown_fields_everywhere_are_listed_together_in_document_order():
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"
    d["spec"]["replica"] = 2
    d["extra"] = {}
    assert bad_request(d) == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagePolicy", '
        'unknown field "spec.replica", unknown field "extra"')


def test_type_errors_win_over_unknown_fields():
    assert "must be of type array" in invalid(pod_obj({"containers": "x", "foo": 1}))


def test_unknown_field_on_update_is_refused():
    a = admission()
    old = a.admit_create(svc())
    new = dict(old, spec=dict(old["spec"], clusterIPz="1.2.3.4"))
    with pytest.raises(BadRequest) as e:
        a.admit_update(new, old)
    assert str(e.value).endswith('strict decoding error: unknown field "spec.clusterIPz"')


def test_every_served_kind_has_a_schema():
    from testbed.k8s.kinds import KINDS

    assert sorted(schemas.BY_KIND) == sorted(k.kind for k in KINDS)


@pytest.mark.parametrize("value, name", [
    (None, "null"), (True, "boolean"), (3, "integer"), (3.0, "number"), ("x", "string"),
    ([], "array"), ({}, "object"),
])
def test_json_type_names(value, name):
    assert schema.json_type(value) == name


def test_null_fields_are_dropped_before_defaulting():
    d = deployment(spec_extra={"strategy": None})
    d["spec"]["template"]["metadata"]["annotations"] = None
    d["spec"]["selector"] = {"matchLabels": None, "matchExpressions": [{"key": "app", "operator": "Exists"}]}
    out = admission().admit_create(d)
    assert out["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "matchLabels" not in out["spec"]["selector"]


def test_null_list_item_is_a_type_error():
    assert invalid(pod_obj({"containers": [None]})).endswith(
        'spec.containers[0]: Invalid value: "null": spec.containers[0] in body must be of type object')


def test_kind_of_the_wrong_type_is_no_such_kind():
    with pytest.raises(BadRequest, match='no matches for kind "\\[\'Pod\'\\]" in version "v1"'):
        admission().admit_create({"apiVersion": "v1", "kind": ["Pod"], "metadata": {"name": "p"}})
