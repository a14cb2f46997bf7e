import os
import shutil
import tempfile

import pytest

from testbed.apiserver import etcd
from testbed.apiserver.client import ApiClient
from testbed.apiserver.server import serve
from testbed.apiserver.memory import MemoryStore

from ...conftest import stores_under_test


def pytest_generate_tests(metafunc):
    if "make_store" in metafunc.fixturenames:
        metafunc.parametrize("make_store", stores_under_test(metafunc.config), indirect=True)


@pytest.fixture
def make_store(request):
    """Makes stores of the backend under test; every etcd store gets a key prefix of its
    own (like ``--etcd-prefix``) so tests sharing the session's etcd never see each other."""
    made = []

    def factory(**kwargs):
        if request.param == "embedded":
            s = MemoryStore(**kwargs)
        else:
            s = etcd.EtcdStore(request.getfixturevalue("etcd_endpoint"),
                               prefix=request.getfixturevalue("etcd_prefix") + f"/{len(made)}", **kwargs)
        made.append(s)
        return s
    yield factory
    for s in made:
        s.close()


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def rv(store):
    """``rv(n)``: the resourceVersion of the test's n-th write (etcd's revision counts every
    write to the session's etcd, the embedded store's starts at 0)."""
    base = int(store.resource_version)
    return lambda n: str(base + n)


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
