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
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class NotRootError(TestbedError):
    exit_code = 77

    def __init__(self, what: str = "this command"):
        super().__init__(f"{what} needs root: it creates network namespaces and netfilter rules; run it with sudo")


class ClusterExistsError(TestbedError):
    exit_code = 3


class ClusterNotFoundError(TestbedError):
    exit_code = 4
