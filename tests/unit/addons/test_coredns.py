"""The coredns add-on: kubeadm's objects (golden file), valid as API objects, at the 10th
service address; spec.addons validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed import addons
from testbed.addons import coredns
from testbed.dns import corefile
from testbed.errors import ValidationError
from testbed.scenario import parse

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "addon-coredns.expected.yaml"


def scenario(**spec):
    return parse({"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "t"}, "spec": spec})


class _Literal(yaml.SafeDumper):
    pass


_Literal.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                              style="|" if "\n" in s else None))


def render(objs: list[dict]) -> str:
    return ("# The coredns add-on for the default service network 10.96.0.0/12 (kubeadm's objects).\n"
            + yaml.dump_all(objs, Dumper=_Literal, sort_keys=False, default_flow_style=False))


def test_objects_match_golden():
    assert render(addons.objects(["coredns"], scenario())) == GOLDEN.read_text()


def test_objects_pass_the_scenario_manifest_validation():
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "t"}, "spec": {"addons": []},
           "manifests": coredns.objects(scenario())}
    assert [o["kind"] for o in parse(doc).manifests] == ["ConfigMap", "Deployment", "Service"]


def test_kube_dns_is_the_tenth_service_address():
    svc = coredns.service(scenario(serviceNetwork="10.100.0.0/16").service_network)
    assert svc["spec"]["clusterIP"] == "10.100.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]


def test_corefile_is_kubeadms_and_forwards_to_the_pods_resolver(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 172.20.10.1\n")
    text = coredns.config_map()["data"]["Corefile"]
    assert text == corefile.KUBEADM_COREFILE
    [block] = corefile.parse(text, "Corefile", resolv_conf=str(resolv))
    assert block.forward.upstreams[0] == ("172.20.10.1", 53)


def test_addons_default_and_none():
    assert scenario().addons == ["coredns"]
    assert scenario(addons=[]).addons == []
    assert addons.objects([], scenario()) == []


@pytest.mark.parametrize("value, message", [
    (["nope"], "spec.addons[0]: unknown add-on 'nope'; allowed: coredns, ingress-nginx"),
    (["coredns", "coredns"], "spec.addons[1]: duplicate add-on 'coredns'"),
    ("coredns", "spec.addons: must be a list of add-on names; allowed: coredns, ingress-nginx"),
])
def test_bad_addons(value, message):
    with pytest.raises(ValidationError) as e:
        scenario(addons=value)
    assert message in [str(p) for p in e.value.problems]
