"""The layers are the folders: import-linter's contracts hold, and no module imports itself back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter] layers: cli > pipeline > dashboards/report > experiments > engines >
    deploy > monitoring/registry > modeling > features > data > tracking > config > progress > errors
    > runtime; the runtime and the library never import Ploomber."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_there_is_no_import_cycle_in_the_library() -> None:
    import grimp
    import networkx as nx

    graph = grimp.build_graph("nbops")
    edges = [(m, d) for m in graph.modules for d in graph.find_modules_directly_imported_by(m) if d.startswith("nbops")]
    cycles = list(nx.simple_cycles(nx.DiGraph(edges)))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_every_layer_is_a_folder_of_the_package() -> None:
    """What the README's layout section lists is what the contract checks."""
    import tomllib

    layers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    names = [name.strip().removeprefix("nbops.") for layer in layers for name in layer.split("|")]
    package = REPO / "src" / "nbops"
    for name in names:
        assert (package / name).is_dir() or (package / f"{name}.py").is_file(), name
    on_disk = {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {
        p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")
    }
    assert on_disk == set(names), f"not in a layer: {sorted(on_disk - set(names))}"
