"""The package import graph of src/baorl: arrows, cycles and upward arrows.

Run: python bench/imports.py  (prints the numbers and every offending arrow).
tests/test_layering.py uses `analyse()` to keep the layering from regressing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "baorl"

# Lowest first; a package may import only packages earlier in this list. The modules at the root of
# src/baorl (config, records, textcap, endpoint, ...) form the base layer: any package may use them.
LAYERS = [
    "models", "gyms", "users", "agents", "rollout", "serve",
    "bao", "runs", "evaluation", "teach", "train", "cli",
]


def base_modules(root: Path = SRC) -> set[str]:
    """The root modules of src/baorl (the base layer)."""
    return {p.stem for p in root.glob("*.py") if p.stem not in ("__init__", "__main__")}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> list[str]:
    """The baorl modules a ``from X import a, b`` names (``from baorl import gyms`` names baorl.gyms)."""
    if node.level:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_pkg else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base != "baorl" and not base.startswith("baorl."):
        return []
    if base == "baorl":
        return [f"baorl.{a.name}" for a in node.names]
    return [base]


def _type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(path: Path, root: Path = SRC) -> list[tuple[str, bool]]:
    """(imported baorl module, is_function_local) for each import in one file under `root`."""
    module = _module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):  # `if TYPE_CHECKING:` imports are for annotations, never run
                continue
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, local) for a in child.names if a.name.startswith("baorl"))
            elif isinstance(child, ast.ImportFrom):
                found.extend((m, local) for m in _resolve(child, module, path.name == "__init__.py"))
            visit(child, inner)

    visit(tree, False)
    return found


def _owner(path: Path, root: Path) -> str:
    """The package (or base module) a file belongs to: gyms for baorl/gyms/x.py, records for baorl/records.py."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def analyse(src: Path | None = None) -> dict:
    """The package graph: packages, arrows (with the files behind each), cycles, upward arrows, local imports."""
    root = SRC if src is None else Path(src)
    edges: dict[tuple[str, str], list[str]] = {}
    modules: dict[str, set[str]] = {}
    local = 0
    for path in sorted(root.rglob("*.py")):
        owner = _owner(path, root)
        me = _module_name(path, root)
        for target, is_local in imports(path, root):
            local += is_local
            modules.setdefault(me, set()).add(target)
            dst = _package(target)
            if owner in ("__init__", "__main__") or dst in ("__init__", "__main__") or owner == dst:
                continue
            edges.setdefault((owner, dst), []).append(str(path.relative_to(root.parent)))
    packages = sorted({p for e in edges for p in e} | {
        p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()})
    graph: dict[str, set[str]] = {p: set() for p in packages}
    for a, b in edges:
        graph[a].add(b)
    base = base_modules(root)
    rank = {name: i + 1 for i, name in enumerate(LAYERS)} | {name: 0 for name in base}
    # an arrow points up when its target is not strictly below its source (unknown packages rank top);
    # the base modules are one layer, so arrows among them are checked only for cycles
    upward = sorted((a, b) for a, b in edges
                    if not (a in base and b in base) and rank.get(b, len(LAYERS) + 1) >= rank.get(a, len(LAYERS) + 1))
    return {
        "packages": packages,
        "edges": edges,
        "cycles": _cycles(graph),
        "upward": upward,
        "local_imports": local,
        "module_cycles": _cycles({m: ts - {m} for m, ts in modules.items()}),
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def main() -> int:
    r = analyse(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(f"packages: {len(r['packages'])}")
    print(f"arrows: {len(r['edges'])}")
    print(f"cycles (strongly connected groups of packages): {len(r['cycles'])}; "
          f"two-package cycles: {sum((b, a) in r['edges'] for a, b in r['edges']) // 2}")
    for c in r["cycles"]:
        print("  cycle:", " <-> ".join(c))
    print(f"upward arrows: {len(r['upward'])}")
    for a, b in r["upward"]:
        print(f"  {a} -> {b}: {', '.join(sorted(set(r['edges'][(a, b)])))}")
    print(f"function-local baorl imports: {r['local_imports']}")
    print(f"module-level cycles (inside or across packages): {len(r['module_cycles'])}")
    for c in r["module_cycles"]:
        print("  module cycle:", " <-> ".join(c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
