"""pytest plugin (registered by the package): fixtures for suites that use testbed.

    def test_overlay(testbed_cluster):
        c = testbed_cluster("scenarios/quickstart.yaml")      # or a dict, or a Scenario
        assert c.exec("pod/web-1", ["ping", "-c1", c.pod("web-2").ip]).returncode == 0

Every cluster made through the fixture is torn down after the test, also when it fails.
Tests that use it are skipped with a reason when not run as root.
"""

from __future__ import annotations

import itertools
import os

import pytest

_counter = itertools.count(1)


@pytest.fixture
def testbed_cluster(request):
    from .cluster import Cluster
    from .scenario import Scenario, load, parse

    if os.geteuid() != 0:
        pytest.skip("testbed_cluster needs root: it creates network namespaces")
    made: list[Cluster] = []

    def factory(scenario, name: str | None = None, **kwargs) -> Cluster:
        if name is None:
            name = f"pt{os.getpid() % 10000}-{next(_counter)}"
        if isinstance(scenario, dict):
            scenario = parse(scenario, name=name)
        elif isinstance(scenario, str):
            scenario = load(scenario, name=name)
        elif isinstance(scenario, Scenario):
            scenario.name = name
        c = Cluster.up(scenario, **kwargs)
        made.append(c)
        return c

    yield factory
    for c in reversed(made):
        c.down()
