"""The pure parts of applying iptables-mode rules (no I/O, unit-tested without root).

- ``restore_error_line`` / ``extract_lines``: find and show the input line ``iptables-restore``
  rejected (upstream ``utiliptables.ParseError`` + ``ExtractLines``);
- ``parse_save``: chains and rules per table from ``iptables-save`` text (the chain names of
  the nat table rebuild the renderer's partial-sync state after a restart, as upstream's
  per-sync ``iptables-save -t nat`` does);
- ``JUMP_RULES`` / ``missing_jump_rules`` / ``add_host_rules``: upstream's
  ``iptablesJumpChains`` + ``iptablesKubeletJumpChains`` (``EnsureChain`` + ``EnsureRule(Prepend)``
  on full syncs) and the ``KUBE-PROXY-CANARY`` chains, folded into the one restore of a full sync;
  ``after_full_sync``: what the kernel then holds besides kube-proxy's chains;
- ``replay_restore`` / ``compare_rules``: what the restores of a sync journal leave in the
  kernel, and how the kernel differs from it (``testbed rules --check``);
- ``chain_blocks`` / ``drop_unchanged_chains`` / ``split_restore`` / ``replace_tables_text``:
  the restore input shaped for speed, leaving the kernel as the plain ``--noflush`` input would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple

from testbed.proxy.iptables.names import EXT_PREFIX, FW_PREFIX, SEP_PREFIX, SVC_PREFIX, SVL_PREFIX

# --------------------------------------------------------------------------- restore errors

# "iptables-restore: line 7 failed: ..." (commit errors; upstream's regexp "line ([1-9]+) failed")
# "iptables-restore v1.8.9 (nf_tables): ...\nError occurred at line: 4" (parse errors)
_LINE_RES = (re.compile(r"line (\d+) failed"), re.compile(r"Error occurred at line: (\d+)"),
             re.compile(r"\bline (\d+)\b"))


def restore_error_line(stderr: str) -> int | None:
    """The 1-based input line ``iptables-restore`` complained about, or None."""
    for rx in _LINE_RES:
        m = rx.search(stderr or "")
        if m and int(m.group(1)) > 0:
            return int(m.group(1))
    return None


def extract_lines(text: str, line: int, context: int = 3) -> str:
    """Upstream ``ExtractLines``: the offending line (marked ``=>``) with ``context`` lines
    either side, each prefixed with its number."""
    lines = text.split("\n")
    lo, hi = max(1, line - context), min(len(lines), line + context)
    out = []
    for n in range(lo, hi + 1):
        mark = "=> " if n == line else "   "
        out.append(f"{mark}{n}: {lines[n - 1]}")
    return "\n".join(out)


def line_at(text: str, line: int) -> str | None:
    lines = text.split("\n")
    return lines[line - 1] if 1 <= line <= len(lines) else None


# --------------------------------------------------------------------------- iptables-save

@dataclass
class SavedTables:
    """``iptables-save`` text split up: table -> chains (with policy) and table -> rule lines."""

    chains: dict[str, dict[str, str]]
    rules: dict[str, list[str]]

    def chain_names(self, table: str) -> set[str]:
        return set(self.chains.get(table, {}))

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.chains.get(table, {})


def parse_save(text: str) -> SavedTables:
    chains: dict[str, dict[str, str]] = {}
    rules: dict[str, list[str]] = {}
    table = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            chains.setdefault(table, {})
            rules.setdefault(table, [])
        elif table is None:
            continue
        elif line == "COMMIT":
            table = None
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            chains[table][name] = rest.split(" ")[0] if rest else "-"
        elif line.startswith("-A "):
            rules[table].append(line)
    return SavedTables(chains, rules)


def nat_chains_from_save(text: str) -> set[str]:
    """Every chain of the nat table in ``iptables-save [-t nat]`` output."""
    return parse_save(text).chain_names("nat")


# --------------------------------------------------------------------------- jump rules

class JumpRule(NamedTuple):
    table: str
    src: str      # built-in chain
    dst: str      # kube-proxy chain
    comment: str
    extra: str    # match arguments before the comment

    def args(self) -> str:
        parts = [self.extra] if self.extra else []
        if self.comment:
            parts.append(f'-m comment --comment "{self.comment}"')
        parts.append(f"-j {self.dst}")
        return " ".join(parts)

    def saved_form(self) -> str:
        """The rule as ``iptables-save`` prints it (no address matches, so argument order is kept)."""
        return f"-A {self.src} {self.args()}"

    def insert_line(self) -> str:
        return f"-I {self.src} {self.args()}"


_NEW = "-m conntrack --ctstate NEW"
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "INPUT", "KUBE-NODEPORTS", "kubernetes health check service ports", ""),
    JumpRule("filter", "FORWARD", "KUBE-SERVICES", "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules", ""),
    JumpRule("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", ""),
    JumpRule("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals", ""),
    JumpRule("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules", ""),
    # iptablesKubeletJumpChains (kubelet's chain; created, never deleted by kube-proxy)
    JumpRule("filter", "INPUT", "KUBE-FIREWALL", "", ""),
    JumpRule("filter", "OUTPUT", "KUBE-FIREWALL", "", ""),
)
CANARY_CHAIN = "KUBE-PROXY-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")


def missing_jump_rules(saved: SavedTables) -> list[JumpRule]:
    """The jump rules ``EnsureRule`` would insert (those not in the saved rules, exact text)."""
    out = []
    for j in JUMP_RULES:
        if j.saved_form() not in saved.rules.get(j.table, ()):
            out.append(j)
    return out


def _declared(section: str, chain: str) -> bool:
    return f"\n:{chain} " in "\n" + section


def host_extras(table: str, declares: Callable[[str], bool], missing: Iterable[JumpRule],
                saved: SavedTables) -> list[str]:
    """The lines upstream's full-sync ``EnsureChain``/``EnsureRule(Prepend)`` calls add to one
    table: a declaration for any jump target the input does not declare (``declares``) and that
    does not exist yet, the empty ``KUBE-PROXY-CANARY`` chain if missing, then the ``-I`` lines
    (in ``JUMP_RULES`` order, so each lands at position 1 exactly as the upstream calls do)."""
    missing = [j for j in missing if j.table == table]
    extra: list[str] = []
    for j in missing:
        line = f":{j.dst} - [0:0]\n"
        if not declares(j.dst) and not saved.has_chain(table, j.dst) and line not in extra:
            extra.append(line)
    if not saved.has_chain(table, CANARY_CHAIN):
        extra.append(f":{CANARY_CHAIN} - [0:0]\n")
    return extra + [j.insert_line() + "\n" for j in missing]


def mangle_canary(saved: SavedTables) -> str:
    """A ``*mangle`` section creating the mangle canary, if it is missing."""
    return "" if saved.has_chain("mangle", CANARY_CHAIN) else f"*mangle\n:{CANARY_CHAIN} - [0:0]\nCOMMIT\n"


def add_host_rules(text: str, missing: Iterable[JumpRule], saved: SavedTables) -> str:
    """Fold ``host_extras`` into a filter + nat (or filter only) restore input, before each
    table's ``COMMIT`` (a ``*mangle`` section first if the mangle canary is missing)."""
    missing = list(missing)
    filt_end = text.index("COMMIT\n") + len("COMMIT\n")
    sections = {"filter": text[:filt_end], "nat": text[filt_end:]}
    for table in ("filter", "nat"):
        sec = sections[table]
        if not sec:   # a filter table alone (a streamed full sync writes nat itself)
            continue
        body = sec[: sec.rindex("COMMIT\n")]
        extra = host_extras(table, lambda chain, body=body: _declared(body, chain), missing, saved)
        sections[table] = body + "".join(extra) + "COMMIT\n"
    return mangle_canary(saved) + sections["filter"] + sections["nat"]


