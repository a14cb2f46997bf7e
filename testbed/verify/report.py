"""Results of checks: rows of expected versus observed, evidence files, JUnit XML (pure)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass
class Row:
    expectation: str  # reach, backends, dnat, ...
    expected: str
    observed: str
    ok: bool


@dataclass
class Result:
    check: str
    description: str = ""
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    attempts: int = 1
    evidence: list[str] = field(default_factory=list)  # file paths (pcaps, rules)
    error: str | None = None  # an error that stopped the check (not an expectation)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.rows) and all(r.ok for r in self.rows)

    def add(self, expectation: str, expected: str, observed: str, ok: bool) -> bool:
        self.rows.append(Row(expectation, expected, observed, bool(ok)))
        return bool(ok)

    def failure_text(self) -> str:
        lines = [f"{r.expectation}: expected {r.expected}; observed {r.observed}" for r in self.rows if not r.ok]
        if self.error:
            lines.insert(0, f"error: {self.error}")
        if not self.rows and not self.error:
            lines.append("no expectation was evaluated")
        return "\n".join(lines)


def write_junit(path: str, suite: str, results: list[Result]) -> None:
    """One testsuite, one testcase per check; failures carry the expected-versus-observed rows."""
    failures = sum(1 for r in results if not r.ok and r.error is None)
    errors = sum(1 for r in results if r.error is not None)
    ts = ET.Element("testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                    errors=str(errors), time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=suite, name=r.check, time=f"{r.seconds:.3f}")
        if r.error is not None:
            el = ET.SubElement(tc, "error", message=r.error.splitlines()[0] if r.error else "error")
            el.text = r.failure_text()
        elif not r.ok:
            first = next((x for x in r.rows if not x.ok), None)
            msg = f"{first.expectation}: expected {first.expected}; observed {first.observed}" if first else "failed"
            el = ET.SubElement(tc, "failure", message=msg)
            el.text = r.failure_text()
        out = [f"{x.expectation}: expected {x.expected}; observed {x.observed} [{'ok' if x.ok else 'FAIL'}]"
               for x in r.rows]
        if r.attempts > 1:
            out.append(f"attempts: {r.attempts}")
        out += [f"evidence: {e}" for e in r.evidence]
        if out:
            ET.SubElement(tc, "system-out").text = "\n".join(out)
    root = ET.Element("testsuites")
    root.append(ts)
    ET.indent(root)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def table(results: list[Result]):
    """A rich Table: check, expectation, expected, observed, result; borderless columns like
    kubectl's (what logs and the README show), colour only on a terminal."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_lines=False, header_style="bold")
    for col in ("CHECK", "EXPECT", "EXPECTED", "OBSERVED", "RESULT"):
        t.add_column(col, overflow="fold")
    for r in results:
        first = True
        rows = r.rows or [Row("-", "-", r.error or "not run", False)]
        if r.error and r.rows:
            rows = [*rows, Row("error", "-", r.error, False)]
        for x in rows:
            t.add_row(r.check if first else "", x.expectation, x.expected, x.observed,
                      "[green]pass[/green]" if x.ok else "[red]FAIL[/red]")
            first = False
    return t


def evidence_dir(base: str, check: str) -> str:
    d = os.path.join(base, check)
    os.makedirs(d, exist_ok=True)
    return d
