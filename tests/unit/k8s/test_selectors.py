import pytest

from testbed.k8s import selectors as sel
from testbed.k8s.selectors import SelectorError

L = {"app": "web", "tier": "fe", "env": "a", "n": "5"}


@pytest.mark.parametrize("expr,expected", [
    ("app=web", True), ("app==web", True), ("app!=web", False), ("tier!=db", True), ("missing!=x", True),
    ("env in (a,b)", True), ("env in (b)", False), ("env notin (a)", False), ("missing notin (a)", True),
    ("app", True), ("!app", False), ("!x", True), ("app=web,tier!=db,env in (a,b),!x", True),
    ("n>3", True), ("n<3", False), ("app=", False), ("", True),
])
def test_parse_and_match(expr, expected):
    assert sel.parse(expr).matches(L) is expected


def test_canonical_string_sorted_by_key():
    assert str(sel.parse("tier!=db, app=web ,env in (b,a),!x")) == "app=web,env in (a,b),tier!=db,!x"


@pytest.mark.parametrize("expr,msg", [
    ("app=web,", "found '', expected: identifier after ','"),
    ("env in a", "unable to parse requirement: found 'a' expected: '('"),
    ("app ~ web", "found '~', expected: in, notin, =, ==, !=, gt, lt"),
    ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("=x", "found '=', expected: !, identifier, or 'end of string'"),
])
def test_parse_errors(expr, msg):
    with pytest.raises(SelectorError) as e:
        sel.parse(expr)
    assert msg in str(e.value)


def test_invalid_key_and_value():
    with pytest.raises(SelectorError, match="name part must consist of"):
        sel.parse("bad_key_=x")
    with pytest.raises(SelectorError, match="a valid label must be an empty string"):
        sel.parse("a=-x")


def test_label_selector_match_expressions():
    s = sel.from_label_selector({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["a", "b"]},
        {"key": "tier", "operator": "NotIn", "values": ["db"]},
        {"key": "app", "operator": "Exists"},
        {"key": "canary", "operator": "DoesNotExist"}]})
    assert s.matches(L)
    assert not s.matches(dict(L, canary="1"))
    assert str(s) == "app=web,app,!canary,env in (a,b),tier notin (db)"


def test_nil_and_empty_label_selectors():
    assert not sel.from_label_selector(None).matches(L)
    assert sel.from_label_selector({}).matches(L)
    with pytest.raises(SelectorError, match='"Near" is not a valid label selector operator'):
        sel.from_label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})


def test_equality_map_and_helpers():
    assert sel.matches({"app": "web"}, L) and not sel.matches({"app": "db"}, L)
    assert sel.matches("env in (a)", L)
    assert sel.from_set({"app": "web", "env": "a"}).matches(L)
    assert sel.to_label_selector(sel.parse("app=web,env in (a,b)")) == {
        "matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}