def after_full_sync(saved: SavedTables, missing: Iterable[JumpRule],
                    ours: Callable[[str, str], bool]) -> SavedTables:
    """What the kernel holds outside kube-proxy's own chains once a full sync of ``saved``
    (its ``iptables-save``) with ``missing`` jump rules succeeded: ``saved`` without the chains
    ``ours(table, chain)`` names, plus the canary chains and the jump rules (each ``-I`` at the
    top of its built-in chain, in ``JUMP_RULES`` order) and their targets the sync created.
    A later full sync can carry this over instead of reading the kernel again."""
    chains = {t: {c: p for c, p in cs.items() if not ours(t, c)} for t, cs in saved.chains.items()}
    rules = {t: [r for r in rs if not ours(t, r[3:].split(" ", 1)[0])] for t, rs in saved.rules.items()}
    for table in CANARY_TABLES:
        chains.setdefault(table, {}).setdefault(CANARY_CHAIN, "-")
        rules.setdefault(table, [])
    for j in missing:
        if not ours(j.table, j.dst):
            chains[j.table].setdefault(j.dst, "-")
        table_rules = rules[j.table]
        prefix = f"-A {j.src} "
        at = next((i for i, r in enumerate(table_rules) if r.startswith(prefix)), len(table_rules))
        table_rules.insert(at, j.saved_form())
    return SavedTables(chains, rules)


