"""The ``nginx.ingress.kubernetes.io/*`` annotations this controller understands, parsed
into one value per Ingress (as ingress-nginx's ``internal/ingress/annotations`` parsers do).

An invalid value never breaks the Ingress: the annotation falls back to its default and the
problem is returned, so the controller reports it as an event on the Ingress.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Mapping

PREFIX = "nginx.ingress.kubernetes.io/"
BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS")
AUTH_TYPES = ("basic",)


@dataclass(frozen=True)
class Annotations:
    auth_type: str = ""            # "" (none) or "basic"
    auth_secret: str = ""          # "name" or "namespace/name"
    auth_realm: str = ""
    ssl_redirect: bool = True
    rewrite_target: str = ""
    use_regex: bool = False
    backend_protocol: str = "HTTP"
    whitelist_source_range: tuple[str, ...] = ()


def _bool(value: str, name: str, default: bool, problems: list[str]) -> bool:
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    problems.append(f'annotation {PREFIX}{name}: invalid value "{value}" (allowed: true, false)')
    return default


def parse(annotations: Mapping[str, str] | None) -> tuple[Annotations, list[str]]:
    """The Ingress's annotations and the problems found in them (one message each)."""
    a = {k[len(PREFIX):]: str(v) for k, v in (annotations or {}).items() if k.startswith(PREFIX)}
    problems: list[str] = []
    out: dict = {}
    if "auth-type" in a:
        if a["auth-type"] in AUTH_TYPES:
            out["auth_type"] = a["auth-type"]
        else:
            problems.append(f'annotation {PREFIX}auth-type: invalid value "{a["auth-type"]}" '
                            f'(allowed: {", ".join(AUTH_TYPES)})')
    if out.get("auth_type"):
        if not a.get("auth-secret"):
            problems.append(f"annotation {PREFIX}auth-secret: required with auth-type {out['auth_type']}")
            out.pop("auth_type")
        else:
            out["auth_secret"] = a["auth-secret"].strip()
        out["auth_realm"] = a.get("auth-realm", "")
    if "ssl-redirect" in a:
        out["ssl_redirect"] = _bool(a["ssl-redirect"], "ssl-redirect", True, problems)
    if "use-regex" in a:
        out["use_regex"] = _bool(a["use-regex"], "use-regex", False, problems)
    if a.get("rewrite-target"):
        out["rewrite_target"] = a["rewrite-target"]
    if "backend-protocol" in a:
        proto = a["backend-protocol"].strip().upper()
        if proto in BACKEND_PROTOCOLS:
            out["backend_protocol"] = proto
        else:
            problems.append(f'annotation {PREFIX}backend-protocol: invalid value "{a["backend-protocol"]}" '
                            f'(allowed: {", ".join(BACKEND_PROTOCOLS)})')
    if "whitelist-source-range" in a:
        ranges = []
        for item in a["whitelist-source-range"].split(","):
            item = item.strip()
            if not item:
                continue
            try:
                ranges.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                problems.append(f'annotation {PREFIX}whitelist-source-range: "{item}" is not a CIDR')
                ranges = []
                break
        out["whitelist_source_range"] = tuple(ranges)
    return Annotations(**out), problems
