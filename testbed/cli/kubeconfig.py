"""``testbed kubeconfig [NAME]``: a kubeconfig for kubectl and client libraries, like
``kind get kubeconfig`` (cluster, context and user all named ``testbed-<name>``, the CA and
the admin's client certificate inline)."""

from __future__ import annotations

import base64
import os
import sys
from typing import Optional

import typer
import yaml

from .. import state
from ..apiserver import tls
from ..errors import TestbedError


def document(cluster: str) -> dict:
    """The kubeconfig of a running *cluster* as data."""
    port = state.read_json(cluster, "state.json", {}).get("apiServerPort")
    paths = tls.Paths(os.path.join(state.directory(cluster), "pki"))
    if not port or not all(os.path.exists(f) for f in paths.all()):
        raise TestbedError(f"cluster {cluster} serves no HTTPS API (no control plane, or it has not started); "
                           f"restart it with: testbed restart {cluster}")

    def b64(path: str) -> str:
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()

    name = f"testbed-{cluster}"
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": f"https://127.0.0.1:{port}",
                                                "certificate-authority-data": b64(paths.ca_cert)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": {"client-certificate-data": b64(paths.client_cert),
                                          "client-key-data": b64(paths.client_key)}}],
    }


def render(cluster: str) -> str:
    return yaml.safe_dump(document(cluster), sort_keys=False)


def write(cluster: str, path: str) -> None:
    """Write the kubeconfig to *path*, readable by its owner only (it holds a private key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render(cluster))
    os.chmod(path, 0o600)


def kubeconfig(name: Optional[str] = typer.Argument(None, help="cluster name (default: the only one that is up)")) -> None:
    """Print a kubeconfig for the cluster's API (HTTPS on 127.0.0.1, admin client certificate)."""
    sys.stdout.write(render(state.resolve(name)))


def register(app: typer.Typer) -> None:
    app.command()(kubeconfig)
