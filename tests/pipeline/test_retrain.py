"""Continuous training: the retrain decision on hand-built monitoring histories, the state file, the
command around a stand-in build (the retrain of a real build: tests/e2e/test_retrain.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nbops.cli.automation import retrain as cmd_retrain
from nbops.errors import NbopsError
from nbops.pipeline.retrain import (
    RetrainDecision,
    decide,
    labelled_months,
    load_state,
    save_state,
    state_path,
)
from tests.support import copy_project, nbops, output_of

NOW = 1.79e9


def history(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A monitoring history like the monitor task writes: one row per batch, NaN where unknown."""
    base = {"labels_arrived_at": np.nan, "drifted_features": "", "perf__roc_auc": np.nan}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame["month"] = frame["batch_id"]
    return frame


def six_months(labelled: int = 4) -> pd.DataFrame:
    """Months 2025-01..2025-06 monitored; the first ``labelled`` have their labels."""
    return history(
        [
            {"batch_id": f"2025-{k:02d}", **({"labels_arrived_at": NOW, "perf__roc_auc": 0.8} if k <= labelled else {})}
            for k in range(1, 7)
        ]
    )


FRESH: dict[str, Any] = {"labelled_through": None, "acted_on": []}


# --------------------------------------------------------------------------- rule (a): labelled months


def test_new_labelled_months_trigger_and_are_named() -> None:
    d = decide(six_months(4), [], FRESH)
    assert d.needed
    assert d.labelled_through == "2025-04"
    assert d.new_labelled == ["2025-01", "2025-02", "2025-03", "2025-04"]
    assert "labels arrived for 2025-01..2025-04 (4 months)" in d.reasons[0]
    assert "not been trained on any production month" in d.reasons[0]


def test_only_months_later_than_the_state_are_new() -> None:
    d = decide(six_months(4), [], {"labelled_through": "2025-03", "acted_on": []})
    assert d.needed and d.new_labelled == ["2025-04"]
    assert d.labelled_through == "2025-04"
    assert "labels arrived for 2025-04" in d.reasons[0] and "labelled through 2025-03" in d.reasons[0]


def test_nothing_new_says_why_not() -> None:
    d = decide(six_months(4), [], {"labelled_through": "2025-04", "acted_on": []})
    assert not d.needed
    assert d.labelled_through == "2025-04"
    assert d.reasons == ["no new labelled months since 2025-04", "no unhandled alerts (last checked batch 2025-06)"]


def test_no_labels_yet() -> None:
    d = decide(six_months(0), [], FRESH)
    assert not d.needed and d.labelled_through is None
    assert "no labelled production months yet" in d.reasons[0]


def test_labelled_through_never_goes_back() -> None:
    d = decide(six_months(2), [], {"labelled_through": "2025-05", "acted_on": []})
    assert not d.needed and d.labelled_through == "2025-05"


def test_labels_count_from_performance_or_arrival_and_only_for_months() -> None:
    frame = history(
        [
            {"batch_id": "2025-01", "labels_arrived_at": NOW},  # simulated month: labels arrived later
            {"batch_id": "2025-02", "perf__roc_auc": 0.7},  # a batch you monitored with its labels
            {"batch_id": "2025-03"},
            {"batch_id": "serving-predictions", "perf__roc_auc": 0.7},  # not a month: never training data
        ]
    )
    assert labelled_months(frame) == ["2025-01", "2025-02"]


def test_empty_history() -> None:
    d = decide(pd.DataFrame(columns=["batch_id"]), [], FRESH)
    assert not d.needed and "no monitoring history yet" in d.reasons[0]


# --------------------------------------------------------------------------- rule (b): alerts


def test_unhandled_drift_alert_names_the_month_and_features() -> None:
    frame = six_months(0)
    frame.loc[frame["batch_id"] == "2025-02", "drifted_features"] = "loan_amount,interest_rate"
    alerts = [
        {
            "batch_id": "2025-02",
            "kind": "drift",
            "message": "dataset drift: 2 feature(s) over PSI 0.2: loan_amount (0.71), interest_rate (1.13)",
        }
    ]
    d = decide(frame, alerts, FRESH)
    assert d.needed
    assert d.unhandled == {"2025-02": ["drift"]}
    assert d.reasons[0] == "alert not acted on yet: 2025-02: drift in loan_amount, interest_rate"
    assert d.acted_on == ["2025-02"]
    assert d.labelled_through is None  # nothing labelled: retrain on the same data


