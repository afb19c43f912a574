"""Typed parameters: unknown keys suggest the close name, wrong types name key, expectation and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbops.config.params import (
    STAGES,
    EnvSettings,
    FeaturesParams,
    IngestParams,
    TrainParams,
    describe_expected,
    unknown_key_message,
    validate_params,
)
from nbops.config.spec import load_env
from nbops.errors import ConfigError
from tests.support import REPO


def test_unknown_key_suggests_the_close_name():
    with pytest.raises(ConfigError) as info:
        validate_params(TrainParams, {"learning_rat": 0.1}, where="env.yaml")
    text = str(info.value)
    assert "env.yaml" in text
    assert "unknown key 'learning_rat'" in text
    assert "Did you mean 'learning_rate'?" in text


def test_unknown_key_far_from_every_name_gives_no_suggestion():
    msg = unknown_key_message("zzzzzz", ["learning_rate", "seed"], where="env.yaml")
    assert "Did you mean" not in msg
    assert "Known keys: learning_rate, seed" in msg


@pytest.mark.parametrize(
    ("key", "value", "expected_words"),
    [
        ("num_leaves", "many", "an integer"),
        ("num_leaves", 31.5, "an integer"),
        ("learning_rate", "fast", "a number"),
        ("tracking", "sometimes", "one of 'offline', 'online', 'disabled'"),
    ],
)
def test_wrong_type_names_key_expected_type_and_value_found(key, value, expected_words):
    with pytest.raises(ConfigError) as info:
        validate_params(TrainParams, {key: value}, where="task 'train' in pipeline.yaml")
    text = str(info.value)
    assert "task 'train' in pipeline.yaml" in text
    assert f"'{key}' expected {expected_words}" in text
    assert f"found {value!r} ({type(value).__name__})" in text


def test_out_of_bounds_value_names_the_bound():
    with pytest.raises(ConfigError) as info:
        validate_params(TrainParams, {"learning_rate": 0}, where="env.yaml")
    text = str(info.value)
    assert "'learning_rate' expected a number (> 0, ≤ 1)" in text
    assert "found 0 (int)" in text


def test_every_bad_key_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        validate_params(TrainParams, {"num_leafs": 3, "seed": -1, "num_boost_round": "x"}, where="env.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert any("unknown key 'num_leafs'" in line and "'num_leaves'" in line for line in lines)
    assert any("'seed'" in line and "-1" in line for line in lines)
    assert any("'num_boost_round'" in line and "'x'" in line for line in lines)


def test_valid_values_give_typed_frozen_params():
    params = validate_params(FeaturesParams, {"valid_fraction": 0.2, "seed": 7}, where="env.yaml")
    assert isinstance(params, FeaturesParams)
    assert params.valid_fraction == 0.2 and params.seed == 7
    assert params.test_fraction == FeaturesParams.model_fields["test_fraction"].default
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on a frozen model
        params.seed = 8  # type: ignore[misc]


def test_describe_expected_names_bounds():
    assert describe_expected(TrainParams, "num_leaves") == "an integer (≥ 2, ≤ 131072)"
    assert describe_expected(IngestParams, "target") == "a string (length ≥ 1)"


def test_describe_expected_for_a_list_reads_as_english():
    assert describe_expected(IngestParams, "id_columns") == "a list of strings"


def test_every_stage_key_is_an_env_key():
    for model in STAGES.values():
        assert set(model.model_fields) <= set(EnvSettings.model_fields)


@pytest.mark.parametrize("env_file", ["env.yaml", "env.test.yaml"])
def test_repo_env_files_validate(env_file):
    assert (REPO / env_file).exists(), f"{env_file} not found at the repo root {REPO}"
    env = load_env(REPO, env_file)
    settings = validate_params(EnvSettings, env, where=env_file)
    assert isinstance(settings, EnvSettings)
    # Every key of the file is a known setting, and the values came through unchanged.
    for key in ("rows", "seed", "target", "num_boost_round", "max_quarantine_fraction"):
        assert getattr(settings, key) == env[key]
    # The {{here}} placeholder was rendered to the repo folder.
    assert "{{" not in settings.root
    assert Path(settings.root).resolve().is_relative_to(REPO)


def test_env_file_with_a_typo_is_refused(tmp_path):
    text = (REPO / "env.test.yaml").read_text() + "\nnum_boost_rounds: 10\n"
    (tmp_path / "env.yaml").write_text(text)
    env = load_env(tmp_path, "env.yaml")
    with pytest.raises(ConfigError) as info:
        validate_params(EnvSettings, env, where="env.yaml")
    assert "unknown key 'num_boost_rounds'" in str(info.value)
    assert "'num_boost_round'" in str(info.value)
