"""The pytest fixture users get from the package: a cluster per call, always torn down."""

from __future__ import annotations

import pytest

from testbed import netns

pytestmark = pytest.mark.root

made: list[str] = []


def test_fixture_brings_a_scenario_up(testbed_cluster):
    c = testbed_cluster({"apiVersion": "testbed/v1", "kind": "Scenario",
                         "spec": {"nodes": 1, "externals": 0, "proxyMode": "none"},
                         "manifests": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
                                        "spec": {"containers": [{"name": "c", "image": "x"}]}}]})
    made.append(c.name)
    assert c.exec("pod/a", ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout.split()[3] == f"{c.pod('a').ip}/24"
    assert netns.list_names(f"tb.{c.name}.")


def test_fixture_tore_the_previous_cluster_down():
    assert made and not netns.list_names(f"tb.{made[0]}.")
