"""Label selectors, following ``k8s.io/apimachinery/pkg/labels``.

* :func:`parse` reads string selectors as ``kubectl -l`` does
  (``app=web,tier!=db,env in (a,b),!x``, also ``==``, ``notin``, bare ``key``, ``gt``/``lt``
  via ``>``/``<``);
* :func:`from_set` turns an equality map (a Service selector) into a selector;
* :func:`from_label_selector` turns a ``metav1.LabelSelector`` (``matchLabels`` +
  ``matchExpressions`` with In/NotIn/Exists/DoesNotExist) into one.  ``None`` selects
  nothing, ``{}`` selects everything (as upstream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .fields import is_label_value, is_qualified_name

IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GT, LT = "exists", "!", "gt", "lt"

_BINARY = ["in", "notin", "=", "==", "!=", "gt", "lt"]


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __post_init__(self):
        errs = [f"key: Invalid value: \"{self.key}\": {m}" for m in is_qualified_name(self.key)]
        op, vals = self.operator, self.values
        if op in (IN, NOT_IN):
            if not vals:
                errs.append("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty")
        elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(vals) != 1:
                errs.append("values: Invalid value: []: exact-match compatibility requires one single value")
        elif op in (EXISTS, DOES_NOT_EXIST):
            if vals:
                errs.append("values: Invalid value: []: values set must be empty for exists and does not exist")
        elif op in (GT, LT):
            if len(vals) != 1:
                errs.append("values: Invalid value: []: for 'Gt', 'Lt' operators, exactly one value is required")
            else:
                try:
                    int(vals[0])
                except ValueError:
                    errs.append(
                        f"values[0]: Invalid value: \"{vals[0]}\": for 'Gt', 'Lt' operators, the value must be an integer"
                    )
        else:
            errs.append(f'operator: Unsupported value: "{op}"')
        if op not in (GT, LT):
            for i, v in enumerate(vals):
                errs.extend(f'values[{i}][{self.key}]: Invalid value: "{v}": {m}' for m in is_label_value(v))
        if errs:
            raise SelectorError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
        # canonical: sorted unique values
        object.__setattr__(self, "values", tuple(sorted(set(vals))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        has = self.key in labels
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return has and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return (not has) or labels[self.key] not in self.values
        if op == EXISTS:
            return has
        if op == DOES_NOT_EXIST:
            return not has
        if op in (GT, LT):
            if not has:
                return False
            try:
                lv = int(labels[self.key])
                rv = int(self.values[0])
            except ValueError:
                return False
            return lv > rv if op == GT else lv < rv
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        if op == EXISTS:
            return self.key
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({','.join(self.values)})"
        sym = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", GT: ">", LT: "<"}[op]
        return f"{self.key}{sym}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; ``nothing=True`` selects no object at all."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        for r in self.requirements:
            if not r.matches(labels):
                return False
        return True

    def empty(self) -> bool:
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)


def _sorted(reqs: list[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(reqs, key=lambda r: r.key))


def from_set(labels: Mapping[str, str] | None) -> Selector:
    """``labels.SelectorFromSet``: equality on every key (empty map selects everything)."""
    if not labels:
        return EVERYTHING
    return Selector(_sorted([Requirement(k, EQUALS, (str(v),)) for k, v in labels.items()]))


def matches_set(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    """Fast path for equality-map selectors (Service ``spec.selector``)."""
    labels = labels or {}
    for k, v in selector.items():
        if labels.get(k) != v:
            return False
    return True


_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def from_label_selector(ls: Mapping | None) -> Selector:
    """``metav1.LabelSelectorAsSelector``."""
    if ls is None:
        return NOTHING
    match_labels = ls.get("matchLabels") or {}
    exprs = ls.get("matchExpressions") or []
    if not match_labels and not exprs:
        return EVERYTHING
    reqs = [Requirement(k, EQUALS, (str(v),)) for k, v in match_labels.items()]
    for e in exprs:
        op = _OPS.get(e.get("operator"))
        if op is None:
            raise SelectorError(f'"{e.get("operator")}" is not a valid label selector operator')
        reqs.append(Requirement(e.get("key", ""), op, tuple(e.get("values") or ())))
    return Selector(_sorted(reqs))


def to_label_selector(sel: Selector) -> dict:
    """Best-effort inverse of :func:`from_label_selector` (Gt/Lt are not representable)."""
    out: dict = {}
    back = {IN: "In", NOT_IN: "NotIn", EXISTS: "Exists", DOES_NOT_EXIST: "DoesNotExist"}
    for r in sel.requirements:
        if r.operator in (EQUALS, DOUBLE_EQUALS):
            out.setdefault("matchLabels", {})[r.key] = r.values[0]
        elif r.operator == NOT_EQUALS:
            out.setdefault("matchExpressions", []).append({"key": r.key, "operator": "NotIn", "values": list(r.values)})
        elif r.operator in back:
            e = {"key": r.key, "operator": back[r.operator]}
            if r.values:
                e["values"] = list(r.values)
            out.setdefault("matchExpressions", []).append(e)
        else:
            raise SelectorError(f"{r} cannot be expressed as a LabelSelector")
    return out


# --- string parser (labels.Parse) -------------------------------------------------

_SPECIAL = "=!(),><"
_ID, _END, _OPEN, _CLOSE, _COMMA, _NOT, _EQ, _DEQ, _NEQ, _GT, _LT, _IN, _NOTIN = range(13)


def _lex(s: str) -> list[tuple[int, str]]:
    toks: list[tuple[int, str]] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
            continue
        if c in _SPECIAL:
            two = s[i : i + 2]
            if two == "==":
                toks.append((_DEQ, two)); i += 2; continue
            if two == "!=":
                toks.append((_NEQ, two)); i += 2; continue
            tok = {"=": _EQ, "!": _NOT, "(": _OPEN, ")": _CLOSE, ",": _COMMA, ">": _GT, "<": _LT}[c]
            toks.append((tok, c)); i += 1
            continue
        j = i
        while j < n and not s[j].isspace() and s[j] not in _SPECIAL:
            j += 1
        word = s[i:j]
        toks.append((_IN if word == "in" else _NOTIN if word == "notin" else _ID, word))
        i = j
    toks.append((_END, ""))
    return toks


class _Parser:
    def __init__(self, s: str):
        self.toks = _lex(s)
        self.pos = 0

    def _values_mode(self, tok: tuple[int, str]) -> tuple[int, str]:
        # in "Values" context the keywords are plain identifiers
        t, lit = tok
        if t in (_IN, _NOTIN):
            return _ID, lit
        return tok

    def lookahead(self) -> tuple[int, str]:
        return self._values_mode(self.toks[self.pos])

    def consume(self, values: bool = True) -> tuple[int, str]:
        tok = self.toks[self.pos]
        if self.pos < len(self.toks) - 1:
            self.pos += 1
        return self._values_mode(tok) if values else tok

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            t, lit = self.lookahead()
            if t in (_ID, _NOT):
                try:
                    reqs.append(self.requirement())
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                t, lit = self.consume()
                if t == _END:
                    return reqs
                if t == _COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_ID, _NOT):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                    continue
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            if t == _END:
                return reqs
            raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        op = None
        t, lit = self.consume()
        if t == _NOT:
            op = DOES_NOT_EXIST
            t, lit = self.consume()
        if t != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        errs = is_qualified_name(key)
        if errs:
            raise SelectorError(f'key: Invalid value: "{key}": {errs[0]}')
        la, _ = self.lookahead()
        if la in (_END, _COMMA):
            return Requirement(key, op or EXISTS)
        if op == DOES_NOT_EXIST:
            # "!key" must be followed by ',' or the end
            _, l2 = self.lookahead()
            raise SelectorError(f"found '{l2}', expected: ',' or 'end of string'")
        t, lit = self.consume(values=False)
        ops = {_IN: IN, _NOTIN: NOT_IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _NEQ: NOT_EQUALS, _GT: GT, _LT: LT}
        if t not in ops:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY)}")
        op = ops[t]
        if op in (IN, NOT_IN):
            values = self.set_values()
        else:
            values = self.exact_value()
        return Requirement(key, op, tuple(values))

    def set_values(self) -> list[str]:
        t, lit = self.consume()
        if t != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        t, lit = self.lookahead()
        if t == _CLOSE:
            self.consume()
            return [""]
        if t not in (_ID, _COMMA):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values: list[str] = []
        last_was_comma = True
        while True:
            t, lit = self.lookahead()
            if t == _ID:
                if not last_was_comma:
                    raise SelectorError(f"found '{lit}', expected: ',' or ')'")
                self.consume()
                values.append(lit)
                last_was_comma = False
            elif t == _COMMA:
                self.consume()
                if last_was_comma:
                    values.append("")
                last_was_comma = True
            elif t == _CLOSE:
                if last_was_comma:
                    values.append("")
                self.consume()
                return values
            else:
                raise SelectorError(f"found '{lit}', expected: ',' or ')'")

    def exact_value(self) -> list[str]:
        t, _ = self.lookahead()
        if t in (_END, _COMMA):
            return [""]
        t, lit = self.consume()
        if t == _ID:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse(selector: str) -> Selector:
    """``labels.Parse``: a string selector as accepted by ``kubectl get -l``."""
    reqs = _Parser(selector).parse()
    return Selector(_sorted(reqs))


def matches(selector: "str | Mapping | Selector | None", labels: Mapping[str, str] | None) -> bool:
    """Match ``labels`` against a string selector, an equality map or a :class:`Selector`."""
    if isinstance(selector, Selector):
        return selector.matches(labels)
    if isinstance(selector, str):
        return parse(selector).matches(labels)
    if selector is None:
        return True
    if "matchLabels" in selector or "matchExpressions" in selector:
        return from_label_selector(selector).matches(labels)
    return matches_set(selector, labels)
