"""Field sets, managedFields and server-side apply (pure: no server)."""

import pytest

from testbed.apiserver import fieldmanager as fm

NOW = "2026-01-01T00:00:00Z"


def deploy(replicas=1, env=True, image="testbed/echo:v1", labels=None):
    c = {"name": "web", "image": image, "ports": [{"containerPort": 8080}]}
    if env:
        c["env"] = [{"name": "A", "value": "1"}]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default", **({"labels": labels} if labels else {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [c]}}}}


def test_field_set_in_upstreams_fields_v1_format():
    fs = fm.field_set("Deployment", deploy(labels={"tier": "x"}))
    v1 = fm.to_fields_v1(fs)
    assert v1["f:metadata"] == {"f:labels": {".": {}, "f:tier": {}}}  # a map carries "."; name is not owned
    assert v1["f:spec"]["f:replicas"] == {} and "." not in v1["f:spec"]  # a struct does not
    assert v1["f:spec"]["f:selector"] == {"f:matchLabels": {".": {}, "f:app": {}}}
    ctr = v1["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert ctr["."] == {} and ctr["f:name"] == {} and ctr["f:image"] == {}
    assert ctr["f:env"] == {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}}
    assert ctr["f:ports"] == {'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}
    assert fm.from_fields_v1(v1) == fs


def test_atomic_and_set_lists():
    pod = {"kind": "Pod", "metadata": {"name": "p", "finalizers": ["a", "b"]},
           "spec": {"containers": [{"name": "c", "command": ["sh", "-c", "x"]}]}}
    fs = fm.field_set("Pod", pod)
    assert ("f:metadata", "f:finalizers", 'v:"a"') in fs
    assert ("f:spec", "f:containers", 'k:{"name":"c"}', "f:command") in fs  # one field: the whole list


def test_path_string_is_upstreams():
    assert fm.path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert fm.path_string(("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', "f:image")) == \
        '.spec.template.spec.containers[name="web"].image'
    assert fm.path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}')) == '.spec.ports[port=80,protocol="TCP"]'


def entries(obj):
    return {(e["manager"], e["operation"]): fm.from_fields_v1(e["fieldsV1"]) for e in obj["metadata"]["managedFields"]}


def test_create_then_update_moves_changed_fields_only():
    obj = deploy()
    obj["metadata"]["managedFields"] = fm.update("Deployment", None, obj, "kubectl-client-side-apply", "apps/v1", NOW)
    assert entries(obj)[("kubectl-client-side-apply", "Update")] == fm.field_set("Deployment", deploy())
    new = deploy(replicas=3)
    new["metadata"]["managedFields"] = obj["metadata"]["managedFields"]
    new["metadata"]["managedFields"] = fm.update("Deployment", obj, new, "kubectl-edit", "apps/v1", NOW)
    e = entries(new)
    assert e[("kubectl-edit", "Update")] == {("f:spec", "f:replicas")}
    assert ("f:spec", "f:replicas") not in e[("kubectl-client-side-apply", "Update")]
    # a removed field leaves every owner
    gone = deploy(replicas=3, env=False)
    gone["metadata"]["managedFields"] = new["metadata"]["managedFields"]
    e = entries({"metadata": {"managedFields": fm.update("Deployment", new, gone, "x", "apps/v1", NOW)}})
    assert not any(p[-2:] == ('k:{"name":"A"}', ".") for p in e[("kubectl-client-side-apply", "Update")])


def test_apply_conflicts_with_an_update_owner_as_upstream_words_it():
    live = deploy()
    live["metadata"]["managedFields"] = fm.update("Deployment", None, live, "kubectl-client-side-apply", "apps/v1", NOW)
    with pytest.raises(fm.ApplyConflict) as exc:
        fm.apply("Deployment", live, deploy(replicas=2), "kubectl", "apps/v1", NOW)
    assert str(exc.value) == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
                              ".spec.replicas")
    assert exc.value.code == 409 and exc.value.details["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
         "field": ".spec.replicas"}]
    # the same values are shared, not a conflict
    same = fm.apply("Deployment", live, deploy(), "kubectl", "apps/v1", NOW)
    e = entries(same)
    assert ("f:spec", "f:replicas") in e[("kubectl", "Apply")] & e[("kubectl-client-side-apply", "Update")]


