"""The k8s package's modules import each other without a cycle."""

import ast
from pathlib import Path

import testbed.k8s

ROOT = Path(testbed.k8s.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["testbed", *parts])


def _imports(path: Path, name: str) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            out.update(c for c in candidates if c.startswith("testbed.k8s"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("testbed.k8s"))
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    return {name: {i for i in _imports(p, name) if i in files and i != name} for name, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            # a package's __init__ importing its own submodules is not a cycle between modules
            if n.startswith(m + ".") or m.startswith(n + ".") and n == "testbed.k8s":
                continue
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return []


def test_no_import_cycle_in_k8s():
    assert _cycle(_graph()) == []


def test_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_selectors_build_on_field_validators_only():
    assert _graph()["testbed.k8s.selectors"] == {"testbed.k8s.fields"}
