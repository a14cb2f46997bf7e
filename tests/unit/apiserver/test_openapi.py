"""OpenAPI v2/v3 generated from the kinds' schemas: upstream's names and extensions, what
kubectl's field-validation check and ``explain`` read, and v2 as gnostic protobuf."""

import json
import os

from testbed.apiserver import openapi, openapi_pb
from testbed.apiserver.protowire import fields

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "golden", "openapi-v3-service.json")
SVC = "io.k8s.api.core.v1.Service"


def test_v3_discovery_points_at_each_group_version_with_a_hash():
    paths = openapi.v3_discovery()["paths"]
    assert set(paths) == {"api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1", "apis/networking.k8s.io/v1"}
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=") and len(url.split("=")[1]) == 128
    assert openapi.v3_document("apis/nope/v1") is None


def test_service_schemas_match_the_golden_file():
    schemas = openapi.v3_document("api/v1")["components"]["schemas"]
    got = {n: schemas[n] for n in (SVC, "io.k8s.api.core.v1.ServiceSpec", "io.k8s.api.core.v1.ServicePort")}
    with open(GOLDEN) as f:
        assert got == json.load(f)


def test_kinds_carry_their_gvk_required_fields_and_merge_keys():
    apps = openapi.v3_document("apis/apps/v1")["components"]["schemas"]
    assert apps["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert apps["io.k8s.api.apps.v1.DeploymentSpec"]["required"] == ["selector", "template"]
    pod_spec = apps["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert pod_spec["containers"]["x-kubernetes-patch-merge-key"] == "name"
    container = apps["io.k8s.api.core.v1.Container"]["properties"]
    assert container["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"
    assert container["env"]["items"] == {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.EnvVar"}],
                                         "default": {}}
    meta = apps["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["labels"] == {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                              "description": openapi.DESCRIPTIONS[f"{openapi.META}.ObjectMeta.labels"]}


def test_patch_operations_declare_field_validation():
    # kubectl leaves validation to the server only when the PATCH of the kind lists it
    doc = openapi.v3_document("api/v1")
    op = doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Service", "version": "v1"}
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]
    assert "/api/v1/nodes/{name}" in doc["paths"]  # cluster-scoped: no namespace


def test_v2_has_every_definition_with_swagger_refs():
    v2 = openapi.v2_document()
    assert v2["swagger"] == "2.0"
    spec = v2["definitions"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]
    assert spec["ports"]["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.ServicePort"}
    assert "#/components" not in json.dumps(v2)


def _msg(buf: bytes) -> dict:
    out: dict = {}
    for num, _, v in fields(buf):
        out.setdefault(num, []).append(v)
    return out


def test_v2_protobuf_is_a_gnostic_document():
    doc = _msg(openapi_pb.v2_protobuf())
    assert doc[1] == [b"2.0"]
    names = [_msg(d)[1][0].decode() for d in _msg(doc[9][0])[1]]  # definitions.additional_properties[].name
    assert names == sorted(openapi.v2_document()["definitions"])
    svc = _msg(next(_msg(d)[2][0] for d in _msg(doc[9][0])[1] if _msg(d)[1][0] == SVC.encode()))
    assert _msg(svc[22][0])[1] == [b"object"]  # type
    gvk = [_msg(e) for e in svc[31]]  # vendor_extension: name, Any{yaml}
    assert gvk[0][1] == [b"x-kubernetes-group-version-kind"]
    assert json.loads(_msg(gvk[0][2][0])[2][0]) == [{"group": "", "kind": "Service", "version": "v1"}]


def test_answers_by_path_and_accept():
    body, ctype = openapi_pb.answer("/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert ctype == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" and body == openapi_pb.v2_protobuf()
    body, ctype = openapi_pb.answer("/openapi/v2", "application/json")
    assert ctype == "application/json" and json.loads(body)["swagger"] == "2.0"
    assert openapi_pb.answer("/openapi/v3/apis/apps/v1", None)[1] == "application/json"
    assert openapi_pb.answer("/openapi/v4", None) is None


def test_nested_objects_are_named_as_upstream():
    net = openapi.v3_document("apis/networking.k8s.io/v1")["components"]["schemas"]
    rules = net["io.k8s.api.networking.v1.IngressSpec"]["properties"]["rules"]
    assert rules["items"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.networking.v1.IngressRule"}]
    assert {"io.k8s.api.networking.v1.HTTPIngressPath", "io.k8s.api.networking.v1.ServiceBackendPort"} <= set(net)
    apps = openapi.v3_document("apis/apps/v1")["components"]["schemas"]
    assert {"io.k8s.api.apps.v1.DeploymentStrategy", "io.k8s.api.apps.v1.RollingUpdateDeployment",
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement"} <= set(apps)
