import itertools
import os
import shutil
import tempfile

import pytest

from testbed.apiserver import etcd
from testbed.apiserver.client import ApiClient
from testbed.apiserver.server import serve
from testbed.apiserver.store import MemoryStore

_prefixes = itertools.count(1)


@pytest.fixture(scope="session")
def etcd_endpoint():
    """The client URL of one real etcd-server for the whole session (loopback, temp dir)."""
    if shutil.which(etcd.server.ETCD) is None:
        pytest.skip("etcd-server is not installed (scripts/install installs it)")
    # tmpfs if there is one: etcd fsyncs every commit, and a shared disk can stall for seconds
    d = tempfile.mkdtemp(prefix="tbetcd-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    server = etcd.start(f"unit-{os.getpid()}", d)
    yield server.client_url
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["embedded", "etcd"])
def make_store(request):
    """Makes stores of the backend under test; every etcd store gets a key prefix of its
    own (like ``--etcd-prefix``) so tests sharing the session's etcd never see each other."""
    made = []

    def factory(**kwargs):
        if request.param == "embedded":
            s = MemoryStore(**kwargs)
        else:
            s = etcd.EtcdStore(request.getfixturevalue("etcd_endpoint"),
                               prefix=f"/t{next(_prefixes)}/registry", **kwargs)
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
