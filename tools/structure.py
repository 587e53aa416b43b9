"""Print the package's structure: modules, sizes, who imports whom, cycles, private reaches.

Run from the repository root::

    python tools/structure.py            # a readable report
    python tools/structure.py --json     # the same as JSON

It reads the source with :mod:`ast` (nothing is imported), counts imports at module level and
inside functions alike, and reports

* every module with its line count and the package modules it imports;
* import cycles (strongly connected components of the import graph, where importing a
  subpackage means importing its ``__init__``);
* imports of another module's underscore names (``from .x import _y`` or ``x._y``);
* imports inside functions of package modules (allowed only for heavy optional dependencies).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pneumonia_cnn"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _nearest_module(name: str, known: dict[str, Path]) -> str | None:
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def analyse() -> dict:
    known = modules()
    report = {"modules": {}, "private": [], "inner_imports": []}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        aliases: dict[str, str] = {}
        function_nodes = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        function_nodes.add(id(inner))
        for node in ast.walk(tree):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE):
                        targets.append((alias.name, None))
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                if not base.startswith(PACKAGE):
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in known:
                        targets.append((full, None))
                        aliases[alias.asname or alias.name] = full
                    else:
                        targets.append((base, alias.name))
            else:
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in aliases and node.attr.startswith("_")
                        and not node.attr.startswith("__")):
                    report["private"].append(f"{name}: {aliases[node.value.id]}.{node.attr}")
                continue
            for target, attr in targets:
                module = _nearest_module(target, known)
                if module is None or module == name:
                    continue
                deps.add(module)
                # importing a.b._c runs a.b's __init__ first: a dependency too, unless it is
                # this module's own package (being imported already)
                parent = module.rpartition(".")[0]
                while parent.startswith(PACKAGE) and parent != PACKAGE:
                    if not (name == parent or name.startswith(parent + ".")):
                        deps.add(parent)
                    parent = parent.rpartition(".")[0]
                if attr and attr.startswith("_") and not attr.startswith("__"):
                    # a private name of a module in the same subpackage, re-exported by its
                    # own __init__, is that package's business; elsewhere it is a reach.
                    report["private"].append(f"{name}: {module}.{attr}")
                if id(node) in function_nodes:
                    report["inner_imports"].append(f"{name} -> {module}")
        lines = len(path.read_text(encoding="utf-8").splitlines())
        report["modules"][name] = {"lines": lines, "imports": sorted(deps)}
    report["plugins"] = _plugins(known)
    report["cycles"] = _cycles({m: v["imports"] for m, v in report["modules"].items()})
    report["total_lines"] = sum(v["lines"] for v in report["modules"].values())
    return report


def _plugins(known: dict) -> list:
    """The references by name of ``utils/_plugins.py`` (late-bound, not imports)."""
    path = ROOT / PACKAGE / "utils" / "_plugins.py"
    if not path.is_file():
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.append(f"{key.value}: {value.value}")
    return found


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    report = analyse()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    short = lambda m: m.removeprefix(PACKAGE + ".") if m != PACKAGE else m  # noqa: E731
    print(f"{len(report['modules'])} modules, {report['total_lines']} lines\n")
    for name, info in report["modules"].items():
        deps = ", ".join(short(d) for d in info["imports"]) or "-"
        print(f"{info['lines']:5d}  {short(name):38s} imports: {deps}")
    print(f"\nimport cycles: {len(report['cycles'])}")
    for cycle in report["cycles"]:
        print("  " + " <-> ".join(short(m) for m in cycle))
    print(f"private names imported across modules: {len(report['private'])}")
    for item in report["private"]:
        print("  " + item)
    inner = sorted(set(report["inner_imports"]))
    print(f"package imports inside functions: {len(inner)} (module -> module)")
    for item in inner:
        print("  " + item)
    print(f"plug-ins named in utils/_plugins.py (late-bound, not imports): "
          f"{len(report['plugins'])}")
    for item in report["plugins"]:
        print("  " + item)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # piped into head: fine
        sys.stderr.close()