def test_two_conflicts_are_listed_by_manager():
    live = deploy()
    live["metadata"]["managedFields"] = fm.update("Deployment", None, live, "a", "apps/v1", NOW)
    with pytest.raises(fm.ApplyConflict) as exc:
        fm.apply("Deployment", live, deploy(replicas=2, image="x"), "kubectl", "apps/v1", NOW)
    assert str(exc.value) == ('Apply failed with 2 conflicts: conflicts with "a" using apps/v1:\n- .spec.replicas\n'
                              '- .spec.template.spec.containers[name="web"].image')


def test_force_takes_ownership():
    live = deploy()
    live["metadata"]["managedFields"] = fm.update("Deployment", None, live, "kubectl-client-side-apply", "apps/v1", NOW)
    out = fm.apply("Deployment", live, deploy(replicas=2), "kubectl", "apps/v1", NOW, force=True)
    assert out["spec"]["replicas"] == 2
    e = entries(out)
    assert ("f:spec", "f:replicas") in e[("kubectl", "Apply")]
    assert ("f:spec", "f:replicas") not in e[("kubectl-client-side-apply", "Update")]


def test_apply_creates_merges_and_removes_what_only_it_owned():
    obj = fm.apply("Deployment", None, deploy(labels={"a": "1"}), "kubectl", "apps/v1", NOW)
    assert entries(obj)[("kubectl", "Apply")] == fm.field_set("Deployment", deploy(labels={"a": "1"}))
    # another manager adds a label and an env var
    other = deploy(labels={"a": "1", "b": "2"})
    other["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "B", "value": "2"})
    other["metadata"]["managedFields"] = obj["metadata"]["managedFields"]
    other["metadata"]["managedFields"] = fm.update("Deployment", obj, other, "kubectl-edit", "apps/v1", NOW)
    # kubectl stops applying env and label a: its fields go, the editor's stay
    out = fm.apply("Deployment", other, deploy(env=False), "kubectl", "apps/v1", NOW)
    assert out["metadata"]["labels"] == {"b": "2"}
    assert out["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    assert out["spec"]["replicas"] == 1


def test_the_same_apply_again_is_a_no_op():
    obj = fm.apply("Deployment", None, deploy(), "kubectl", "apps/v1", NOW)
    assert fm.apply("Deployment", obj, deploy(), "kubectl", "apps/v1", "2027-01-01T00:00:00Z") == obj
    changed = fm.apply("Deployment", obj, deploy(replicas=2), "kubectl", "apps/v1", "2027-01-01T00:00:00Z")
    assert changed["metadata"]["managedFields"][0]["time"] == "2027-01-01T00:00:00Z"


def test_apply_keeps_a_shared_field():
    obj = fm.apply("Deployment", None, deploy(), "one", "apps/v1", NOW)
    both = fm.apply("Deployment", obj, deploy(), "two", "apps/v1", NOW)
    out = fm.apply("Deployment", both, deploy(env=False), "one", "apps/v1", NOW)
    assert out["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]  # two owns it


def test_status_write_records_status_only():
    old = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "n"}}
    new = dict(old, status={"phase": "Running"})
    mf = fm.update("Pod", old, new, "kubelet", "v1", NOW, status_subresource=True, subresource="status")
    assert mf == [{"apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}},
                   "manager": "kubelet", "operation": "Update", "subresource": "status", "time": NOW}]


def test_manager_from_user_agent():
    assert fm.manager_of(None, "kubectl/v1.37.1 (linux/amd64) kubernetes/abc") == "kubectl"
    assert fm.manager_of("kubectl-edit", "kubectl/v1.37.1") == "kubectl-edit"
    assert fm.manager_of(None, None) == ""
