"""Scenario content that is bad input: one clear line per problem, all reported together."""

from __future__ import annotations

import pytest
import yaml

from testbed.errors import ValidationError
from testbed.scenario import check_manifests, load, parse

from .test_cli import run


def base(manifests: list) -> dict:
    return {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": "t"}, "spec": {},
            "manifests": manifests}


def problems(call) -> list[str]:
    with pytest.raises(ValidationError) as e:
        call()
    return [str(p) for p in e.value.problems]


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
       "spec": {"containers": [{"name": "c", "image": "testbed/echo"}]}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}


def test_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "s.yaml").write_text("# nothing yet\n")
    assert problems(lambda: load(str(tmp_path / "s.yaml"))) == [
        "the file is empty; a scenario starts with apiVersion: testbed/v1 and kind: Scenario"]


def test_directory_is_one_clear_line(tmp_path):
    assert problems(lambda: load(str(tmp_path))) == ["is a directory, not a file"]


def test_manifest_file_that_is_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    doc = base([{"file": "d"}])
    assert problems(lambda: parse(doc, base_dir=str(tmp_path))) == [
        "manifests[0].file: 'd' is a directory, not a file"]


def test_duplicates_name_both_places(tmp_path):
    (tmp_path / "more.yaml").write_text("---\n" + yaml.safe_dump(SVC) + "---\n"
                                        + yaml.safe_dump(POD))
    doc = base([SVC, dict(POD, metadata={"name": "web", "namespace": "default"}), {"file": "more.yaml"}])
    assert problems(lambda: parse(doc, base_dir=str(tmp_path))) == [
        "manifests[2] (more.yaml document 1): service default/web: defined twice; first at manifests[0]",
        "manifests[2] (more.yaml document 2): pod default/web: defined twice; first at manifests[1]",
    ]


def test_same_name_in_other_namespace_or_kind_is_no_duplicate():
    other_ns = dict(SVC, metadata={"name": "web", "namespace": "other"})
    parse(base([SVC, other_ns, POD]))


def test_cluster_scoped_duplicates_ignore_namespace():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    assert problems(lambda: parse(base([ns, dict(ns, metadata={"name": "x", "namespace": "y"})]))) == [
        "manifests[1]: namespace x: defined twice; first at manifests[0]"]


def test_types_and_unknown_fields_with_the_api_servers_words():
    bad_type = dict(POD, spec={"containers": "x"})
    unknown = dict(SVC, spec=dict(SVC["spec"], foo=1))
    assert problems(lambda: parse(base([bad_type, unknown]))) == [
        'manifests[0].spec.containers: Invalid value: "string": spec.containers in body must be of type array',
        'manifests[1]: Service in version "v1" cannot be handled as a Service: strict decoding error: '
        'unknown field "spec.foo"',
    ]


def test_unknown_kind():
    cm = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"}}
    assert problems(lambda: parse(base([cm]))) == [
        'manifests[0]: no matches for kind "StatefulSet" in version "apps/v1"; supported: v1 Namespace, v1 Pod, '
        "v1 Service, v1 Endpoints, discovery.k8s.io/v1 EndpointSlice, apps/v1 Deployment, apps/v1 ReplicaSet, "
        "networking.k8s.io/v1 Ingress, networking.k8s.io/v1 IngressClass, v1 Secret, v1 Node, v1 Event, v1 ConfigMap"]


def test_check_manifests_reports_every_api_refusal_with_its_place():
    low_port = dict(SVC, spec=dict(SVC["spec"], type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    no_image = dict(POD, metadata={"name": "web2"}, spec={"containers": [{"name": "c"}]})
    s = parse(base([low_port, POD, no_image]))
    assert problems(lambda: check_manifests(s)) == [
        'manifests[0]: Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is '
        "not in the valid range. The range of valid ports is 30000-32767",
        'manifests[2]: Pod "web2" is invalid: spec.containers[0].image: Required value',
    ]


def test_check_manifests_sees_conflicts_between_objects():
    a = dict(SVC, spec=dict(SVC["spec"], clusterIP="10.96.0.50"))
    b = dict(a, metadata={"name": "other"})
    s = parse(base([a, b]))
    msgs = problems(lambda: check_manifests(s))
    assert len(msgs) == 1 and msgs[0].startswith('manifests[1]: Service "other" is invalid: spec.clusterIPs: ')


def test_up_exits_2_for_what_the_api_refuses_before_building_anything(tmp_path):
    doc = base([dict(POD, spec={"containers": [{"name": "c"}]})])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    res = run("up", str(tmp_path / "s.yaml"), euid=0, state_root=str(tmp_path / "state"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: {tmp_path / 's.yaml'}: manifests[0]: Pod \"web\" is invalid: spec.containers[0].image: Required value"]
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("apiVersion: testbed/v1\nkind: Scenario\nmanifests: [{apiVersion: v1, kind: Pod, metadata: {name: p}, "
     "spec: {containers: x}}]\n", "spec.containers in body must be of type array"),
])
def test_up_exits_2_for_bad_scenario_content(tmp_path, text, message):
    (tmp_path / "s.yaml").write_text(text)
    res = run("up", str(tmp_path / "s.yaml"), euid=0, state_root=str(tmp_path / "state"))
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_malformed_objects_are_problems_not_crashes():
    msgs = problems(lambda: parse(base([dict(POD, metadata="web"), dict(POD, spec="x"),
                                        dict(SVC, apiVersion=["v1"])])))
    assert msgs == [
        'manifests[0].metadata: Invalid value: "string": metadata in body must be of type object',
        'manifests[1].spec: Invalid value: "string": spec in body must be of type object',
        "manifests[2]: no matches for kind \"Service\" in version \"['v1']\"; supported: v1 Namespace, v1 Pod, "
        "v1 Service, v1 Endpoints, discovery.k8s.io/v1 EndpointSlice, apps/v1 Deployment, apps/v1 ReplicaSet, "
        "networking.k8s.io/v1 Ingress, networking.k8s.io/v1 IngressClass, v1 Secret, v1 Node, v1 Event, v1 ConfigMap",
    ]


def test_one_problem_is_one_line(tmp_path):
    (tmp_path / "s.yaml").write_text("apiVersion: testbed/v1\nkind: Scenario\nspec: {backend: udp}\n")
    res = run("up", str(tmp_path / "s.yaml"), euid=0, state_root=str(tmp_path / "state"))
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: {tmp_path / 's.yaml'}: spec.backend: unsupported value 'udp'; allowed: vxlan, host-gw"]


def test_yaml_syntax_error_is_one_line_with_its_place(tmp_path):
    (tmp_path / "s.yaml").write_text("apiVersion: testbed/v1\nspec: {nodes: [1\n")
    (tmp_path / "m.yaml").write_text("kind: [\n")
    assert problems(lambda: load(str(tmp_path / "s.yaml"))) == [
        "not valid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"]
    assert problems(lambda: parse(base(["m.yaml"]), base_dir=str(tmp_path))) == [
        "manifests[0].file: 'm.yaml' is not valid YAML at line 2, column 1: expected the node content, "
        "but found '<stream end>' (while parsing a flow node)"]
