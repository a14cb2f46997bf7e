"""Protobuf request bodies as kubectl 1.37 sent them (captured from its requests), decoded
to the JSON objects the same requests carry as JSON."""

import pytest

from testbed.apiserver.errors import UnsupportedMediaType
from testbed.apiserver.protobody import decode
from testbed.apiserver.protowire import field, message, varint

# kubectl create deployment web --image=nginx --replicas=2 --port=80
DEPLOYMENT = bytes.fromhex(
    "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412b8010a1f0a0377656212001a0022002a003200380042005a0a0a"
    "0361707012037765621286010802120c0a0a0a0361707012037765621a6c0a1c0a0012001a0022002a003200380042005a0a0a036170"
    "701203776562124c122e0a056e67696e7812056e67696e782a00320a0a001000185022002a0042006a007200800100880100900100a2"
    "01001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a00"
    "2200")
# kubectl create service clusterip svc1 --tcp=80:8080
SERVICE = bytes.fromhex(
    "6b3873000a0d0a027631120753657276696365126c0a210a047376633112001a0022002a003200380042005a0b0a0361707012047376"
    "633112430a1b0a0738302d38303830120354435018502207080010903f1a002800120b0a036170701204737663311a002209436c7573"
    "7465724950 3a00420052005a00600068001a020a001a002200".replace(" ", ""))
# kubectl create secret generic s1 --from-literal=a=b
SECRET = bytes.fromhex("6b3873000a0c0a0276311206536563726574121e0a120a02733112001a0022002a0032003800420012060a0161"
                       "1201621a001a002200")

# kubectl create ingress simple --rule="foo.com/bar*=svc1:8080,tls=my-cert" --class=nginx --default-backend=defsvc:http
INGRESS = bytes.fromhex(
    "6b3873000a1f0a146e6574776f726b696e672e6b38732e696f2f76311207496e6772657373127f0a160a0673696d706c651200"
    "1a0022002a0032003800420012610a1422120a0664656673766312080a0468747470100012120a07666f6f2e636f6d12076d79"
    "2d636572741a2e0a07666f6f2e636f6d12230a210a1f0a042f626172120f220d0a047376633112050a0010903f1a0650726566"
    "697822056e67696e781a020a001a002200")


def test_deployment_from_kubectl_create():
    assert decode(DEPLOYMENT) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                       "ports": [{"containerPort": 80}]}]}}}}


def test_service_with_an_int_target_port_and_a_secret_with_bytes():
    assert decode(SERVICE) == {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                 "selector": {"app": "svc1"}, "type": "ClusterIP"}}
    assert decode(SECRET) == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
                              "data": {"a": "Yg=="}}



def test_ingress_rule_value_is_inline_in_the_rule():
    assert decode(INGRESS)["spec"] == {
        "defaultBackend": {"service": {"name": "defsvc", "port": {"name": "http"}}},
        "tls": [{"hosts": ["foo.com"], "secretName": "my-cert"}],
        "rules": [{"host": "foo.com", "http": {"paths": [
            {"path": "/bar", "pathType": "Prefix",
             "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}]}}],
        "ingressClassName": "nginx"}


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + message(1, field(1, api_version) + field(2, kind)) + message(2, raw)


def test_zero_of_a_pointer_field_is_kept_and_named_ports_decode():
    spec = varint(1 << 3) + varint(0)  # replicas: 0, written explicitly as Go does for a pointer
    obj = decode(_envelope("apps/v1", "Deployment", message(2, spec)))
    assert obj["spec"] == {"replicas": 0}
    port = field(1, "http") + message(4, field(1, 1) + field(3, "web"))  # targetPort: "web"
    assert decode(_envelope("v1", "Service", message(2, message(1, port))))["spec"]["ports"] == [
        {"name": "http", "targetPort": "web"}]


@pytest.mark.parametrize("body, why", [
    (b"\x0a\x00", "k8s\\0 envelope"),
    (_envelope("v1", "Pod", b""), "kind 'Pod'"),
    (_envelope("v1", "ConfigMap", field(99, "x")), "field 99 of ConfigMap at ."),
    (_envelope("v1", "ConfigMap", message(1, field(42, 1))), "field 42 of ObjectMeta at metadata"),
    (b"k8s\x00\x12\x05ab", "runs past the end"),
])
def test_what_cannot_be_read_is_refused_with_where(body, why):
    with pytest.raises(UnsupportedMediaType, match="protobuf body could not be read") as e:
        decode(body)
    assert why in str(e.value)
