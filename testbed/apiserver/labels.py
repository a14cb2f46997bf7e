"""Label and field selectors as strings (the ``labelSelector``/``fieldSelector`` query).

Label selector grammar (set-based, like ``kubectl -l``), requirements joined by ``,``:
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k``.
Field selectors: ``path=v``, ``path==v``, ``path!=v`` on a dotted path of the object
(``metadata.name``, ``spec.nodeName``, ``status.phase``...); a missing field is "".

:func:`label_predicate` / :func:`field_predicate` accept ``None``, a string, a callable or
(labels only) a ``{key: value}`` dict and return ``None`` or a predicate on the *object*.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from .errors import BadRequest

Predicate = Callable[[dict], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*(?:(in|notin)\s*\((.*)\))?\s*$")
_OP_RE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*(.*?)\s*$")


def _split(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (p.strip() for p in parts) if p]


class LabelSelector:
    """A parsed label selector; call it with a labels dict."""

    def __init__(self, text: str):
        self.text = text
        self.requirements: list[tuple[str, str, frozenset[str]]] = []
        for req in _split(text):
            m = _OP_RE.match(req)
            if m:
                key, op, val = m.group(1), m.group(3), m.group(4)
                if "(" in val or ")" in val or " " in val:
                    raise BadRequest(f"unable to parse requirement: {req!r}")
                self.requirements.append((key, "!=" if op == "!=" else "=", frozenset([val])))
                continue
            m = _SET_RE.match(req)
            if not m:
                raise BadRequest(f"unable to parse requirement: {req!r}")
            neg, key, op, values = m.group(1), m.group(2), m.group(4), m.group(5)
            if op:
                if neg:
                    raise BadRequest(f"unable to parse requirement: {req!r}")
                vals = frozenset(v.strip() for v in values.split(",") if v.strip())
                self.requirements.append((key, op, vals))
            else:
                self.requirements.append((key, "!exists" if neg else "exists", frozenset()))

    def __call__(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        for key, op, vals in self.requirements:
            present = key in labels
            if op == "=" or op == "in":
                if not present or labels[key] not in vals:
                    return False
            elif op == "!=" or op == "notin":
                if present and labels[key] in vals:
                    return False
            elif op == "exists":
                if not present:
                    return False
            elif op == "!exists":
                if present:
                    return False
        return True

    def __repr__(self) -> str:
        return f"LabelSelector({self.text!r})"


def _field(obj: Any, path: str) -> str:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return ""
        cur = cur[part]
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


class FieldSelector:
    """A parsed field selector; call it with a whole object."""

    def __init__(self, text: str):
        self.text = text
        self.requirements: list[tuple[str, bool, str]] = []
        for req in _split(text):
            m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", req)
            if not m:
                raise BadRequest(f"invalid field selector: {req!r}")
            self.requirements.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def __call__(self, obj: dict) -> bool:
        for path, eq, val in self.requirements:
            if (_field(obj, path) == val) != eq:
                return False
        return True

    def __repr__(self) -> str:
        return f"FieldSelector({self.text!r})"


def label_predicate(sel: Any) -> Predicate | None:
    """Predicate on an object from a label selector (None/str/dict/callable(labels))."""
    if sel is None or sel == "":
        return None
    if isinstance(sel, str):
        fn: Callable[[Mapping], bool] = LabelSelector(sel)
    elif isinstance(sel, Mapping):
        want = dict(sel)
        fn = lambda labels: all(labels.get(k) == v for k, v in want.items())  # noqa: E731
    elif callable(sel):
        fn = sel
    else:
        raise TypeError(f"unsupported label selector {sel!r}")
    return lambda obj: bool(fn((obj.get("metadata") or {}).get("labels") or {}))


def field_predicate(sel: Any) -> Predicate | None:
    """Predicate on an object from a field selector (None/str/callable(obj))."""
    if sel is None or sel == "":
        return None
    if isinstance(sel, str):
        return FieldSelector(sel)
    if callable(sel):
        return sel
    raise TypeError(f"unsupported field selector {sel!r}")


def combine(*preds: Predicate | None) -> Predicate | None:
    ps = [p for p in preds if p is not None]
    if not ps:
        return None
    if len(ps) == 1:
        return ps[0]
    return lambda obj: all(p(obj) for p in ps)
