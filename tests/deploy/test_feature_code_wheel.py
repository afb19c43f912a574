"""Feature code in the registry, the wheel and monitoring, on a tiny registered model (no pipeline):
the wheel carries the module unchanged and checksummed, refuses at build time a module importing what
it does not carry, and monitoring and evaluation see the derived features. The installed wheel and the
REST service are proven in tests/e2e/test_feature_code.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from nbops.config.params import EvaluateParams
from nbops.data.schema import TableSchema
from nbops.deploy.wheel import build_wheel, check_feature_code_imports
from nbops.errors import DataError
from nbops.modeling.evaluate import evaluate_model
from nbops.monitoring.monitor import AlertRules, monitor_batch
from nbops.monitoring.profile import ReferenceProfile
from nbops.runtime.integrity import FEATURE_CODE_FILE, MANIFEST, PROFILE_FILE, IntegrityError, sha256_bytes
from nbops.runtime.model import ScoringModel
from nbops.runtime.transform import FeatureTransform
from tests.support import TinyModel, tiny_registered_model

FEATURES = '''"""Derived features of the simulated credit-risk table."""
import math

import numpy as np
import pandas as pd


def loan_to_income(df: pd.DataFrame) -> pd.Series:
    return df["loan_amount"] / df["annual_income"].where(df["annual_income"] > 0)


def age_band(df: pd.DataFrame) -> pd.Series:
    bands = np.where(df["age"] < 30, "under 30", np.where(df["age"] < 60, "30 to 59", "60 and over"))
    return pd.Series(bands, index=df.index)
'''


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return tiny_registered_model(tmp_path_factory.mktemp("feature-code-model"), rows=3_000, feature_code=FEATURES)


def test_the_registry_version_and_the_wheel_carry_the_module_unchanged_and_checksummed(model: TinyModel):
    manifest = json.loads((model.version.path / MANIFEST).read_text())["files"]
    assert manifest[FEATURE_CODE_FILE] == sha256_bytes(FEATURES.encode())
    with zipfile.ZipFile(model.wheel) as zf:
        assert zf.read(f"{model.package}/artifacts/{FEATURE_CODE_FILE}") == FEATURES.encode()
        assert f"{model.package}/_runtime/derived.py" in zf.namelist()
        shipped = json.loads(zf.read(f"{model.package}/artifacts/{MANIFEST}"))["files"]
    assert shipped[FEATURE_CODE_FILE] == manifest[FEATURE_CODE_FILE]


@pytest.mark.slow  # a fresh interpreter importing the wheel (2 s)
def test_the_wheel_scores_raw_records_with_the_derived_features(model: TinyModel, tmp_path: Path):
    """The wheel on sys.path in a fresh interpreter, with the project folder (which holds a features.py
    that must not be used) as its working directory."""
    (tmp_path / "features.py").write_text("raise SystemExit('the project features.py was imported')\n")
    test = pd.read_parquet(model.splits["test"]).head(50)
    raw = test.drop(columns=["default"])
    raw.to_parquet(tmp_path / "raw.parquet")
    script = (
        "import sys, json, numpy as np, pandas as pd\n"
        f"sys.path.insert(0, {str(model.wheel)!r})\n"
        f"import {model.package} as pkg\n"
        "m = pkg.load()\n"
        "df = pd.read_parquet('raw.parquet')\n"
        "records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} "
        "for r in df.to_dict('records')]\n"
        "print(json.dumps({'frame': m.predict(df).tolist(), 'records': m.predict(records).tolist(), "
        "'one': [float(m.predict_records([r])[0]) for r in records], 'features': m.feature_transform.feature_names}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    version = ScoringModel.from_folder(model.version.path)
    expected = version.booster.predict(version.transform(test))
    assert out["features"][-2:] == ["loan_to_income", "age_band"]
    for key in ("frame", "records", "one"):
        assert np.max(np.abs(np.array(out[key]) - expected)) <= 1e-12, key


def test_a_module_importing_what_the_wheel_does_not_carry_is_refused_when_the_wheel_is_built(tmp_path: Path):
    source = FEATURES.replace("import math\n", "import math\nfrom sklearn.preprocessing import minmax_scale\n")
    model = tiny_registered_model(tmp_path, rows=1_500, rounds=5, feature_code=source, wheel=False)
    with pytest.raises(DataError) as info:
        build_wheel(model.version, tmp_path / "dist")
    text = str(info.value)
    assert text.splitlines()[0] == "the feature code imports a module the scoring wheel does not carry"
    assert (
        f"{FEATURE_CODE_FILE} (the project's features.py, as registered with {model.version.version}), line 3" in text
    )
    assert "found: from sklearn.preprocessing import minmax_scale" in text
    assert "expected: imports of the standard library or the wheel's requirements only (numpy, pandas" in text
    assert "what to do: compute the feature with numpy or pandas instead of 'sklearn'" in text
    assert not list((tmp_path / "dist").glob("*.whl")), "no wheel may be written"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import requests\n", "import requests"),
        ("def f(df):\n    import scipy.stats\n    return df\n", "import scipy.stats"),
        ("from . import helpers\n", "from . import helpers"),
    ],
    ids=["top-level", "inside-a-function", "relative"],
)
def test_every_import_is_checked(source: str, found: str):
    with pytest.raises(DataError, match=f"found: {found}"):
        check_feature_code_imports(source.encode(), "features.py")


def test_the_standard_library_numpy_and_pandas_are_allowed():
    check_feature_code_imports(
        b"import math, re, datetime\nimport numpy as np\nimport pandas as pd\nfrom collections import Counter\n",
        "features.py",
    )


def test_a_changed_module_in_a_version_folder_is_refused_at_load(model: TinyModel, tmp_path: Path):
    copy = shutil.copytree(model.version.path, tmp_path / "version")
    code = copy / FEATURE_CODE_FILE
    code.write_text(code.read_text().replace("< 30", "< 31"))
    with pytest.raises(IntegrityError, match=f"{FEATURE_CODE_FILE}: checksum"):
        ScoringModel.from_folder(copy)


# -- monitoring and evaluation see the derived features ---------------------------------------------------


def test_the_reference_profile_has_the_derived_features(model: TinyModel):
    profile = json.loads((model.version.path / PROFILE_FILE).read_text())
    assert "loan_to_income" in profile["numeric"] and "age_band" in profile["categorical"]
    assert set(profile["categorical"]["age_band"]["levels"]) >= {"under 30", "30 to 59"}


def test_drift_of_a_derived_feature_is_measured_from_a_raw_batch(model: TinyModel):
    m = ScoringModel.from_folder(model.version.path)
    profile = ReferenceProfile.from_dict(json.loads((model.version.path / PROFILE_FILE).read_text()))
    batch = pd.read_parquet(model.splits["test"]).drop(columns=["default"])
    assert "loan_to_income" not in batch.columns  # a production batch holds raw columns only
    same = monitor_batch(
        "same", batch, model=m, profile=profile, reference_metrics=m.metadata["metrics"], rules=AlertRules()
    )
    shifted = batch.assign(annual_income=batch["annual_income"] / 4)  # incomes fall: the ratio quadruples
    moved = monitor_batch(
        "moved", shifted, model=m, profile=profile, reference_metrics=m.metadata["metrics"], rules=AlertRules()
    )
    assert same.drift is not None and moved.drift is not None
    assert "loan_to_income" not in same.drift.missing_columns and "psi__loan_to_income" in same.row
    assert moved.row["psi__loan_to_income"] > 0.25 > same.row["psi__loan_to_income"]
    assert "loan_to_income" in moved.drift.drifted
    assert "psi__age_band" in moved.row


@pytest.mark.slow  # the evaluate stage draws its figures (2 s)
def test_shap_importance_and_segments_include_the_derived_features(model: TinyModel, tmp_path: Path):
    test = pd.read_parquet(model.splits["test"])
    transform = FeatureTransform.load(model.transform_file)
    evaluation = evaluate_model(
        EvaluateParams(tracking="disabled", shap_sample=200),
        schema=TableSchema.load(model.schema_file),
        transform=transform,
        booster=lgb.Booster(model_str=(model.version.path / "model.txt").read_text()),
        test_rows=test,  # raw columns: the transform computes the derived ones
        out={
            "metrics": tmp_path / "metrics.json",
            "segments": tmp_path / "segments.parquet",
            "importance": tmp_path / "importance.parquet",
            "predictions": tmp_path / "predictions.parquet",
            "plots": tmp_path / "plots",
        },
    )
    importance = evaluation.importance.set_index("feature")["mean_abs_shap"]
    assert {"loan_to_income", "age_band"} <= set(importance.index)
    assert len(importance) == len(transform.feature_names)
    bands = evaluation.segments[evaluation.segments["segment"] == "age_band"]
    assert set(bands["level"]) >= {"under 30", "30 to 59"}
    assert int(bands["rows"].sum()) == len(test)