# --------------------------------------------------------------------------- intended rules

# Chains of the node that kube-proxy writes but does not own the contents of, or that only
# exist as markers; ``rules --check`` ignores them.
IGNORED_CHAINS = frozenset({CANARY_CHAIN, "KUBE-KUBELET-CANARY"})


@dataclass
class RuleModel:
    """What a sequence of ``iptables-restore --noflush`` inputs leaves in the kernel, for the
    chains they name: table -> chain -> rule lines (``-A CHAIN ...``), in order."""

    tables: dict[str, dict[str, list[str]]]
    policies: dict[tuple[str, str], str] = field(default_factory=dict)   # built-in chains

    def chains(self, table: str) -> dict[str, list[str]]:
        return self.tables.get(table, {})


def replay_restore(texts: Iterable[str], model: RuleModel | None = None) -> RuleModel:
    """Apply restore inputs to a model: a chain declaration flushes the chain (``--noflush``
    semantics), ``-A`` appends, ``-X`` deletes; rules put into built-in chains (``-I``/``-A``
    of the jump rules) are not tracked (``JUMP_RULES`` are checked separately)."""
    m = model if model is not None else RuleModel({})
    for text in texts:
        chains: dict[str, list[str]] | None = None
        table_name = ""
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            c = line[0]
            if c == "*":
                table_name = line[1:].strip()
                chains = m.tables.setdefault(table_name, {})
            elif chains is None or line == "COMMIT":
                chains = None if line == "COMMIT" else chains
            elif c == ":":
                parts = line[1:].split(" ")
                chains[parts[0]] = []
                if len(parts) > 1 and parts[1] != "-":
                    m.policies[(table_name, parts[0])] = parts[1]
            elif line.startswith("-A "):
                name = line[3:].split(" ", 1)[0]
                rules = chains.get(name)
                if rules is not None:
                    rules.append(line)
            elif line.startswith("-X "):
                chains.pop(line[3:].strip(), None)
    return m


def model_text(model: RuleModel, tables: Iterable[str] = ("filter", "nat"), kube_only: bool = False) -> str:
    """The model as one restore input (declarations, then rules), e.g. to compact a journal;
    ``kube_only``: just the ``KUBE-*`` chains kube-proxy owns (for ``rules --check``)."""
    out = []
    for table in tables:
        chains = kube_chains(model, table) if kube_only else model.chains(table)
        if not chains:
            continue
        out.append(f"*{table}\n")
        out += [f":{c} {model.policies.get((table, c), '-')} [0:0]\n" for c in chains]
        for rules in chains.values():
            out += [r + "\n" for r in rules]
        out.append("COMMIT\n")
    return "".join(out)


