from testbed.k8s import errors as fe
from testbed.k8s.errors import AlreadyExists, Conflict, Invalid, NotFound


def test_invalid_single_cause_matches_api_server():
    e = Invalid("Service", "web", [("spec.ports[0].nodePort",
                                    "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767")])
    assert str(e) == ('Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the '
                      'valid range. The range of valid ports is 30000-32767')


def test_invalid_several_causes_are_bracketed_and_deduplicated():
    a = fe.required("spec.ports")
    b = fe.not_supported("spec.type", "Foo", ["ClusterIP", "NodePort"])
    e = Invalid("Service", "web", [a, b, a])
    assert str(e) == ('Service "web" is invalid: [spec.ports: Required value, spec.type: Unsupported value: "Foo": '
                      'supported values: "ClusterIP", "NodePort"]')
    status = e.to_status()
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"][0] == {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.ports"}
    assert len(status["details"]["causes"]) == 2


def test_invalid_qualifies_kind_with_group():
    e = Invalid("Deployment", "web", [fe.required("spec.selector")], group="apps")
    assert str(e) == 'Deployment.apps "web" is invalid: spec.selector: Required value'


def test_value_rendering():
    assert str(fe.invalid("f", "x", "d")) == 'f: Invalid value: "x": d'
    assert str(fe.invalid("f", ["10.0.0.1"], "d")) == 'f: Invalid value: ["10.0.0.1"]: d'
    assert str(fe.invalid("f", {"b": "1", "a": "2"}, "d")) == 'f: Invalid value: {"a":"2","b":"1"}: d'
    assert str(fe.invalid("f", None, "d")) == "f: Invalid value: null: d"
    assert str(fe.invalid("f", True, "d")) == "f: Invalid value: true: d"
    assert str(fe.forbidden("f", "nope")) == "f: Forbidden: nope"
    assert str(fe.duplicate("f", "x")) == 'f: Duplicate value: "x"'
    assert str(fe.too_many("f", 1001, 1000)) == "f: Too many: 1001: must have at most 1000 items"


def test_already_exists_not_found_conflict_wording():
    assert str(AlreadyExists("Service", "web")) == 'services "web" already exists'
    assert str(AlreadyExists("Deployment", "web")) == 'deployments.apps "web" already exists'
    assert str(NotFound("pods", "p")) == 'pods "p" not found'
    assert str(Conflict("Service", "web")) == (
        'Operation cannot be fulfilled on services "web": the object has been modified; '
        "please apply your changes to the latest version and try again")
    assert NotFound("Pod", "p").to_status()["code"] == 404
    assert AlreadyExists("EndpointSlice", "x").to_status()["details"] == {
        "name": "x", "kind": "endpointslices", "group": "discovery.k8s.io"}