def test_performance_alert_quotes_the_metric() -> None:
    alerts = [
        {"batch_id": "2025-03", "kind": "performance", "message": "ROC AUC 0.651 is 0.102 below the test AUC 0.753"}
    ]
    d = decide(six_months(4), alerts, {"labelled_through": "2025-04", "acted_on": []})
    assert d.needed and d.new_labelled == []
    assert d.reasons == [
        "alert not acted on yet: 2025-03: performance (ROC AUC 0.651 is 0.102 below the test AUC 0.753)"
    ]


def test_alerts_already_acted_on_are_stable() -> None:
    """Monitoring after a retrain recreates the same months and alerts: acted on, so nothing to do."""
    alerts = [
        {"batch_id": "2025-02", "kind": "drift", "message": "m"},
        {"batch_id": "2025-04", "kind": "prediction_drift", "message": "m"},
        {"batch_id": "2025-01", "kind": "calibration", "message": "m"},
    ]
    state = {"labelled_through": "2025-04", "acted_on": ["2025-01", "2025-02", "2025-04"]}
    d = decide(six_months(4), alerts, state)
    assert not d.needed
    assert (
        d.reasons[-1]
        == "no unhandled alerts (last checked batch 2025-06; alerts on 2025-01, 2025-02, 2025-04 already acted on)"
    )
    assert d.acted_on == ["2025-01", "2025-02", "2025-04"]
    # ... until a new month brings a new alert
    d = decide(six_months(4), [*alerts, {"batch_id": "2025-06", "kind": "drift", "message": "m"}], state)
    assert d.needed and list(d.unhandled) == ["2025-06"] and "2025-06" in d.acted_on


def test_data_quality_alerts_do_not_trigger() -> None:
    alerts = [
        {
            "batch_id": "2025-05",
            "kind": "data_quality",
            "message": "'loan_purpose': 248 rows with categories not in the schema",
        }
    ]
    d = decide(six_months(4), alerts, {"labelled_through": "2025-04", "acted_on": []})
    assert not d.needed
    assert any("data-quality alerts on 2025-05 do not trigger a retrain" in r for r in d.reasons)


def test_a_failed_retrain_is_finished() -> None:
    state = {"labelled_through": "2025-04", "acted_on": [], "status": "failed", "build_id": "b1", "decided_at": "t"}
    d = decide(six_months(4), [], state)
    assert d.needed and "build failed (build b1" in d.reasons[0]


def test_decision_is_serialisable() -> None:
    d = decide(six_months(2), [], FRESH)
    assert isinstance(d, RetrainDecision)
    assert json.loads(json.dumps(d.to_dict()))["labelled_through"] == "2025-02"


# --------------------------------------------------------------------------- the state file


def test_state_round_trip_and_defaults(tmp_path: Path) -> None:
    assert load_state(tmp_path) == {"labelled_through": None, "acted_on": []}
    save_state(
        tmp_path,
        {
            "labelled_through": "2025-04",
            "acted_on": ["2025-02"],
            "decided_at": "2026-01-01T00:00:00+00:00",
            "reasons": ["r"],
        },
    )
    assert load_state(tmp_path)["labelled_through"] == "2025-04"
    assert [p.name for p in state_path(tmp_path).parent.iterdir()] == ["retrain.json"]  # no temp file left


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"labelled_through": "April"}', "YYYY-MM"),
        ('{"acted_on": "2025-01"}', "acted_on"),
    ],
)
def test_a_broken_state_file_is_an_error_not_a_reset(tmp_path: Path, text: str, match: str) -> None:
    state_path(tmp_path).parent.mkdir(parents=True)
    state_path(tmp_path).write_text(text)
    with pytest.raises(NbopsError, match=match):
        load_state(tmp_path)


# --------------------------------------------------------------------------- the command, around a stand-in build


