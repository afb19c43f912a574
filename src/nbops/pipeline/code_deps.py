"""The library code a notebook runs: the nbops modules it imports, and everything they import.

A run identity that hashed only the notebook would miss a fix in the library (the thinner the
notebook, the less it covers). Imports are read statically from the source (every ``import`` in a
module, at any depth, so a lazy import inside a function counts too): no module is executed, and the
whole library is read in a few tens of milliseconds.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE = "nbops"
# Modules that read other modules' files rather than import them: the wheel builder copies the
# scoring runtime into every wheel, so a change there must rebuild the wheel.
CARRIES: dict[str, str] = {"nbops.deploy.wheel": "nbops.runtime"}


def package_dir() -> Path:
    """The folder of the nbops package being run (an editable checkout or an installed copy)."""
    return Path(__file__).resolve().parents[1]


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports_of(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Names of nbops modules (or attributes of them) a module's source imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == PACKAGE or a.name.startswith(PACKAGE + "."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names if a.name != "*")
    return found


@lru_cache(maxsize=4)
def _graph(root: str, stamp: str) -> tuple[dict[str, Path], dict[str, frozenset[str]]]:
    del stamp  # part of the cache key only: a changed file gives a new graph
    base = Path(root)
    files = {_module_name(p, base): p for p in sorted(base.rglob("*.py")) if "__pycache__" not in p.parts}
    edges: dict[str, frozenset[str]] = {}
    for name, path in files.items():
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError:
            tree = ast.Module(body=[], type_ignores=[])
        edges[name] = frozenset(_imports_of(tree, name, path.name == "__init__.py"))
    return files, edges


def module_graph(root: Path | None = None) -> tuple[dict[str, Path], dict[str, frozenset[str]]]:
    """Every module of the package (name -> file) and the nbops names each one imports."""
    base = (root or package_dir()).resolve()
    stamp = json.dumps(
        [
            (str(p), p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(base.rglob("*.py"))
            if "__pycache__" not in p.parts
        ]
    )
    return _graph(str(base), stamp)


def closure(names: Iterable[str], root: Path | None = None) -> dict[str, Path]:
    """The modules that importing ``names`` runs: each one, its parent packages, and what they import."""
    files, edges = module_graph(root)
    seen: dict[str, Path] = {}
    stack = list(names)
    while stack:
        name = stack.pop()
        # "nbops.a.b" may be a module, or an attribute of module "nbops.a"
        while name and name not in files:
            name = name.rpartition(".")[0]
        if not name or name in seen:
            continue
        seen[name] = files[name]
        parent = name.rpartition(".")[0]
        if parent:
            stack.append(parent)
        stack.extend(edges.get(name, ()))
        if name in CARRIES:
            stack.extend(m for m in files if m == CARRIES[name] or m.startswith(CARRIES[name] + "."))
    return dict(sorted(seen.items()))


def imports_in_code(code: str) -> set[str]:
    """nbops names imported by a notebook's code (IPython magics and shell lines are skipped)."""
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return {PACKAGE}  # unreadable: assume it uses the whole package
    return _imports_of(tree, "__main__", False)


def library_fingerprint(code: str, root: Path | None = None) -> dict[str, str]:
    """SHA-256 (16 hex digits) of every library file a notebook's code runs, keyed by its path
    inside the package (``modeling/train.py``)."""
    base = (root or package_dir()).resolve()
    modules = closure(imports_in_code(code), base)
    return {
        str(path.relative_to(base)): hashlib.sha256(path.read_bytes()).hexdigest()[:16] for path in modules.values()
    }
