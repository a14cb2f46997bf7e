import pytest

from testbed.apiserver.errors import BadRequest
from testbed.apiserver.labels import FieldSelector, LabelSelector, label_predicate


@pytest.mark.parametrize("sel,labels,ok", [
    ("", {}, True),
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app=web", {}, False),
    ("app!=web", {}, True),
    ("app!=web", {"app": "web"}, False),
    ("app=web,tier=fe", {"app": "web", "tier": "fe"}, True),
    ("app=web, tier=fe", {"app": "web"}, False),
    ("app in (web, db)", {"app": "db"}, True),
    ("app in (web,db)", {"app": "x"}, False),
    ("app notin (web,db)", {"app": "x"}, True),
    ("app notin (web,db)", {}, True),
    ("app", {"app": ""}, True),
    ("!app", {"app": ""}, False),
    ("!app", {"x": "y"}, True),
    ("kubernetes.io/service-name=web", {"kubernetes.io/service-name": "web"}, True),
    ("app in (a,b),tier", {"app": "a", "tier": "x"}, True),
])
def test_label_selector(sel, labels, ok):
    assert LabelSelector(sel)(labels) is ok


@pytest.mark.parametrize("bad", ["app=(x)", "app in x", "=x", "!app in (a)"])
def test_label_selector_errors(bad):
    with pytest.raises(BadRequest):
        LabelSelector(bad)


def test_field_selector():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert FieldSelector("spec.nodeName=n1,status.phase=Running")(pod)
    assert not FieldSelector("spec.nodeName!=n1")(pod)
    assert FieldSelector("spec.missing=")(pod)
    with pytest.raises(BadRequest):
        FieldSelector("spec.nodeName~n1")


def test_label_predicate_forms():
    obj = {"metadata": {"labels": {"a": "1"}}}
    assert label_predicate(None) is None
    assert label_predicate("a=1")(obj) and label_predicate({"a": "1"})(obj)
    assert not label_predicate(lambda labels: "b" in labels)(obj)
    assert label_predicate("!b")({"metadata": {}})
