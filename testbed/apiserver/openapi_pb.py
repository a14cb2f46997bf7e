"""``/openapi/v2`` as protobuf: gnostic's ``openapi.v2.Document`` (field numbers from
gnostic's ``openapiv2/OpenAPIv2.proto``). client-go's ``OpenAPISchema()`` asks for
``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and unmarshals the body as
that message whatever the answer's content type, and kubectl (1.27 to 1.37) fetches it
before any validated ``create``/``apply``, so JSON is not enough for kubectl.

Only the parts of Swagger 2.0 that ``openapi.v2_document`` produces are encoded: schemas
(``$ref``, type, format, description, required, properties, items, additionalProperties,
vendor extensions), and paths whose operations have query/path/body parameters and a
``200`` response. Vendor extension values are carried as YAML (JSON is YAML), as gnostic
does."""

from __future__ import annotations

import functools
import json

from .openapi import v2_document
from .protowire import field, message

# what clients ask for (the deprecated "@" form) and what kube-openapi answers with: "@" is no
# MIME token character, so 1.27/1.28 clients fail to parse it in a response's Content-Type
_ASKED = ("com.github.proto-openapi.spec.v2@v1.0+protobuf", "com.github.proto-openapi.spec.v2.v1.0+protobuf")
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _any(value) -> bytes:  # openapi.v2.Any{yaml = 2}
    return field(2, json.dumps(value, separators=(",", ":")))


def _named(num: int, name: str, body: bytes) -> bytes:  # Named*{name = 1, value = 2}
    return message(num, field(1, name) + message(2, body))


def _extensions(num: int, node: dict) -> bytes:
    return b"".join(_named(num, k, _any(v)) for k, v in node.items() if k.startswith("x-"))


def schema(s: dict) -> bytes:
    """openapi.v2.Schema."""
    out = field(1, s.get("$ref")) + field(2, s.get("format")) + field(4, s.get("description"))
    out += b"".join(field(19, r) for r in s.get("required", []))
    if isinstance(s.get("additionalProperties"), dict):  # AdditionalPropertiesItem{schema = 1}
        out += message(21, message(1, schema(s["additionalProperties"])))
    if "type" in s:  # TypeItem{repeated value = 1}
        out += message(22, field(1, s["type"]))
    if "items" in s:  # ItemsItem{repeated schema = 1}
        out += message(23, message(1, schema(s["items"])))
    if "properties" in s:  # Properties{repeated NamedSchema additional_properties = 1}
        out += message(25, b"".join(_named(1, k, schema(v)) for k, v in s["properties"].items()))
    return out + _extensions(31, s)


def _parameter(p: dict) -> bytes:
    """openapi.v2.ParametersItem{parameter = 1: Parameter}."""
    if p["in"] == "body":  # BodyParameter
        body = field(1, p.get("description")) + field(2, p["name"]) + field(3, "body") + \
            field(4, bool(p.get("required"))) + message(5, schema(p["schema"]))
        return message(1, message(1, body))
    common = field(1, bool(p.get("required"))) + field(2, p["in"]) + field(3, p.get("description")) + \
        field(4, p["name"])
    if p["in"] == "query":  # NonBodyParameter{query_parameter_sub_schema = 3}
        sub = message(3, common + field(6, p.get("type")) + field(20, bool(p.get("uniqueItems"))))
    elif p["in"] == "path":  # NonBodyParameter{path_parameter_sub_schema = 4}
        sub = message(4, common + field(5, p.get("type")) + field(19, bool(p.get("uniqueItems"))))
    else:
        raise ValueError(f"parameter in {p['in']!r} is not encoded")
    return message(1, message(2, sub))


def _operation(op: dict) -> bytes:
    out = b"".join(field(1, t) for t in op.get("tags", [])) + field(5, op.get("operationId"))
    out += b"".join(message(8, _parameter(p)) for p in op.get("parameters", []))
    codes = b""
    for code, resp in op.get("responses", {}).items():  # Responses{response_code = 1}
        r = field(1, resp.get("description"))
        if "schema" in resp:  # SchemaItem{schema = 1}
            r += message(2, message(1, schema(resp["schema"])))
        codes += _named(1, code, message(1, r))  # ResponseValue{response = 1}
    return out + message(9, codes) + _extensions(13, op)


_VERBS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def _path_item(item: dict) -> bytes:
    out = b"".join(message(_VERBS[v], _operation(op)) for v, op in item.items() if v in _VERBS)
    return out + b"".join(message(9, _parameter(p)) for p in item.get("parameters", []))


def document(doc: dict) -> bytes:
    """openapi.v2.Document for a Swagger 2.0 document as data."""
    info = doc.get("info", {})
    out = field(1, doc.get("swagger")) + message(2, field(1, info.get("title")) + field(2, info.get("version")))
    out += message(8, b"".join(_named(2, p, _path_item(i)) for p, i in doc.get("paths", {}).items()))
    out += message(9, b"".join(_named(1, n, schema(s)) for n, s in doc.get("definitions", {}).items()))
    return out


@functools.lru_cache(maxsize=1)
def v2_protobuf() -> bytes:
    return document(v2_document())


def answer(path: str, accept: str | None) -> tuple[bytes, str] | None:
    """The body and content type of ``/openapi/v2``, ``/openapi/v3`` and
    ``/openapi/v3/<group-version>``; None for any other path. v2 is protobuf when the
    client names the protobuf type, else JSON."""
    from .openapi import v3_discovery, v3_document

    if path == "/openapi/v2":
        if any(t in (accept or "") for t in _ASKED):
            return v2_protobuf(), MEDIA_TYPE
        return json.dumps(v2_document(), separators=(",", ":")).encode(), "application/json"
    if path == "/openapi/v3":
        return json.dumps(v3_discovery(), separators=(",", ":")).encode(), "application/json"
    if path.startswith("/openapi/v3/"):
        doc = v3_document(path[len("/openapi/v3/"):])
        if doc is not None:
            return json.dumps(doc, separators=(",", ":")).encode(), "application/json"
    return None