def kube_chains(saved: SavedTables | RuleModel, table: str) -> dict[str, list[str]]:
    """``KUBE-*`` chains of a table with their rules (``SavedTables``: rules grouped by chain)."""
    if isinstance(saved, RuleModel):
        return {c: list(r) for c, r in saved.chains(table).items()
                if c.startswith("KUBE-") and c not in IGNORED_CHAINS}
    out: dict[str, list[str]] = {c: [] for c in saved.chains.get(table, {})
                                 if c.startswith("KUBE-") and c not in IGNORED_CHAINS}
    for line in saved.rules.get(table, []):
        name = line[3:].split(" ", 1)[0]
        if name in out:
            out[name].append(line)
    return out


@dataclass
class RuleDiff:
    table: str
    chain: str
    problem: str              # "missing chain", "unexpected chain", "rules differ", "missing jump"
    missing: list[str]        # intended rules the kernel lacks (or a chain's rules)
    unexpected: list[str]     # kernel rules not intended

    def describe(self) -> str:
        head = f"{self.table} {self.chain}: {self.problem}"
        lines = [f"  - {r}" for r in self.missing[:10]] + [f"  + {r}" for r in self.unexpected[:10]]
        more = len(self.missing) + len(self.unexpected) - len(lines)
        if more > 0:
            lines.append(f"  ... {more} more")
        return "\n".join([head, *lines])


def compare_rules(intended: SavedTables, kernel: SavedTables, tables: Iterable[str] = ("filter", "nat"),
                  jumps: Iterable[JumpRule] = JUMP_RULES) -> list[RuleDiff]:
    """Differences between the intended ``KUBE-*`` chains and the kernel's, both in
    ``iptables-save`` form (the intended rules normalised by a kernel round trip), plus the
    mode's jump rules from the built-in chains (``jumps``; upstream's iptables mode's by
    default) that the kernel lacks."""
    jumps = tuple(jumps)
    diffs: list[RuleDiff] = []
    for table in tables:
        want, have = kube_chains(intended, table), kube_chains(kernel, table)
        for chain in sorted(set(want) | set(have)):
            if chain not in have:
                diffs.append(RuleDiff(table, chain, "missing chain", want[chain], []))
            elif chain not in want:
                diffs.append(RuleDiff(table, chain, "unexpected chain", [], have[chain]))
            elif want[chain] != have[chain]:
                w, h = want[chain], have[chain]
                hs, ws = set(h), set(w)
                diffs.append(RuleDiff(table, chain, "rules differ" if hs != ws else "rule order differs",
                                      [r for r in w if r not in hs], [r for r in h if r not in ws]))
        rules = set(kernel.rules.get(table, ()))
        for j in jumps:
            if j.table == table and j.saved_form() not in rules and j.dst in want:
                diffs.append(RuleDiff(table, j.src, "missing jump", [j.saved_form()], []))
    return diffs


# --------------------------------------------------------------------------- restore shaping

def _sections(text: str) -> list[tuple[str, list[str], list[str]]]:
    """``(table, declaration lines, other lines)`` per table section of a restore input."""
    out: list[tuple[str, list[str], list[str]]] = []
    cur = None
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        if line[0] == "*":
            cur = (line[1:].strip(), [], [])
            out.append(cur)
        elif cur is None or line == "COMMIT":
            cur = None if line == "COMMIT" else cur
        elif line[0] == ":":
            cur[1].append(line)
        else:
            cur[2].append(line)
    return out


_RUNS: dict[str, re.Pattern] = {}


def _run_of(chain: str) -> re.Pattern:
    """Matches a run of consecutive ``-A CHAIN ...`` lines (C speed for KUBE-SERVICES' 10k)."""
    pat = _RUNS.get(chain)
    if pat is None:
        pat = re.compile("(?:-A " + re.escape(chain) + "(?: [^\n]*)?\n)+")
        if len(_RUNS) < 4096:
            _RUNS[chain] = pat
    return pat


Span = tuple[str, str, str, str]


def spans(text: str) -> list[Span]:
    """``_spans`` as a list, for a caller that shapes one input several ways (one parse)."""
    return list(_spans(text))