@pytest.fixture
def monitored(tmp_path: Path) -> Path:
    """A project copy whose monitor task 'ran': months 2025-01..2025-06 (labels for the first four), alerts, batch "
    "files."""
    project = copy_project(tmp_path / "project")
    root = project / "build" / "test"
    (root / "monitoring").mkdir(parents=True)
    frame = six_months(4)
    frame.loc[frame["batch_id"] == "2025-02", "drifted_features"] = "loan_amount,interest_rate"
    frame.to_parquet(root / "monitoring" / "history.parquet", index=False)
    alerts = [
        {"kind": "drift", "message": "dataset drift: 2 feature(s)", "batch_id": "2025-02"},
        {"kind": "data_quality", "message": "q", "batch_id": "2025-05"},
    ]
    (root / "monitoring" / "alerts.jsonl").write_text("".join(json.dumps(a) + "\n" for a in alerts))
    (root / "data" / "production").mkdir(parents=True)
    for k in range(1, 7):
        (root / "data" / "production" / f"2025-{k:02d}.parquet").write_bytes(b"stand-in")
    return project


def _args(
    project: Path, *, if_needed: bool = True, dry_run: bool = False, sets: list[str] | None = None
) -> argparse.Namespace:
    return argparse.Namespace(
        project=str(project), env="env.test.yaml", set=sets or [], if_needed=if_needed, dry_run=dry_run, no_wait=False
    )


