"""The shape of the library holds: short modules, no import cycles, no module reaching
into another's private names, the main entry point at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import trimlab

PKG = Path(trimlab.__file__).resolve().parent
MAX_LINES = 350


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def module_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """trimlab modules imported at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base in known:
                found.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    found.add(f"{base}.{alias.name}")
    return found - {name}


def test_no_library_module_is_too_long():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert {n: k for n, k in long.items() if k > MAX_LINES} == {}


def test_no_import_cycles():
    mods = modules()
    graph = {n: module_imports(n, p, set(mods)) for n, p in mods.items()}
    # a package's __init__ re-exporting its submodules is not a cycle of concepts
    for n in graph:
        graph[n] = {m for m in graph[n] if not n.startswith(m + ".") and m != "trimlab"}
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n) :] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for m in sorted(graph[n]):
            visit(m)
        stack.pop()

    for n in sorted(graph):
        visit(n)
    assert cycles == []


def test_no_module_uses_another_modules_private_names():
    mods = modules()
    short = {n.rpartition(".")[2] for n in mods}
    bad = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trimlab"):
                bad += [
                    f"{name}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in short
            ):
                bad.append(f"{name}: {node.value.id}.{node.attr}")
    assert bad == []


def test_the_main_entry_point_is_at_the_top():
    assert callable(trimlab.trim) and trimlab.trim.__module__ == "trimlab.pipeline"
    assert callable(trimlab.TrimConfig.from_profile)
