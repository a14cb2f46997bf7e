"""A port of Go's ``text/tabwriter`` (left-aligned, space padding, no flags), which is what
kubectl uses to align ``get`` tables (minwidth 6, padding 3) and ``describe`` output
(minwidth 0, padding 2).

Cells are tab-terminated; the text after the last tab of a line is not part of any column
and is not padded. A column's width is computed over a *block* of consecutive lines that
have a cell in that column, so a line with fewer cells (e.g. ``Events:``) ends a block."""

from __future__ import annotations


def tabwrite(text: str, minwidth: int = 0, padding: int = 1) -> str:
    """Align *text* (lines with ``\\t``-separated cells) like Go's tabwriter + Flush."""
    if not text:
        return ""
    ends_nl = text.endswith("\n")
    raw = text[:-1] if ends_nl else text
    lines = [ln.split("\t") for ln in raw.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, c in enumerate(cells):
                if j < len(widths):
                    parts.append(c + " " * (widths[j] - len(c)))
                else:
                    parts.append(c)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1:
                if column >= len(lines[this]) - 1:
                    break
                w = len(lines[this][column]) + padding
                if w > width:
                    width = w
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out) + ("\n" if ends_nl else "")
