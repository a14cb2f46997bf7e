"""Ingress, IngressClass, Secret and ConfigMap admission with upstream's messages."""

from __future__ import annotations

import pytest

from testbed.k8s import Admission, Invalid


def ingress(spec: dict, name: str = "web") -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def rule(host: str = "foo.example.com", **path) -> dict:
    p = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
    p.update(path)
    return {"host": host, "http": {"paths": [p]}}


def errors(obj: dict) -> str:
    with pytest.raises(Invalid) as e:
        Admission().admit_create(obj)
    return str(e.value)


def test_valid_ingress_gets_empty_status():
    out = Admission().admit_create(ingress({"rules": [rule(), rule("*.example.com")]}))
    assert out["status"] == {"loadBalancer": {}}


def test_path_type_required():
    msg = errors(ingress({"rules": [rule(pathType=None)]}))
    assert msg == ('Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].pathType: '
                   "Required value: pathType must be specified")


def test_path_type_supported_values():
    assert 'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: ' \
           '"Exact", "ImplementationSpecific", "Prefix"' in errors(ingress({"rules": [rule(pathType="Regex")]}))


def test_path_must_be_absolute():
    assert 'spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path' \
        in errors(ingress({"rules": [rule(path="api")]}))
    assert "must not contain '//'" in errors(ingress({"rules": [rule(path="/a//b")]}))


def test_backend_needs_port_number_or_name():
    r = rule(backend={"service": {"name": "web"}})
    assert "spec.rules[0].http.paths[0].backend: Required value: port name or number is required" \
        in errors(ingress({"rules": [r]}))
    r = rule(backend={"service": {"name": "web", "port": {"number": 80, "name": "http"}}})
    assert 'backend: Invalid value: "": cannot set both port name & port number' in errors(ingress({"rules": [r]}))
    r = rule(backend={"service": {"name": "web", "port": {"number": 70000}}})
    assert "backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive" \
        in errors(ingress({"rules": [r]}))
    assert "resource or service backend is required" in errors(ingress({"rules": [rule(backend={})]}))


def test_host_dns_subdomain_or_wildcard():
    assert 'spec.rules[0].host: Invalid value: "Foo": a lowercase RFC 1123 subdomain' \
        in errors(ingress({"rules": [rule("Foo")]}))
    msg = errors(ingress({"rules": [rule("foo.*.com")]}))
    assert "a wildcard DNS-1123 subdomain must start with '*.'" in msg and "'*.example.com'" in msg
    assert "must be a DNS name, not an IP address" in errors(ingress({"rules": [rule("10.0.0.1")]}))


def test_rules_or_default_backend():
    assert "either `defaultBackend` or `rules` must be specified" in errors(ingress({}))


def test_tls_hosts_and_secret_name():
    msg = errors(ingress({"rules": [rule()], "tls": [{"hosts": ["Bad"], "secretName": "Bad_Name"}]}))
    assert 'spec.tls[0].hosts[0]: Invalid value: "Bad"' in msg
    assert 'spec.tls[0].secretName: Invalid value: "Bad_Name"' in msg


def test_ingress_class_controller_is_domain_prefixed_path():
    ic = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
          "spec": {"controller": "ingress-nginx"}}
    assert 'spec.controller: Invalid value: "ingress-nginx": must be a domain-prefixed path (such as "acme.io/foo")' \
        in errors(ic)
    ic["spec"]["controller"] = "k8s.io/ingress-nginx"
    Admission().admit_create(ic)


def secret(type_: str | None, **fields) -> dict:
    s = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, **fields}
    if type_:
        s["type"] = type_
    return s


def test_secret_string_data_merges_into_data_and_defaults_opaque():
    out = Admission().admit_create(secret(None, data={"a": "eA=="}, stringData={"auth": "foo:bar"}))
    assert out["type"] == "Opaque"
    assert out["data"] == {"a": "eA==", "auth": "Zm9vOmJhcg=="}
    assert "stringData" not in out


def test_tls_secret_needs_both_keys():
    msg = errors(secret("kubernetes.io/tls", stringData={"tls.crt": "x"}))
    assert msg == 'Secret "s" is invalid: data[tls.key]: Required value'


def test_secret_keys_and_base64():
    msg = errors(secret("Opaque", data={"bad/key": "eA==", "b": "!!"}))
    assert "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric" in msg
    assert "data[b]" in msg


def test_secret_type_is_immutable():
    a = Admission()
    old = a.admit_create(secret("Opaque", data={"a": "eA=="}))
    new = dict(old, type="kubernetes.io/tls", data={"tls.crt": "eA==", "tls.key": "eA=="})
    with pytest.raises(Invalid, match="type: Invalid value: \"kubernetes.io/tls\": field is immutable"):
        a.admit_update(new, old)


def test_config_map_keys():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
          "data": {"..x": "1"}}
    assert "data[..x]: Invalid value: \"..x\": must not start with '..'" in errors(cm)
