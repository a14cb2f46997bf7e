"""Golden inputs for the ingress renderer: a multi-document YAML of Ingresses, Services,
EndpointSlices and Secrets (as the API server stores them), turned into nginx.conf."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from testbed.ingress import model, render
from testbed.k8s import networking

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
UPDATE = os.environ.get("TESTBED_UPDATE_GOLDEN") == "1"


def load(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((GOLDEN / f"{name}.objects.yaml").read_text()) if d]


def key(o: dict) -> tuple[str, str]:
    return o["metadata"].get("namespace") or "default", o["metadata"]["name"]


def config(objects: list[dict]) -> model.Config:
    by_kind: dict[str, list[dict]] = {}
    for o in objects:
        if o["kind"] == "Secret":
            networking.default_secret(o)
        by_kind.setdefault(o["kind"], []).append(o)
    secrets = {key(s): s for s in by_kind.get("Secret", [])}
    resolved = [model.resolve(i, secrets)[0] for i in by_kind.get("Ingress", [])]
    services = {key(s): s for s in by_kind.get("Service", [])}
    return model.build(resolved, services, by_kind.get("EndpointSlice", []))


def rendered(name: str) -> tuple[str, model.Config]:
    cfg = config(load(name))
    return render.render(cfg), cfg