def _spans(text: str) -> Iterator[Span]:
    """(table, kind, chain, text) pieces of a restore input, in order: kind is ``head``
    (``*table``), ``decl`` (one ``:CHAIN`` line), ``rules`` (a run of ``-A CHAIN`` lines),
    ``delete`` (``-X CHAIN``), ``commit`` or ``other``; every piece ends with a newline."""
    if text and not text.endswith("\n"):
        text += "\n"
    pos, n, table = 0, len(text), ""
    while pos < n:
        nl = text.find("\n", pos)
        c = text[pos]
        if c == "-" and text.startswith("-A ", pos):
            sp = text.find(" ", pos + 3, nl)
            chain = text[pos + 3: sp if sp > 0 else nl]
            prefix, end, k = text[pos:pos + 4 + len(chain)], nl + 1, 1
            while end < n and text.startswith(prefix, end):
                k += 1
                if k == 16:    # a long run (KUBE-SERVICES): the rest of it at C speed
                    end = _run_of(chain).match(text, end).end()
                    break
                end = text.find("\n", end) + 1
            yield table, "rules", chain, text[pos:end]
            pos = end
            continue
        line = text[pos:nl]
        if c == "*":
            table = line[1:].strip()
            yield table, "head", "", line + "\n"
        elif c == ":":
            yield table, "decl", line[1:].split(" ", 1)[0], line + "\n"
        elif line.startswith("-X "):
            yield table, "delete", line[3:].strip(), line + "\n"
        elif line == "COMMIT":
            yield table, "commit", "", line + "\n"
        elif line and c != "#":
            yield table, "other", "", line + "\n"
        pos = nl + 1


def chain_blocks(text: str) -> dict[tuple[str, str], str]:
    """(table, chain) -> its rules as written, for every chain a restore input declares and
    does not delete (what ``--noflush`` leaves in that chain)."""
    return {key: "".join(parts)[:-1] for key, parts in _chain_parts(text).items()}


def chain_digests(text: str, digest: Callable[[str], bytes], spans: Iterable[Span] | None = None
                  ) -> dict[tuple[str, str], bytes]:
    """``chain_blocks`` digested, one block at a time: the blocks of a full sync are another
    ~35 MB of small strings at 100k endpoints, which would all be alive at once. ``spans``:
    ``spans(text)`` if the caller has it."""
    return {key: digest("".join(parts)[:-1]) for key, parts in _chain_parts(text, spans).items()}


def _chain_parts(text: str, spans: Iterable[Span] | None = None) -> dict[tuple[str, str], list[str]]:
    rules: dict[tuple[str, str], list[str]] = {}
    for table, kind, chain, piece in (_spans(text) if spans is None else spans):
        if kind == "decl":
            rules[(table, chain)] = []
        elif kind == "rules":
            got = rules.get((table, chain))
            if got is not None:
                got.append(piece)
        elif kind == "delete":
            rules.pop((table, chain), None)
    return rules


def drop_unchanged_chains(text: str, kernel: Mapping[tuple[str, str], str],
                          blocks: Mapping[tuple[str, str], str] | None = None) -> tuple[str, int]:
    """Leave out of a ``--noflush`` input every chain whose rules are exactly what the kernel
    already holds (``kernel``: blocks from ``chain_blocks`` of earlier successful restores):
    not declaring a chain leaves it untouched, so the result is the same ruleset, restored
    with far fewer rules (a partial sync after an endpoint change no longer rewrites the
    10,000-rule ``KUBE-SERVICES``). ``blocks``: ``chain_blocks(text)`` if the caller has it;
    ``kernel`` and ``blocks`` may both map to digests of the blocks instead.
    Returns (text, chains left out)."""
    if blocks is None:
        blocks = chain_blocks(text)
    kept, skipped = drop_unchanged_spans(_spans(text), kernel, blocks)
    return (text, 0) if not skipped else ("".join(piece for _, _, _, piece in kept), skipped)


