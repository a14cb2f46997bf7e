import random

import pytest

from testbed.apiserver import MemoryStore
from testbed.k8s.admission import Admission

from ...conftest import stores_under_test

CONFIG = {"service_network": "10.96.0.0/12", "nodeport_range": "30000-32767", "pod_network": "10.244.0.0/16"}


def new_store(seed=7, **kw):
    """A MemoryStore with the real Admission (it admits Node and Event with metadata checks)."""
    return MemoryStore(admission=Admission(CONFIG, rng=random.Random(seed)), **kw)


def pytest_generate_tests(metafunc):
    if "store" in metafunc.fixturenames:
        metafunc.parametrize("store", stores_under_test(metafunc.config), indirect=True)


@pytest.fixture
def store(request):
    """The store the controllers run against: the embedded one, or on the session's etcd
    with a key prefix of the test's own."""
    if request.param == "etcd":
        from testbed.apiserver import etcd

        s = etcd.EtcdStore(request.getfixturevalue("etcd_endpoint"), prefix=request.getfixturevalue("etcd_prefix"),
                           admission=Admission(CONFIG, rng=random.Random(7)))
    else:
        s = new_store()
    yield s
    s.close()
