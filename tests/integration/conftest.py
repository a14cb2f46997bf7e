import os

import pytest

from testbed import netns

from .netutil import SUFFIX, root_snapshot


@pytest.fixture(scope="session", autouse=True)
def root_namespace_is_left_alone():
    """Every integration run: the root namespace's links, addresses, routes and rulesets are the
    same after the run as before it, and no testbed namespace is left behind."""
    if os.geteuid() != 0:
        yield
        return
    before = root_snapshot()
    existing = set(netns.list_names("tb."))
    yield
    after = root_snapshot()
    changed = [k for k in before if before[k] != after[k]]
    # only clusters of this run (other runs of the suite may share the host)
    left = [n for n in netns.list_names("tb.") if n not in existing and n.split(".")[1].endswith(SUFFIX)]
    assert not changed, f"the root namespace changed during the tests: {changed}"
    assert not left, f"namespaces left behind: {left[:10]}"