def drop_unchanged_spans(spans: Iterable[Span], kernel: Mapping[tuple[str, str], str],
                         blocks: Mapping[tuple[str, str], str]) -> tuple[list[Span], int]:
    """``drop_unchanged_chains`` on ``spans(text)``: (the spans kept, chains left out)."""
    skip = {key for key, block in blocks.items() if kernel.get(key) == block}
    if not skip:
        return list(spans), 0
    return [sp for sp in spans if not (sp[1] in ("decl", "rules") and (sp[0], sp[2]) in skip)], len(skip)


_DROP_ORDER = (FW_PREFIX, EXT_PREFIX, SVC_PREFIX, SVL_PREFIX, SEP_PREFIX)   # referrers first


def _drop_rank(chain: str) -> int:
    return next((i for i, prefix in enumerate(_DROP_ORDER) if chain.startswith(prefix)), len(_DROP_ORDER))


def split_restore(text: str, groups: Iterable[Iterable[str]], max_chains: int,
                  spans: list[Span] | None = None) -> list[str]:
    """``iter_split_restore`` as a list."""
    return list(iter_split_restore(text, groups, max_chains, spans))


def iter_split_restore(text: str | None, groups: Iterable[Iterable[str]], max_chains: int,
                       spans: list[Span] | None = None) -> Iterator[str]:
    """A ``--noflush`` input that writes more than ``max_chains`` chains as several inputs,
    restored one after the other, none writing many more than ``max_chains`` (iptables-nft's
    ``--noflush`` costs time quadratic in the chains one restore writes).

    ``groups``: the nat chains of one Service each (its KUBE-SVC/SVL/EXT/FW/SEP chains), which
    only refer to each other and to fixed chains. Whole groups are restored first, packed into
    inputs of about ``max_chains`` chains: a new Service's chains are not referred to yet, an
    updated one's switch over at once. Then everything else in one input, as ``text`` has it
    (the filter table, ``KUBE-SERVICES`` now jumping to the new chains, any chain in no group,
    and the stale chains' deletion, in the transaction that drops the last jumps to them); but
    more than ``max_chains`` stale chains are deleted after it, ``max_chains`` an input (one
    restore deleting 35k chains took 16.5 s at load 20, in pieces a few seconds). Each input is
    a transaction of its own, so every state in between is a consistent ruleset; together they
    leave the kernel as ``text`` would. ``spans``: ``spans(text)`` if the caller has it
    (then ``text`` may be None: the input is what the spans hold). Each input is built when it
    is asked for, so that a caller restoring one at a time holds one, not all."""
    if spans is None:
        spans = list(_spans(text or ""))
    if sum(1 for _, kind, _, _ in spans if kind == "decl") <= max_chains:
        yield text if text is not None else "".join(piece for _, _, _, piece in spans)
        return
    group_of: dict[str, int] = {}
    for i, chains in enumerate(groups):
        for chain in chains:
            group_of[chain] = i
    deleted = {chain for table, kind, chain, _ in spans if kind == "delete" and table == "nat"}
    decls: dict[int, list[str]] = {}
    rules: dict[int, list[str]] = {}
    rest: list[str] = []
    drops: list[str] = []
    for table, kind, chain, piece in spans:
        if table == "nat" and kind in ("decl", "rules") and chain in group_of:
            (decls if kind == "decl" else rules).setdefault(group_of[chain], []).append(piece)
        elif table == "nat" and len(deleted) > max_chains and (kind == "delete" or
                                                              (kind == "decl" and chain in deleted)):
            if kind == "delete":
                drops.append(chain)
        else:
            rest.append(piece)
    del spans, text, group_of, deleted   # the pieces are referred to from decls, rules and rest now
    batch: list[str] = []
    batch_rules: list[str] = []
    n = 0
    for g in sorted(decls):
        batch += decls.pop(g)
        batch_rules += rules.pop(g, [])
        n = len(batch)
        if n >= max_chains:
            piece, batch, batch_rules, n = "*nat\n" + "".join(batch) + "".join(batch_rules) + "COMMIT\n", [], [], 0
            yield piece
    if batch:
        piece, batch, batch_rules = "*nat\n" + "".join(batch) + "".join(batch_rules) + "COMMIT\n", [], []
        yield piece
    piece, rest = "".join(rest), []
    yield piece
    # a stale chain still jumped to by another stale one cannot go first: referrers lead
    drops.sort(key=_drop_rank)
    for i in range(0, len(drops), max_chains):
        part = drops[i:i + max_chains]
        yield "*nat\n" + "".join(f":{c} - [0:0]\n" for c in part) + "".join(f"-X {c}\n" for c in part) + "COMMIT\n"


