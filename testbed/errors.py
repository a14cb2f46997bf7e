"""Error types shared by the library and the CLI."""

from __future__ import annotations

from dataclasses import dataclass


class TestbedError(Exception):
    """An error the user can act on; the CLI prints it as one line (or a short list)."""

    __test__ = False  # not a pytest test class
    exit_code = 1


@dataclass(frozen=True)
class Problem:
    path: str  # field path, e.g. spec.nodes[2].name
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ValidationError(TestbedError):
    """Every problem found in one input file, reported together."""

    exit_code = 2

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        if len(problems) == 1:  # errors are one line; a list only when there are several
            super().__init__(f"{source}: {problems[0]}")
            return
        lines = [f"{source}: {len(problems)} problems:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class NotRootError(TestbedError):
    exit_code = 77

    def __init__(self, what: str = "this command"):
        super().__init__(f"{what} needs root: it creates network namespaces and netfilter rules; run it with sudo")


class BadOptionError(TestbedError):
    """An option or argument a verb cannot take: invalid input, like the parser's usage errors."""

    exit_code = 2


class ClusterExistsError(TestbedError):
    exit_code = 3


class ClusterNotFoundError(TestbedError):
    exit_code = 4


def unreadable(exc: OSError) -> str:
    """Why a file could not be read, in words (no errno, no traceback)."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    return f"cannot be read: {exc.strerror or exc}"


def yaml_problem(exc: Exception) -> str:
    """A YAML parser error as one line: PyYAML's own text spans several lines with a snippet."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"not valid YAML{where}: {problem}" + (f" ({context})" if context else "")
