"""The evaluate stage: test-set metrics, the plots a reviewer expects, SHAP importance and segments.

SHAP values come from LightGBM's own ``pred_contrib`` (exact TreeSHAP), so no extra dependency and no
sampling error beyond the rows chosen for the summary plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm

from nbops.config.params import EvaluateParams
from nbops.data.io import write_json, write_parquet
from nbops.data.schema import TableSchema, outcome_label
from nbops.modeling.metrics import HEADLINE, MEANING, confusion, per_class_metrics, task_metrics
from nbops.runtime.model import LABEL_COLUMN, probability_column
from nbops.runtime.transform import FeatureTransform

PREDICTION = "prediction"


def class_labels(schema: TableSchema) -> tuple[str, str]:
    """The two classes of a binary target in the data's words: ``("default = 0", "default = 1")``.

    The positive class is the schema's ``positive_class`` (a label such as ``yes``), or 1 for a 0/1
    target; the negative is the target's other declared category, or 0.
    """
    negative = "0"
    if schema.positive_class is not None:
        categories = schema.column(schema.target).categories or []
        negative = next((c for c in categories if c != schema.positive_class), f"not {schema.positive_class}")
    return outcome_label(schema.target, "0" if schema.positive_class is None else negative), outcome_label(
        schema.target, schema.positive_class
    )


@dataclass
class Evaluation:
    """Everything the evaluate report shows."""

    metrics: dict[str, float]
    segments: pd.DataFrame
    importance: pd.DataFrame
    predictions: pd.DataFrame
    figures: dict[str, Figure]
    plots: dict[str, Path]
    task_type: str = "binary"
    target: str = ""
    # What the model predicts, in the data's words: "default = 1" (binary) or the target (regression).
    outcome: str = ""
    # A multiclass model's classes (in the order of its outputs), per-class metrics and confusion matrix.
    classes: list[str] = field(default_factory=list)
    per_class: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None

    def describe(self) -> str:
        """One sentence on the rows the metrics are computed on."""
        m = self.metrics
        if self.task_type == "multiclass" and self.per_class is not None:
            top = self.per_class.sort_values("rows", ascending=False).iloc[0]
            return (
                f"Test split: {m['rows']:,} rows in {len(self.classes)} classes of {self.target} "
                f"({', '.join(self.classes)}); the most frequent, {top['class']}, is {top['observed_share']:.1%} of "
                "them (the accuracy of always predicting it)."
            )
        if self.task_type == "binary":
            return (
                f"Test split: {m['rows']:,} rows; observed rate of {self.outcome}: {m['positive_rate']:.4f}; "
                f"mean predicted probability: {m['mean_prediction']:.4f}."
            )
        return (
            f"Test split: {m['rows']:,} rows; mean {self.target}: {m['mean_target']:.4g}; "
            f"mean prediction: {m['mean_prediction']:.4g}."
        )

    def segments_table(self) -> pd.DataFrame:
        """The segment metrics with the columns named for a reader."""
        return segments_table(self.segments, self.task_type, self.outcome or self.target)

    def per_class_table(self) -> pd.DataFrame:
        """Per class (multiclass): rows, precision, recall, F1, one-vs-rest AUC, observed share and
        mean predicted probability, with the columns named for a reader; empty for other tasks."""
        if self.per_class is None:
            return pd.DataFrame()
        return self.per_class.rename(
            columns={
                "class": self.target or "class",
                "roc_auc_ovr": "ROC AUC (one vs rest)",
                "observed_share": "share of test rows",
                "mean_probability": "mean predicted probability",
            }
        )

    def confusion_table(self) -> pd.DataFrame:
        """The confusion matrix (multiclass) as a table: a row per true class, a column per
        predicted class (the most likely), row counts in the cells; empty for other tasks."""
        if self.confusion is None:
            return pd.DataFrame()
        frame = self.confusion.copy()
        frame.insert(0, f"true {self.target}", frame.index.astype(str))
        return frame.rename(columns={c: f"predicted {c}" for c in self.confusion.columns}).reset_index(drop=True)


def evaluate_model(
    params: EvaluateParams,
    *,
    schema: TableSchema,
    transform: FeatureTransform,
    booster: lgb.Booster,
    test_rows: pd.DataFrame,
    out: dict[str, Path],
) -> Evaluation:
    """Score the test split and write metrics, segment metrics, importance, predictions and plots.

    Args:
        out: product paths with keys metrics, segments, importance, predictions, and plots (a folder).
    """
    x = transform.transform(test_rows)
    p = np.asarray(booster.predict(x))  # a dense matrix in, an ndarray out (the union covers sparse input)
    y = schema.target_codes(test_rows[schema.target])
    headline = task_metrics(schema.task_type, y, p)
    derived_categories = [n for n, kind in transform.derived.items() if kind == "categorical"]
    segments = segment_metrics(schema, transform.with_derived(test_rows), p, params, derived_categories)
    sample = _sample(x, params.shap_sample)
    contrib = np.asarray(booster.predict(sample, pred_contrib=True))
    classes = schema.classes
    keep = [c.name for c in schema.by_role("id", "time") if c.name in test_rows.columns]
    predictions = test_rows[keep + [schema.target]].copy()
    outcome = class_labels(schema)[1] if schema.task_type == "binary" else schema.target
    per_class = confusion_frame = None
    if schema.task_type == "multiclass":
        # LightGBM lays a multiclass model's contributions out class after class: (rows, K * (features + 1)).
        contrib = contrib.reshape(len(sample), len(classes), -1)
        importance = shap_importance(contrib, transform.feature_names, classes)
        predictions[LABEL_COLUMN] = pd.array([classes[i] for i in np.argmax(p, axis=1)], dtype="string")
        for i, name in enumerate(classes):
            predictions[probability_column(name)] = p[:, i]
        per_class = pd.DataFrame(per_class_metrics(y, p, classes))
        confusion_frame = pd.DataFrame(
            confusion(y, p, len(classes)), index=pd.Index(classes, name="true"), columns=pd.Index(classes)
        )
        figures = multiclass_figures(y, p, classes, target=schema.target, confusion_counts=confusion_frame)
        figures["shap_importance"] = importance_figure(importance, xlabel="mean |SHAP value|, summed over the classes")
        figures["shap_summary"] = shap_per_class_figure(importance, classes)
    else:
        importance = shap_importance(contrib, transform.feature_names)
        predictions[PREDICTION] = p
        figures = (
            binary_figures(y, p, classes=class_labels(schema))
            if schema.task_type == "binary"
            else regression_figures(y, p, target=schema.target)
        )
        figures["shap_importance"] = importance_figure(importance)
        figures["shap_summary"] = shap_summary_figure(contrib, sample, transform.feature_names)
    report: dict[str, object] = {
        "task_type": schema.task_type,
        "metrics": headline,
        "headline": HEADLINE[schema.task_type],
    }
    if per_class is not None and confusion_frame is not None:
        report["classes"] = classes
        report["per_class"] = per_class.to_dict(orient="records")
        report["confusion"] = confusion_frame.to_numpy().tolist()  # rows: true class, columns: predicted
    write_json(report, out["metrics"])
    write_parquet(segments, out["segments"])
    write_parquet(importance, out["importance"])
    write_parquet(predictions, out["predictions"])
    folder = Path(out["plots"])
    folder.mkdir(parents=True, exist_ok=True)
    plots = {name: folder / f"{name}.png" for name in figures}
    for name, fig in figures.items():
        fig.savefig(plots[name], dpi=200)  # shown at its physical size: sharp on dense screens
    return Evaluation(
        headline,
        segments,
        importance,
        predictions,
        figures,
        plots,
        schema.task_type,
        schema.target,
        outcome,
        classes,
        per_class,
        confusion_frame,
    )


def _sample(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) <= n:
        return x
    idx = np.random.default_rng(0).choice(len(x), size=n, replace=False)
    return x[np.sort(idx)]


def segment_metrics(
    schema: TableSchema,
    rows: pd.DataFrame,
    p: np.ndarray,
    params: EvaluateParams,
    derived_categories: list[str] | None = None,
) -> pd.DataFrame:
    """Metrics per level of each segment column (default: categorical features, derived categorical
    features (``derived_categories``) and the time column). A derived feature named in
    ``segment_columns`` is a segment like a raw column."""
    columns = params.segment_columns or (
        [c.name for c in schema.features if c.kind == "categorical"]
        + list(derived_categories or [])
        + ([schema.time_column] if schema.time_column else [])
    )
    y = schema.target_codes(rows[schema.target])
    frames = []
    for col in columns:
        if col not in rows.columns:
            raise KeyError(f"segment column '{col}' is not in the test rows (columns: {', '.join(rows.columns)})")
        values = rows[col]
        if schema.time_column == col:
            values = pd.to_datetime(values).dt.to_period("M").astype(str)
        values = values.astype("string").fillna("(missing)")
        top = values.value_counts().head(params.max_segments).index
        for level in top:
            mask = (values == level).to_numpy()
            m = task_metrics(schema.task_type, y[mask], p[mask])
            frames.append({"segment": col, "level": str(level), **m})
    return pd.DataFrame(frames)


def shap_importance(contrib: np.ndarray, names: list[str], classes: list[str] | None = None) -> pd.DataFrame:
    """Mean absolute SHAP value per feature (the last column of ``contrib`` is the bias).

    For a multiclass model ``contrib`` is (rows, classes, features + 1): each class's mean absolute
    SHAP value is a column ``mean_abs_shap__<class>`` and ``mean_abs_shap`` is their sum (the length
    of the feature's stacked bar in the per-class figure).
    """
    if contrib.ndim == 3:
        per_class = np.abs(contrib[:, :, :-1]).mean(axis=0)  # (classes, features)
        frame = pd.DataFrame({"feature": names, "mean_abs_shap": per_class.sum(axis=0)})
        for i, name in enumerate(classes or [str(i) for i in range(per_class.shape[0])]):
            frame[f"mean_abs_shap__{name}"] = per_class[i]
        return frame.sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    mean_abs = np.abs(contrib[:, :-1]).mean(axis=0)
    return pd.DataFrame({"feature": names, "mean_abs_shap": mean_abs}).sort_values(
        "mean_abs_shap", ascending=False, ignore_index=True
    )


def importance_figure(importance: pd.DataFrame, top: int = 20, xlabel: str = "mean |SHAP value|") -> Figure:
    data = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(6, 0.28 * len(data) + 1.2))
    ax = fig.subplots()
    ax.barh(data["feature"], data["mean_abs_shap"], color="#3b6ea8")
    ax.set_xlabel(xlabel)
    ax.set_title("Feature importance (SHAP)")
    fig.tight_layout()
    return fig


def shap_summary_figure(contrib: np.ndarray, x: np.ndarray, names: list[str], top: int = 15) -> Figure:
    """A beeswarm-style summary: each dot a row, x its SHAP value, colour its feature value's rank."""
    order = np.argsort(np.abs(contrib[:, :-1]).mean(axis=0))[::-1][:top][::-1]
    fig = Figure(figsize=(7, 0.35 * len(order) + 1.2))
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    points = None
    for row, j in enumerate(order):
        values = x[:, j]
        ranks = pd.Series(values).rank(pct=True).to_numpy()
        points = ax.scatter(
            contrib[:, j],
            row + rng.uniform(-0.3, 0.3, len(values)),
            c=np.nan_to_num(ranks, nan=0.5),
            cmap="coolwarm",
            vmin=0,
            vmax=1,
            s=4,
            alpha=0.6,
        )
    ax.set_yticks(range(len(order)), [names[j] for j in order])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("SHAP value (impact on the model output)")
    ax.set_title("SHAP summary")
    if points is not None:
        bar = fig.colorbar(points, ax=ax, ticks=[0, 1], pad=0.02)
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("feature value")
    fig.tight_layout()
    return fig


def binary_figures(
    y: np.ndarray, p: np.ndarray, classes: tuple[str, str] = ("negative", "positive")
) -> dict[str, Figure]:
    """ROC, precision-recall, calibration and score distribution by class.

    Args:
        classes: the negative and positive class in the data's words (``default = 0``, ``default = 1``):
            the calibration axis is the observed rate of the positive class.
    """
    from sklearn.calibration import calibration_curve

    figs: dict[str, Figure] = {}
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    fpr, tpr, _ = skm.roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"AUC {skm.roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    figs["roc"] = fig
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    prec, rec, _ = skm.precision_recall_curve(y, p)
    ax.plot(rec, prec, label=f"AP {skm.average_precision_score(y, p):.3f}")
    ax.axhline(np.mean(y), color="grey", linestyle="--", label=f"base rate {np.mean(y):.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    ax.legend()
    fig.tight_layout()
    figs["precision_recall"] = fig
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    ax.plot(mean_pred, frac_pos, marker="o", label="model")
    hi = max(mean_pred.max(), frac_pos.max())
    ax.plot([0, hi], [0, hi], color="grey", linestyle="--", label="perfect")
    ax.set(xlabel="mean predicted probability", ylabel=f"observed rate of {classes[1]}", title="Calibration (deciles)")
    ax.legend()
    fig.tight_layout()
    figs["calibration"] = fig
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41).tolist()  # matplotlib types bins as a sequence, not an array
    ax.hist(p[y == 0], bins=bins, alpha=0.6, density=True, label=classes[0])
    ax.hist(p[y == 1], bins=bins, alpha=0.6, density=True, label=classes[1])
    ax.set(xlabel=f"predicted probability of {classes[1]}", ylabel="density", title="Score distribution by class")
    ax.legend()
    fig.tight_layout()
    figs["score_distribution"] = fig
    return figs


def shap_per_class_figure(importance: pd.DataFrame, classes: list[str], top: int = 20) -> Figure:
    """SHAP per class: each feature's mean |SHAP value| for each class, stacked (the bar's length is
    the feature's importance over all classes, its parts what it does for each class)."""
    data = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(7, 0.3 * len(data) + 1.6))
    ax = fig.subplots()
    left = np.zeros(len(data))
    colours = _class_colours(len(classes))
    for i, name in enumerate(classes):
        values = data[f"mean_abs_shap__{name}"].to_numpy(dtype=float)
        ax.barh(data["feature"], values, left=left, color=colours[i], label=name)
        left += values
    ax.set_xlabel("mean |SHAP value| per class (raw score of each class)")
    ax.set_title("SHAP per class")
    ax.legend(title="class", fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def _class_colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def multiclass_figures(
    y: np.ndarray, p: np.ndarray, classes: list[str], *, target: str, confusion_counts: pd.DataFrame
) -> dict[str, Figure]:
    """The confusion matrix, one-vs-rest ROC curves and the calibration of each class's probability.

    Args:
        y: each row's class position; p: the (rows, classes) probabilities.
        confusion_counts: rows per (true class, most likely class).
    """
    from sklearn.calibration import calibration_curve

    y = np.asarray(y).astype(int)
    k = len(classes)
    colours = _class_colours(k)
    figs: dict[str, Figure] = {}
    counts = confusion_counts.to_numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # recall of each true class on the diagonal
    size = max(4.0, 0.55 * k + 2.5)
    fig = Figure(figsize=(size + 0.8, size), layout="constrained")  # constrained: room for the labels and the bar
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")  # a fixed aspect defeats the layout
    if k <= 15:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:,}",
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if share[i, j] > 0.6 else "black",
                )
    ax.set_xticks(range(k), classes, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel=f"predicted {target} (most likely class)", ylabel=f"true {target}", title="Confusion matrix")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class's rows")
    figs["confusion_matrix"] = fig
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    for i, name in enumerate(classes):
        positive = y == i
        if positive.any() and not positive.all():
            fpr, tpr, _ = skm.roc_curve(positive, p[:, i])
            ax.plot(fpr, tpr, color=colours[i], label=f"{name} (AUC {skm.roc_auc_score(positive, p[:, i]):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curves (each class vs the rest)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    figs["roc_per_class"] = fig
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    hi = 0.0
    for i, name in enumerate(classes):
        positive = (y == i).astype(float)
        if 0 < positive.sum() < len(positive):
            bins = int(min(10, max(2, positive.sum() // 20)))
            observed, predicted = calibration_curve(positive, p[:, i], n_bins=bins, strategy="quantile")
            ax.plot(predicted, observed, marker="o", markersize=3, color=colours[i], label=name)
            hi = max(hi, float(predicted.max()), float(observed.max()))
    ax.plot([0, hi or 1], [0, hi or 1], color="grey", linestyle="--", label="perfect")
    ax.set(
        xlabel="mean predicted probability of the class",
        ylabel="observed share of the class",
        title="Calibration per class (quantile bins)",
    )
    ax.legend(fontsize="small")
    fig.tight_layout()
    figs["calibration_per_class"] = fig
    return figs


def regression_figures(y: np.ndarray, p: np.ndarray, target: str = "target") -> dict[str, Figure]:
    """Predicted against actual, and residuals against predicted (axes named after the target)."""
    figs: dict[str, Figure] = {}
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.scatter(y, p, s=4, alpha=0.4)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--")
    ax.set(xlabel=f"actual {target}", ylabel=f"predicted {target}", title="Predicted vs actual")
    fig.tight_layout()
    figs["predicted_vs_actual"] = fig
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.scatter(p, y - p, s=4, alpha=0.4)
    ax.axhline(0, color="grey", linestyle="--")
    ax.set(xlabel=f"predicted {target}", ylabel="residual (actual - predicted)", title="Residuals")
    fig.tight_layout()
    figs["residuals"] = fig
    fig = Figure(figsize=(4.5, 3.5))
    ax = fig.subplots()
    ax.hist(y - p, bins=50)
    ax.set(xlabel="residual", ylabel="rows", title="Residual distribution")
    fig.tight_layout()
    figs["residual_distribution"] = fig
    return figs


def metrics_table(metrics: dict[str, float], task_type: str) -> pd.DataFrame:
    """The headline metrics, with what each measures."""
    names = HEADLINE[task_type]
    return pd.DataFrame(
        {
            "metric": names,
            "value": [round(metrics.get(k, float("nan")), 4) for k in names],
            "what it measures": [MEANING.get(k, "") for k in names],
        }
    )


def segments_table(segments: pd.DataFrame, task_type: str, outcome: str) -> pd.DataFrame:
    """Segment metrics for a reader: the headline metrics first, the rates named in the data's words.

    Args:
        outcome: the positive class (``default = 1``) for a binary target, the target's name otherwise.
    """
    names = {
        "positive_rate": f"rate of {outcome}",
        "mean_target": f"mean {outcome}",
        "mean_prediction": "mean prediction",
    }
    order = (
        ["segment", "level", "rows"]
        + [m for m in HEADLINE[task_type] if m in segments.columns]
        + [c for c in names if c in segments.columns]
    )
    frame = segments[[c for c in order if c in segments.columns]].copy()
    if "rows" in frame.columns:
        frame["rows"] = frame["rows"].astype(int)
    return frame.rename(columns=names)
