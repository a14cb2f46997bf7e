"""The README's parity table, features x proxy modes, computed from the JUnit files of a test run
(``artifacts/junit.xml`` natively, ``artifacts/junit-ipvs.xml`` from the kernel lane), so it
shows what the tests showed and nothing else.

A feature is a scenario of ``scenarios/``; a cell is the outcome of ``test_scenario[MODE-SCENARIO]``
(``tests/integration/test_scenarios.py``): ``pass``, ``pass`` with footnotes for the checks that
differ as ``testbed.verify.parity`` declares (the footnote is the declared reason), ``FAIL``
(with the failing checks), or ``not run`` when no file has the test.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from testbed.errors import TestbedError

_NAME = re.compile(r"^test_scenario\[(?P<mode>[a-z0-9]+)-(?P<scenario>[a-z0-9-]+)\]$")
_REASON = re.compile(r"\[(?P<key>[\w-]+)\] (?P<reason>.*?)(?=; \[[\w-]+\] |$)", re.S)


@dataclass
class Cell:
    outcome: str                                    # pass | expected | fail | skipped
    footnotes: dict[str, str] = field(default_factory=dict)   # difference key -> reason
    failed: list[str] = field(default_factory=list)           # checks (or the test's message)


def read_cells(paths: list[str]) -> dict[tuple[str, str], Cell]:
    """(mode, scenario) -> Cell from every ``test_scenario`` case of the JUnit files."""
    cells: dict[tuple[str, str], Cell] = {}
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise TestbedError(f"{path}: not a readable JUnit XML file ({exc})") from None
        for tc in root.iter("testcase"):
            m = _NAME.match(tc.get("name", ""))
            if not m or not tc.get("classname", "").endswith("test_scenarios"):
                continue
            cells[(m["mode"], m["scenario"])] = _cell(tc)
    return cells


def _cell(tc: ET.Element) -> Cell:
    props = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
    checks = {k[len("check:"):]: v for k, v in props.items() if k.startswith("check:")}
    skipped = tc.find("skipped")
    if skipped is not None and skipped.get("type") == "pytest.xfail":
        # an expected failure (a known gap) failed: the table shows it failing, not skipped
        failed = [c for c, v in checks.items() if v.startswith("fail")]
        return Cell("fail", failed=failed or [skipped.get("message", "")])
    if skipped is not None:
        return Cell("skipped", failed=[skipped.get("message", "")])
    failure = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
    failed = [c for c, v in checks.items() if v.startswith("fail")]
    if failure is not None or failed:
        msg = (failure.get("message", "") if failure is not None else "").splitlines()[:1]
        return Cell("fail", failed=failed or msg)
    notes: dict[str, str] = {}
    for v in checks.values():
        if v.startswith("expected-difference: "):
            for m in _REASON.finditer(v[len("expected-difference: "):]):
                notes[m["key"]] = m["reason"].strip()
    return Cell("expected" if notes else "pass", notes)


def render(cells: dict[tuple[str, str], Cell], modes: list[str], scenarios: list[str]) -> str:
    """A Markdown table (features x modes) and its footnotes."""
    keys: list[str] = []
    reasons: dict[str, str] = {}
    for s in scenarios:
        for m in modes:
            c = cells.get((m, s))
            for k, r in sorted((c.footnotes if c else {}).items()):
                if k not in reasons:
                    keys.append(k)
                    reasons[k] = r
    lines = ["| feature (scenario) | " + " | ".join(modes) + " |",
             "|---|" + "---|" * len(modes)]
    for s in scenarios:
        row = []
        for m in modes:
            c = cells.get((m, s))
            if c is None:
                row.append("not run")
            elif c.outcome == "pass":
                row.append("pass")
            elif c.outcome == "expected":
                row.append("pass, differs " + ", ".join(f"[{keys.index(k) + 1}]" for k in sorted(
                    c.footnotes, key=keys.index)))
            elif c.outcome == "skipped":
                row.append("skipped")
            else:
                row.append("**FAIL** (" + ", ".join(c.failed) + ")")
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    if keys:
        lines.append("")
        lines += [f"[{i + 1}] `{k}`: {reasons[k]}  " for i, k in enumerate(keys)]
    if any((m, s) not in cells for s in scenarios for m in modes):
        lines += ["", "not run: none of the JUnit files read has this test."]
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- parity-matrix:begin -->", "<!-- parity-matrix:end -->"


def replace_section(text: str, table: str) -> str:
    """``text`` with what lies between the parity-matrix markers replaced by ``table``."""
    if BEGIN not in text or END not in text:
        raise TestbedError(f"README has no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"
