"""nbops.modeling.tune: a seeded study that starts from the parameters as set, prunes, resumes
from its SQLite file, runs nothing when done; and the search space typed by nbops check."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbops.config.params import TrainParams, TuneParams, validate_params
from nbops.data.schema import TableSchema
from nbops.errors import ConfigError
from nbops.modeling.tune import history_figure, importance_figure, run_study, tuned_params
from nbops.runtime.transform import FeatureTransform
from tests.support import TinyModel

SPACE = {"learning_rate": {"low": 0.02, "high": 0.3, "log": True}, "num_leaves": {"low": 4, "high": 32}}


def study(tiny: TinyModel, storage: Path, trials: int, **extra: object) -> object:
    params = validate_params(
        TuneParams,
        {"tune_trials": trials, "tune_space": SPACE, "num_boost_round": 60, "early_stopping_rounds": 10, **extra},
        where="test",
    )
    return run_study(
        params,
        schema=TableSchema.load(tiny.schema_file),
        transform=FeatureTransform.load(tiny.transform_file),
        train_rows=pd.read_parquet(tiny.splits["train"]),
        valid_rows=pd.read_parquet(tiny.splits["valid"]),
        storage=storage,
        data_key="fingerprint-1",
    )


@pytest.mark.slow  # two studies of six trials
def test_a_seeded_study_proposes_the_same_trials_and_starts_from_the_parameters_as_set(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    first = study(tiny_model, tmp_path / "a.db", 6)
    second = study(tiny_model, tmp_path / "b.db", 6)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]
    assert first.trials[0].params == {"learning_rate": 0.05, "num_leaves": 31}  # TrainParams' defaults
    assert first.default_value == first.trials[0].value
    assert first.best_value <= first.default_value  # never worse than the parameters as set
    assert first.best == min((t for t in first.trials if t.state == "COMPLETE"), key=lambda t: t.value).params
    assert history_figure(first).axes and importance_figure(first).axes


@pytest.mark.slow
def test_an_interrupted_study_resumes_and_a_finished_one_runs_nothing(tiny_model: TinyModel, tmp_path: Path) -> None:
    storage = tmp_path / "studies.db"
    part = study(tiny_model, storage, 3)
    assert (part.ran_now, len(part.trials)) == (3, 3)
    resumed = study(tiny_model, storage, 5)
    assert (resumed.ran_now, len(resumed.trials)) == (2, 5)
    assert [t.params for t in resumed.trials[:3]] == [t.params for t in part.trials]
    again = study(tiny_model, storage, 5)
    assert again.ran_now == 0 and again.best == resumed.best
    other = study(tiny_model, storage, 2, seed=7)  # another input: another study in the same file
    assert other.study != resumed.study and other.ran_now == 2


def test_without_trials_nothing_runs_and_train_keeps_its_parameters(tiny_model: TinyModel, tmp_path: Path) -> None:
    result = study(tiny_model, tmp_path / "none.db", 0)
    assert not result.tuned and not (tmp_path / "none.db").exists()
    params = TrainParams()
    assert tuned_params(params, result.to_dict()) is params
    tuned = tuned_params(params, {"tuned": True, "best": {"learning_rate": 0.11, "num_leaves": 9, "bogus": 1}})
    assert (tuned.learning_rate, tuned.num_leaves, tuned.min_data_in_leaf) == (0.11, 9, 50)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"learning_rat": {"low": 0.01, "high": 0.1}},
            "'learning_rat' is not a parameter a study can search; did you mean 'learning_rate'?",
        ),
        ({"num_leaves": {"low": 4.5, "high": 10}}, "num_leaves takes whole numbers, found 4.5..10"),
        (
            {"feature_fraction": {"low": 0.5, "high": 2}},
            "feature_fraction range 0.5..2 leaves what feature_fraction allows",
        ),
        ({"lambda_l2": {"low": 0, "high": 1, "log": True}}, "a log-scale range needs low > 0, found 0"),
        ({"lambda_l2": {"low": 2, "high": 1}}, "a search range needs low < high, found low 2 and high 1"),
        ({"lambda_l2": {"low": 1, "hi": 2}}, "hi"),
    ],
)
def test_the_search_space_is_checked_before_anything_runs(space: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_params(TuneParams, {"tune_space": space}, where="env.yaml")
    assert message in str(err.value)
