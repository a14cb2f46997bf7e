"""Pure kubelet planning: which program a container runs, its environment, its network plan."""

import pytest

from testbed.kubelet import plan as kplan
from testbed.kubelet.plan import Program, container_env, image_repository, program_for


@pytest.mark.parametrize("image, repo", [
    ("registry.k8s.io/coredns/coredns:v1.11.1", "registry.k8s.io/coredns/coredns"),
    ("localhost:5000/echo:v2", "localhost:5000/echo"),
    ("testbed/echo", "testbed/echo"),
    ("busybox:1.36", "busybox"),
    ("nginx@sha256:abcd", "nginx"),
    (None, ""),
])
def test_image_repository_drops_tag_and_digest(image, repo):
    assert image_repository(image) == repo


def test_command_and_args_make_a_process():
    assert program_for({"image": "busybox", "command": ["sh", "-c"], "args": ["sleep 1"]}) == \
        Program("process", ("sh", "-c", "sleep 1"))
    assert program_for({"image": "busybox", "args": ["sleep", 5]}) == Program("process", ("sleep", "5"))


def test_no_command_runs_the_default_workload():
    assert program_for({"image": "testbed/echo:v2"}) == Program("echo")
    assert program_for({"image": "anything"}) == Program("echo")


def test_a_builtin_image_runs_its_workload_with_args_unless_command_replaces_it(monkeypatch):
    monkeypatch.setitem(kplan.BUILTIN_IMAGES, "registry.k8s.io/coredns/coredns", "dns")
    image = "registry.k8s.io/coredns/coredns:v1.11.1"
    assert program_for({"image": image, "args": ["-conf", "/etc/coredns/Corefile"]}) == \
        Program("dns", ("-conf", "/etc/coredns/Corefile"))
    assert program_for({"image": image}) == Program("dns")
    assert program_for({"image": image, "command": ["sh"]}) == Program("process", ("sh",))


def test_every_program_kind_has_a_launcher():
    from testbed.kubelet.workloads import launchers
    kinds = set(launchers(None))
    assert {kplan.PROCESS, kplan.DEFAULT_WORKLOAD} <= kinds
    assert set(kplan.BUILTIN_IMAGES.values()) <= kinds


def test_container_env_resolves_field_refs():
    pod = {"metadata": {"name": "web-1", "namespace": "prod", "uid": "u1"}, "spec": {"nodeName": "node2"}}
    ctr = {"env": [{"name": "A", "value": "x"}, {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                   {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, {"value": "no name"}]}
    env = container_env(pod, ctr, "10.244.1.2", "192.168.0.3")
    assert (env["A"], env["IP"], env["NODE"], env["HOSTNAME"]) == ("x", "10.244.1.2", "node2", "web-1")


@pytest.mark.parametrize("image, kind", [
    ("registry.k8s.io/echoserver:1.10", kplan.ECHOSERVER),
    ("registry.k8s.io/echoserver", kplan.ECHOSERVER),
    ("registry.k8s.io/ingress-nginx/controller:v1.12.0", kplan.INGRESS_NGINX),
    ("registry.k8s.io/ingress-nginx/controller:v1.12.0@sha256:abcd", kplan.INGRESS_NGINX),
])
def test_ingress_images_run_their_builtin_programs(image, kind):
    assert program_for({"image": image}).kind == kind


def test_the_ingress_controller_is_a_process_the_echoserver_is_not():
    from testbed.kubelet.status import Ctr
    assert Ctr({"image": "registry.k8s.io/ingress-nginx/controller:v1.12.0"}, 0, False).process
    assert not Ctr({"image": "registry.k8s.io/echoserver:1.10"}, 0, False).process
