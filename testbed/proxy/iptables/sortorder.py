"""Reorder ``iptables-restore`` text the way upstream's tests do (``sortIPTablesRules``).

Upstream iterates services in Go map order, so its tests normalise before comparing:

- tables by name (``filter`` before ``nat``);
- chain declarations: ``KUBE-NODEPORTS``, ``KUBE-SERVICES``, other ``KUBE-*`` alphabetically,
  then non-``KUBE-*`` alphabetically;
- rules are printed chain by chain in that order, each chain's rules in their original order,
  except ``KUBE-NODEPORTS`` and ``KUBE-SERVICES`` whose rules are stably sorted by the service
  name in their comment (the text before the first space or colon), with nat
  ``KUBE-SERVICES``'s "must be the last rule" rule kept last;
- ``-X CHAIN`` lines come after all rules, in chain order.

Blank lines and ``#`` comments are dropped (as ``ParseIPTablesDump`` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DECLARE_CHAIN = re.compile(r"^:([^ ]*) - \[([0-9]*):([0-9]*)\]$")
_ADD_RULE = re.compile(r"^-A ([^ ]*) (.*)$")
_DELETE_CHAIN = re.compile(r"^-X (.*)$")
_WORD = re.compile(r'(?:^|\s)("[^"]*"|[^"]\S*)')


@dataclass
class Chain:
    name: str
    counters: str = "[0:0]"
    rules: list[str] = field(default_factory=list)
    deleted: bool = False


@dataclass
class Table:
    name: str
    chains: list[Chain] = field(default_factory=list)

    def chain(self, name: str) -> Chain | None:
        for c in self.chains:
            if c.name == name:
                return c
        return None


def parse_restore(text: str) -> list[Table]:
    """Parse restore input (or ``iptables-save`` output) like upstream's ``ParseIPTablesDump``."""
    tables: list[Table] = []
    state = "table"
    table: Table | None = None
    for raw in text.strip("\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        while True:
            if state == "table":
                if not line.startswith("*"):
                    raise ValueError(f"expected a table declaration, got {line!r}")
                table = Table(line[1:])
                tables.append(table)
                state = "chains"
            elif state == "chains":
                m = _DECLARE_CHAIN.match(line)
                if m is None:
                    state = "rules"
                    continue
                table.chains.append(Chain(m.group(1), f"[{m.group(2)}:{m.group(3)}]"))
            else:
                m = _ADD_RULE.match(line)
                if m is not None:
                    chain = table.chain(m.group(1))
                    if chain is None:
                        raise ValueError(f"rule for undeclared chain: {line!r}")
                    if chain.deleted:
                        raise ValueError(f"cannot add rules to deleted chain {chain.name!r}")
                    chain.rules.append(line)
                elif (m := _DELETE_CHAIN.match(line)) is not None:
                    chain = table.chain(m.group(1))
                    if chain is None:
                        raise ValueError(f"-X for undeclared chain: {line!r}")
                    if chain.rules:
                        raise ValueError(f"cannot delete chain {chain.name!r} after adding rules")
                    chain.deleted = True
                elif line == "COMMIT":
                    state = "table"
                else:
                    raise ValueError(f"cannot parse line {line!r}")
            break
    if state != "table":
        raise ValueError("no COMMIT line at the end")
    return tables


def format_restore(tables: list[Table]) -> str:
    out: list[str] = []
    for t in tables:
        out.append(f"*{t.name}\n")
        out.extend(f":{c.name} - {c.counters}\n" for c in t.chains)
        for c in t.chains:
            out.extend(r + "\n" for r in c.rules)
        out.extend(f"-X {c.name}\n" for c in t.chains if c.deleted)
        out.append("COMMIT\n")
    return "".join(out)


def rule_comment(rule: str) -> str | None:
    """The ``--comment`` value of a rule (quotes removed), or None."""
    words = [m.group(1).strip('"') for m in _WORD.finditer(rule)]
    comment = None
    i = 0
    while i < len(words):
        if words[i] == "-m" and i < len(words) - 1:
            i += 2
            continue
        if words[i] == "--comment" and i < len(words) - 1:
            comment = words[i + 1]
            i += 2
            continue
        i += 1
    return comment


def _service_name(rule: str) -> str:
    comment = rule_comment(rule)
    if comment is None:
        return ""
    cut = min((i for i in (comment.find(" "), comment.find(":")) if i != -1), default=-1)
    return comment[:cut] if cut != -1 else comment


def _chain_key(name: str) -> tuple[int, str]:
    if name == "KUBE-NODEPORTS":
        return (0, "")
    if name == "KUBE-SERVICES":
        return (1, "")
    return (2, name) if name.startswith("KUBE-") else (3, name)


def sort_restore_text(text: str) -> str:
    """Upstream ``sortIPTablesRules``."""
    tables = sorted(parse_restore(text), key=lambda t: t.name)
    for t in tables:
        t.chains.sort(key=lambda c: _chain_key(c.name))
        if t.name not in ("filter", "nat"):
            continue
        for c in t.chains:
            if c.name == "KUBE-NODEPORTS" or (c.name == "KUBE-SERVICES" and t.name == "filter"):
                c.rules.sort(key=_service_name)
            elif c.name == "KUBE-SERVICES":
                c.rules.sort(key=lambda r: (
                    "must be the last rule" in (rule_comment(r) or ""), _service_name(r)))
    return format_restore(tables)