def replace_tables_text(text: str, saved: SavedTables) -> str:
    """A full sync as one table-replacing restore (``iptables-restore`` without ``--noflush``):
    each table of ``text`` is rewritten whole, carrying over from ``saved`` (the ``iptables-save``
    taken at the start of the sync) every chain ``text`` does not declare -- built-in chains with
    their policy, flannel's and kubelet's chains, and all their rules in order -- so the kernel
    ends up exactly as the ``--noflush`` restore of ``text`` would leave it. iptables-nft
    restores a whole table in one transaction (atomic, as with ``--noflush``) and much faster:
    its ``--noflush`` mode costs time quadratic in the number of chains written."""
    out = []
    for table, decls, body in _sections(text):
        ours = {d[1:].split(" ", 1)[0] for d in decls}
        carried_decls, carried_rules = carried_over(saved, table, ours.__contains__)
        out += [f"*{table}\n", carried_decls]
        out += [d + "\n" for d in decls]
        out.append(carried_rules)
        out += [line + "\n" for line in body]
        out.append("COMMIT\n")
    return "".join(out)


def carried_over(saved: SavedTables, table: str, ours: Callable[[str], bool]) -> tuple[str, str]:
    """What a table-replacing restore must carry over from ``saved`` when the chains it writes
    are those for which ``ours(chain)`` holds: (declarations with policy, rules in order) of
    every other chain -- built-in chains, flannel's and kubelet's (``replace_tables_text``, and
    the streamed full sync, which writes its input before all of it is known)."""
    chains = saved.chains.get(table, {})
    keep = {c for c in chains if not ours(c)}
    decls = "".join(f":{c} {p} [0:0]\n" for c, p in chains.items() if c in keep)
    rules = "".join(r + "\n" for r in saved.rules.get(table, []) if r[3:].split(" ", 1)[0] in keep)
    return decls, rules


# --------------------------------------------------------------------------- cleanup

# Chains named KUBE-* that kubelet owns (its canary, and KUBE-FIREWALL, which kube-proxy only
# jumps to): a cleanup of kube-proxy's rules leaves them.
KUBELET_CHAINS = frozenset({"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-MARK-DROP"})
_TARGET = re.compile(r"(?:^| )-[jg] (\S+)")


def is_proxy_chain(chain: str) -> bool:
    """A chain of kube-proxy's (iptables or ipvs mode, any table): ``KUBE-*`` but kubelet's."""
    return chain.startswith("KUBE-") and chain not in KUBELET_CHAINS


def cleanup_text(saved: SavedTables) -> str:
    """One ``--noflush`` restore input that removes kube-proxy's rules from the tables in
    ``saved`` (upstream ``CleanupLeftovers``): its chains are flushed, every other rule that
    jumps to one of them is deleted (``-D``, as saved), then the chains are deleted. Empty if
    there is nothing of kube-proxy's."""
    out = []
    for table, chains in saved.chains.items():
        ours = [c for c in chains if is_proxy_chain(c)]
        if not ours:
            continue
        mine = set(ours)
        out.append(f"*{table}\n")
        out += [f":{c} - [0:0]\n" for c in ours]
        for rule in saved.rules.get(table, []):
            m = _TARGET.search(rule)
            if m and m.group(1) in mine and rule[3:].split(" ", 1)[0] not in mine:
                out.append("-D " + rule[3:] + "\n")
        out += [f"-X {c}\n" for c in ours]
        out.append("COMMIT\n")
    return "".join(out)