class FakeBuild:
    """Stands in for nbops.pipeline.build.run_build: records its overrides, 'reruns' the training tasks, and
    lets monitoring raise a new alert on an old month (as a retrained model can)."""

    def __init__(
        self, returncode: int = 0, ran: tuple[str, ...] = ("ingest", "features", "train", "evaluate", "register")
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        self.returncode = returncode
        self.ran = set(ran)

    def __call__(self, project: Path, env_file: str = "env.yaml", overrides: dict[str, Any] | None = None, **_: Any):
        from nbops.pipeline.build import TaskOutcome
        from nbops.pipeline.check import check_project

        self.calls.append(dict(overrides or {}))
        checked = check_project(project, env_file, overrides)
        products = {t.name: t.product for t in checked.tasks}
        if self.returncode:
            return self.returncode, [TaskOutcome(t.name, t.name == "ingest", t.product) for t in checked.tasks], checked
        Path(products["register"]["registration"]).parent.mkdir(parents=True, exist_ok=True)
        Path(products["register"]["registration"]).write_text(
            json.dumps(
                {
                    "version": "v0002",
                    "created": True,
                    "promoted": False,
                    "aliases": {"candidate": "v0002", "production": "v0001"},
                    "registry": "reg",
                }
            )
        )
        Path(products["evaluate"]["gate"]).parent.mkdir(parents=True, exist_ok=True)
        Path(products["evaluate"]["gate"]).write_text(
            json.dumps(
                {
                    "promote": False,
                    "reason": "candidate roc_auc 0.7000 vs production 0.7600: worse beyond the tolerance, keep "
                    "production",
                }
            )
        )
        alerts = Path(products["monitor"]["alerts"])
        alerts.write_text(
            alerts.read_text() + json.dumps({"kind": "calibration", "message": "c", "batch_id": "2025-01"}) + "\n"
        )
        return 0, [TaskOutcome(t.name, t.name in self.ran, t.product) for t in checked.tasks], checked


def test_retrain_if_needed_runs_the_build_and_records_what_it_acted_on(
    monitored: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeBuild()
    monkeypatch.setattr("nbops.pipeline.build.run_build", fake)
    assert cmd_retrain(_args(monitored)) == 0
    out = capsys.readouterr().out
    assert fake.calls == [{"labelled_through": "2025-04"}]
    assert (
        "retrain needed: yes" in out
        and "labels arrived for 2025-01..2025-04" in out
        and "2025-02: drift in loan_amount, interest_rate" in out
    )
    assert (
        "Reran 5 of 9 tasks: ingest, features, train, evaluate, register (skipped, up to date: tune, package, "
        "batch_score, monitor)" in out
    )
    assert "registered v0002 as candidate; production stays v0001" in out
    assert "promotion gate: candidate roc_auc 0.7000 vs production 0.7600" in out
    state = load_state(monitored / "build" / "test")
    assert state["labelled_through"] == "2025-04" and state["status"] == "ok"
    # 2025-01's alert came from monitoring during the retrain itself: acted on, not a new trigger
    assert state["acted_on"] == ["2025-01", "2025-02", "2025-03", "2025-04"]
    assert state["reasons"][0].startswith("labels arrived for 2025-01..2025-04")

    # a second --if-needed right away: not needed, no build
    assert cmd_retrain(_args(monitored)) == 0
    out = capsys.readouterr().out
    assert len(fake.calls) == 1
    assert "retrain needed: no" in out and "no new labelled months since 2025-04" in out and "Not retraining." in out


def test_dry_run_runs_and_writes_nothing(
    monitored: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeBuild()
    monkeypatch.setattr("nbops.pipeline.build.run_build", fake)
    assert cmd_retrain(_args(monitored, dry_run=True)) == 0
    assert "Dry run: would run the build with labelled_through=2025-04" in capsys.readouterr().out
    assert fake.calls == [] and not state_path(monitored / "build" / "test").exists()


def test_without_if_needed_the_build_always_runs(
    monitored: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    save_state(monitored / "build" / "test", {"labelled_through": "2025-04", "acted_on": ["2025-02"]})
    fake = FakeBuild()
    monkeypatch.setattr("nbops.pipeline.build.run_build", fake)
    assert cmd_retrain(_args(monitored, if_needed=False)) == 0
    out = capsys.readouterr().out
    assert "retrain needed: no" in out and "forced" in out
    assert fake.calls == [{"labelled_through": "2025-04"}]


def test_an_alert_without_new_labels_records_it_and_explains_the_no_op(
    monitored: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    save_state(monitored / "build" / "test", {"labelled_through": "2025-04", "acted_on": []})
    fake = FakeBuild(ran=())
    monkeypatch.setattr("nbops.pipeline.build.run_build", fake)
    assert cmd_retrain(_args(monitored)) == 0
    out = capsys.readouterr().out
    assert "alert not acted on yet: 2025-02: drift in loan_amount, interest_rate" in out
    assert "Nothing changed" in out and "retraining would reproduce the same model" in out
    assert "register did not run" in out
    assert load_state(monitored / "build" / "test")["acted_on"] == ["2025-01", "2025-02"]


def test_a_failed_build_is_reported_and_retried(
    monitored: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("nbops.pipeline.build.run_build", FakeBuild(returncode=1))
    assert cmd_retrain(_args(monitored)) == 1
    err = capsys.readouterr().err
    assert "The retrain build failed (exit 1); products of the tasks that succeeded are kept" in err
    state = load_state(monitored / "build" / "test")
    assert state["status"] == "failed" and state["labelled_through"] == "2025-04" and state["acted_on"] == []
    fake = FakeBuild()
    monkeypatch.setattr("nbops.pipeline.build.run_build", fake)
    assert cmd_retrain(_args(monitored)) == 0
    assert "retrain needed: yes" in capsys.readouterr().out and len(fake.calls) == 1


def test_a_labelled_month_without_its_file_fails_before_building(
    monitored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (monitored / "build" / "test" / "data" / "production" / "2025-04.parquet").unlink()
    fake = FakeBuild()
    monkeypatch.setattr("nbops.pipeline.build.run_build", fake)
    with pytest.raises(NbopsError, match="labelled_through=2025-04 names a month with no batch file"):
        cmd_retrain(_args(monitored))
    assert fake.calls == []


def test_the_command_line_says_why_not(monitored: Path) -> None:
    save_state(monitored / "build" / "test", {"labelled_through": "2025-04", "acted_on": ["2025-02"]})
    proc = nbops(monitored, "retrain", "--if-needed", "--env", "env.test.yaml")
    assert proc.returncode == 0, output_of(proc)
    assert "retrain needed: no" in proc.stdout
    assert "no unhandled alerts (last checked batch 2025-06; alerts on 2025-02 already acted on)" in proc.stdout
