import itertools
import os
import shutil
import tempfile

import pytest

STORES = ("embedded", "etcd")
_prefixes = itertools.count(1)


def pytest_addoption(parser):
    parser.addoption("--store", choices=STORES, default=None,
                     help="the API store of every cluster and store the tests build (default: each "
                          "cluster its scenario's spec.store; the store tests run on both)")


def pytest_configure(config):
    store = config.getoption("--store")
    if store:
        # Cluster.up and `testbed up` in subprocesses read it; the store fixtures too
        os.environ["TESTBED_STORE"] = store


def stores_under_test(config) -> list[str]:
    """The stores a store-parametrized test runs on: ``--store``'s, else both."""
    chosen = config.getoption("--store")
    return [chosen] if chosen else list(STORES)


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces (run scripts/test as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def etcd_endpoint():
    """The client URL of one real etcd-server for the whole session (loopback, temp dir)."""
    from testbed.apiserver import etcd

    if shutil.which(etcd.server.ETCD) is None:
        pytest.fail("etcd-server is not installed (scripts/install installs it)")
    # tmpfs if there is one: etcd fsyncs every commit, and a shared disk can stall for seconds
    d = tempfile.mkdtemp(prefix="tbetcd-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    server = etcd.start(f"unit-{os.getpid()}", d)
    yield server.client_url
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def etcd_prefix():
    """A key prefix of the test's own (like ``--etcd-prefix``), so tests sharing the
    session's etcd never see each other's objects."""
    return f"/t{next(_prefixes)}/registry"
