"""Compiling a model's trees at packaging time: what is refused before compiling, the check against
LightGBM that refuses a library scoring otherwise, and the cache keyed by the model file."""

from __future__ import annotations

import hashlib

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.deploy.compiled_trees import check_against_lightgbm, check_rows, compile_trees, unsupported
from nbops.errors import DataError
from nbops.runtime.compiled import CompiledForest
from tests.support import train_tiny_booster


def _frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"x": rng.normal(size=n), "z": rng.uniform(-3, 3, n), "grade": rng.choice(["A", "B", "C", None], n)}
    )
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-2 * df["x"] + (df["grade"] == "B")))).astype(float)
    return df


def _model_text(seed: int, rounds: int = 8, **params: object) -> bytes:
    booster, _ = train_tiny_booster(_frame(seed), ["x", "z"], ["grade"], "y", rounds, seed=seed, params=params)
    return booster.model_to_string().encode()


def test_a_linear_tree_model_is_refused_before_compiling(tmp_path):
    text = _model_text(1, linear_tree=True)
    assert unsupported(text.decode()) == "it has linear trees (linear_tree=true), which lleaves does not compile"
    with pytest.raises(DataError) as caught:
        compile_trees(text, tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith("this model cannot be compiled: it has linear trees")
    assert message.endswith("what to do: build the default wheel with `nbops package` (LightGBM scores it)")
    assert not (tmp_path / "cache").exists()


def test_an_objective_lleaves_does_not_compile_is_refused():
    text = _model_text(2).decode().replace("objective=binary sigmoid:1", "objective=cross_entropy_lambda")
    assert unsupported(text) is not None and "'cross_entropy_lambda' is not one lleaves compiles" in unsupported(text)


def test_the_check_rows_take_every_threshold_and_every_level():
    text = _model_text(3, rounds=20).decode()
    x = check_rows(text)
    booster = lgb.Booster(model_str=text)
    trees = booster.trees_to_dataframe()
    numeric = trees[(trees["decision_type"] == "<=") & trees["split_feature"].notna()]
    names = booster.feature_name()
    for feature, threshold in zip(numeric["split_feature"], numeric["threshold"], strict=True):
        assert (x[:, names.index(feature)] == threshold).any(), (feature, threshold)
    grade = x[:, 2]  # the transform puts the categorical feature after x and z
    assert np.isnan(grade).any() and (grade < 0).any() and (grade > 2).any()  # missing, negative, unseen codes
    assert set(np.unique(grade[(grade >= 0) & (grade <= 2)])) == {0.0, 1.0, 2.0}


@pytest.mark.slow
def test_a_library_that_scores_otherwise_than_lightgbm_is_refused_and_a_good_one_is_cached(tmp_path):
    cache = tmp_path / "cache"
    first, second = _model_text(4, rounds=30), _model_text(5, rounds=30)
    trees = compile_trees(first, cache)
    assert not trees.from_cache and trees.max_abs_difference <= 1e-9
    sha = hashlib.sha256(first).hexdigest()
    assert sorted(p.name.split(".")[0] for p in cache.iterdir()) == [sha, sha]
    again = compile_trees(first, cache)
    assert again.from_cache and again.library == trees.library and again.seconds == 0.0
    # The first model's library presented as the second model's: the check against LightGBM refuses it.
    other = lgb.Booster(model_str=second.decode())
    with pytest.raises(DataError) as caught:
        check_against_lightgbm(other, second.decode(), trees.library, trees.descriptor)
    assert str(caught.value).startswith("the compiled trees do not score like LightGBM")
    assert "expected: predictions within 1e-09 of LightGBM's on 4,096 check rows" in str(caught.value)
    # And the library itself scores the first model's rows as LightGBM does.
    path = tmp_path / "forest.so"
    path.write_bytes(trees.library)
    x = check_rows(first.decode(), rows=500, seed=9)
    got = CompiledForest(str(path), trees.descriptor).predict(x, threads=2)
    assert np.max(np.abs(got - lgb.Booster(model_str=first.decode()).predict(x))) <= 1e-9
