"""nbops.config.paths: the project folder is the nearest one holding pipeline.yaml (or the one
NBOPS_PROJECT names), and every path nbops keeps is built from it or from the products root."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbops.config import paths
from nbops.errors import ConfigError


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """outer/pipeline.yaml and inner/pipeline.yaml below it, with a notebooks folder in inner."""
    monkeypatch.delenv("NBOPS_PROJECT", raising=False)
    outer = tmp_path / "outer"
    inner = outer / "sub" / "inner"
    (inner / "notebooks" / "deep").mkdir(parents=True)
    (outer / paths.PIPELINE_FILE).write_text("tasks: []\n")
    (inner / paths.PIPELINE_FILE).write_text("tasks: []\n")
    return outer


def test_the_nearest_folder_holding_pipeline_yaml_is_the_project(tree: Path) -> None:
    inner = tree / "sub" / "inner"
    assert paths.project_root(inner / "notebooks" / "deep") == inner.resolve()
    assert paths.project_root(inner) == inner.resolve()
    assert paths.project_root(tree / "sub") == tree.resolve()  # no pipeline.yaml in sub: its parent's


def test_the_working_directory_is_where_the_search_starts(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "sub" / "inner" / "notebooks")
    assert paths.project_root() == (tree / "sub" / "inner").resolve()


def test_nbops_project_wins_over_the_folder_searched_from(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPS_PROJECT", str(tree))
    assert paths.project_root(tree / "sub" / "inner" / "notebooks") == tree.resolve()


def test_nbops_project_without_a_pipeline_says_what_to_point_it_at(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBOPS_PROJECT", str(tree / "sub"))
    with pytest.raises(ConfigError) as err:
        paths.project_root()
    message = str(err.value)
    assert f"NBOPS_PROJECT={tree / 'sub'}" in message and "has no pipeline.yaml" in message
    assert "point it at the nbops project folder" in message


def test_no_pipeline_anywhere_above_names_the_folder_and_both_ways_out(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely" / "folder"
    lonely.mkdir(parents=True)
    if any((folder / paths.PIPELINE_FILE).exists() for folder in lonely.parents):
        pytest.skip("a pipeline.yaml above the temporary folder")  # the search would find it
    with pytest.raises(ConfigError) as err:
        paths.project_root(lonely)
    message = str(err.value)
    assert f"no pipeline.yaml in {lonely.resolve()} or any folder above it" in message
    assert "run from inside the nbops project" in message and "set NBOPS_PROJECT" in message


def test_what_nbops_keeps_is_under_the_products_root_and_wandb_under_the_project(tmp_path: Path) -> None:
    root = tmp_path / "build" / "test"
    assert paths.registry_dir(root) == root / "registry"
    assert paths.registry_dir(str(root)) == root / "registry"  # a path as written in env.yaml
    assert paths.wandb_home(tmp_path) == tmp_path / "wandb"
    # nbops' own state lives in one hidden folder of the root; the build log beside the reports
    for kept in (paths.LINEAGE_FILE, paths.RETRAIN_STATE, paths.LOGS_DIR):
        assert Path(kept).parts[0] == paths.STATE_DIR
    assert Path(paths.BUILD_LOG).parent == Path("reports")
