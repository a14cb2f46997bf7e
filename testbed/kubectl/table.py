"""The product's one table printer: ``kubectl get``'s layout, used by the kubectl printers and
by every CLI verb that prints a table (``testbed ls``, ``status``, ``metrics``).

cli-runtime aligns tables with Go's tabwriter (minwidth 6, padding 3): cells left-aligned,
columns three spaces apart, the last cell of a line never padded."""

from __future__ import annotations

from collections.abc import Sequence

from .tabwriter import tabwrite


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]], *, no_headers: bool = False) -> str:
    """*header* and *rows* (lists of cells) as kubectl prints them; every line ends with a newline."""
    lines = ([] if no_headers else [header]) + list(rows)
    return tabwrite("".join("\t".join(str(c) for c in r) + "\n" for r in lines), minwidth=6, padding=3)
