"""The ``ip kube-proxy`` table as plain data, and its text in ``nft -f`` line syntax.

A ``Fragment`` is a group of objects that is written and replaced together: the base objects
(table-wide chains, sets and maps) form one, every Service forms one. A ``Table`` is the base
fragment plus one fragment per Service. ``dump`` prints a table the way knftables' fake
``Dump()`` does (table, chains, sets, maps, rules, elements), which is also a valid ``nft -f``
input; ``sort_nft`` is upstream's test comparator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from testbed.proxy.nftables.names import TABLE


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[str, ...] = ()
    spec: str = ""          # "{ type nat hook output priority -100 ; }" / "{ comment ... ; }"


@dataclass(frozen=True)
class Container:
    """A set or a map; its elements are kept apart because they change on their own."""

    kind: str               # "set" | "map"
    name: str
    spec: str               # "{ type ipv4_addr ; comment \"...\" ; }"


@dataclass(frozen=True)
class Element:
    value: str = ""         # verdict of a map element ("goto service-..."), "" in a set
    comment: str = ""


ElementKey = tuple[str, str]          # (container name, key text "1.2.3.4 . tcp . 80")


@dataclass
class Fragment:
    chains: dict[str, Chain] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)
    elements: dict[ElementKey, Element] = field(default_factory=dict)


@dataclass
class Table:
    family: str
    comment: str
    base: Fragment
    services: dict[tuple[str, str], Fragment] = field(default_factory=dict)

    def fragments(self) -> Iterable[Fragment]:
        yield self.base
        yield from self.services.values()


def prefix(family: str) -> str:
    return f"{family} {TABLE}"


def table_line(family: str, comment: str) -> str:
    return f'add table {prefix(family)} {{ comment "{comment}" ; }}'


def chain_line(family: str, chain: Chain) -> str:
    head = f"add chain {prefix(family)} {chain.name}"
    return f"{head} {chain.spec}" if chain.spec else head


def container_line(family: str, c: Container) -> str:
    return f"add {c.kind} {prefix(family)} {c.name} {c.spec}"


def rule_lines(family: str, chain: Chain) -> list[str]:
    head = f"add rule {prefix(family)} {chain.name} "
    return [head + r for r in chain.rules]


def element_line(family: str, key: ElementKey, elem: Element, verb: str = "add") -> str:
    body = key[1]
    if verb == "add":
        if elem.comment:
            body += f' comment "{elem.comment}"'
        if elem.value:
            body += f" : {elem.value}"
    return f"{verb} element {prefix(family)} {key[0]} {{ {body} }}"


def dump(table: Table, extra_chains: Iterable[str] = ()) -> str:
    """The whole table in Fake.Dump() order; ``extra_chains`` are empty (flushed, stale) chains."""
    fam = table.family
    chains, containers, rules, elements = [], [], [], []
    for frag in table.fragments():
        for ch in frag.chains.values():
            chains.append(chain_line(fam, ch))
            rules.extend(rule_lines(fam, ch))
        containers.extend(frag.containers.values())
        elements.extend(element_line(fam, k, e) for k, e in frag.elements.items())
    chains.extend(f"add chain {prefix(fam)} {name}" for name in extra_chains)
    sets = [container_line(fam, c) for c in containers if c.kind == "set"]
    maps = [container_line(fam, c) for c in containers if c.kind == "map"]
    lines = [table_line(fam, table.comment), *chains, *sets, *maps, *rules, *elements]
    return "\n".join(lines) + "\n"


_ORDER = {"table": 0, "chain": 1, "rule": 2, "set": 3, "map": 4, "element": 5}


def sort_nft(text: str) -> list[str]:
    """Upstream's ``sortNFTablesTransaction``: order-free except rules within one chain.

    Comment and empty lines are dropped; lines sort by object type, then object name, then
    (except rules, whose relative order is kept by the stable sort) the whole line.
    """
    lines = [ln for ln in text.split("\n") if ln and not ln.startswith("#")]

    def key(line: str) -> tuple:
        words = line.split(" ")
        kind = words[1] if len(words) > 1 else ""
        name = words[4] if len(words) > 4 else ""
        return (_ORDER.get(kind, 9), name, "" if kind == "rule" else line)
    return sorted(lines, key=key)

