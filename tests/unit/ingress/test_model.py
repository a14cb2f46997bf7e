"""Resolving Ingresses against Secrets, class ownership, endpoints, annotations (pure)."""

from __future__ import annotations

import base64

import pytest

from testbed.ingress import annotations, certs, model

from .helpers import config, load


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def tls_ingress(secret: str = "foo-tls") -> dict:
    return {"metadata": {"name": "secure", "namespace": "default"},
            "spec": {"tls": [{"hosts": ["foo.example.com"], "secretName": secret}], "rules": [
                {"host": "foo.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}


def tls_secret(crt: bytes, key: bytes) -> dict:
    return {"metadata": {"name": "foo-tls", "namespace": "default"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": _b64(crt), "tls.key": _b64(key)}}


def test_missing_secret_is_a_resolve_error():
    with pytest.raises(model.ResolveError, match='secret "default/foo-tls" not found') as e:
        model.resolve(tls_ingress(), {})
    assert e.value.reason == "SecretNotFound"


def test_certificate_must_match_key():
    crt, _ = certs.self_signed("foo.example.com")
    _, other_key = certs.self_signed("foo.example.com")
    with pytest.raises(model.ResolveError, match="tls.key does not match") as e:
        model.resolve(tls_ingress(), {("default", "foo-tls"): tls_secret(crt, other_key)})
    assert e.value.reason == "InvalidCertificate"
    with pytest.raises(model.ResolveError, match="not a PEM certificate"):
        model.resolve(tls_ingress(), {("default", "foo-tls"): tls_secret(b"junk", other_key)})


def test_valid_certificate_becomes_a_pem_file():
    crt, key = certs.self_signed("foo.example.com")
    r, warnings = model.resolve(tls_ingress(), {("default", "foo-tls"): tls_secret(crt, key)})
    assert warnings == [] and r.tls == {"foo.example.com": "default-foo-tls.pem"}
    assert r.pem["default-foo-tls.pem"].startswith("-----BEGIN CERTIFICATE-----")


def test_ownership_by_class_name_legacy_annotation_and_default_class():
    ing = {"metadata": {"name": "x"}, "spec": {"ingressClassName": "nginx"}}
    assert model.owns(ing, "nginx", False) and not model.owns(ing, "other", True)
    legacy = {"metadata": {"name": "x", "annotations": {"kubernetes.io/ingress.class": "nginx"}}, "spec": {}}
    assert model.owns(legacy, "nginx", False)
    classless = {"metadata": {"name": "x"}, "spec": {}}
    assert model.owns(classless, "nginx", True) and not model.owns(classless, "nginx", False)


def test_upstreams_are_ready_endpoints_not_the_cluster_ip():
    cfg = config(load("ingress-host-path"))
    ups = {u.name: u.endpoints for u in cfg.upstreams}
    assert ups["default-api-80"] == ("10.244.1.2:8080",)   # 10.244.2.2 is not ready
    assert ups["default-apiv2-http"] == ("10.244.1.3:8080",)  # port by name


def test_prefix_matches_by_path_element_and_longest_first():
    cfg = config(load("ingress-host-path"))
    foo = next(s for s in cfg.servers if s.name == "foo.example.com")
    matches = [l.match for l in foo.locations]
    assert matches == ["/api/v2/", "= /api/v2", "= /login", "/api/", "= /api", "/"]
    assert "/apiv1" not in matches  # "/api" never becomes a bare string prefix


def test_bad_annotations_fall_back_with_a_message():
    parsed, problems = annotations.parse({
        "nginx.ingress.kubernetes.io/ssl-redirect": "maybe",
        "nginx.ingress.kubernetes.io/backend-protocol": "SMTP",
        "nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8,nope",
        "nginx.ingress.kubernetes.io/auth-type": "basic",
    })
    assert parsed.ssl_redirect is True and parsed.backend_protocol == "HTTP"
    assert parsed.whitelist_source_range == () and parsed.auth_type == ""
    assert problems == [
        'annotation nginx.ingress.kubernetes.io/auth-secret: required with auth-type basic',
        'annotation nginx.ingress.kubernetes.io/ssl-redirect: invalid value "maybe" (allowed: true, false)',
        'annotation nginx.ingress.kubernetes.io/backend-protocol: invalid value "SMTP" (allowed: HTTP, HTTPS, GRPC, GRPCS)',
        'annotation nginx.ingress.kubernetes.io/whitelist-source-range: "nope" is not a CIDR',
    ]
