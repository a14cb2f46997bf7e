import os
import shutil
import tempfile

import pytest

from testbed.apiserver.client import ApiClient
from testbed.apiserver.server import serve
from testbed.apiserver.store import MemoryStore


@pytest.fixture
def short_dir():
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    d = tempfile.mkdtemp(prefix="tbapi-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def api(short_dir):
    """(store, server handle, client) on a socket in a temporary directory."""
    store = MemoryStore()
    handle = serve(store, os.path.join(short_dir, "api.sock"))
    client = ApiClient(handle.socket_path)
    yield store, handle, client
    client.close()
    handle.close()
    store.close()


def svc(name, ns="default", **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": spec or {"ports": [{"port": 80}]}}
