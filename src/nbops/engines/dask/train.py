"""Training with ``lightgbm.dask``: the train stage's products, from data spread over a Dask cluster.

The products are those of :func:`nbops.modeling.train.train_model` (the LightGBM text model trimmed
to its best iteration, the summary JSON with the booster parameters, the curves for the learning
curve), so evaluate, register and package do not know which engine trained. The same
:class:`~nbops.runtime.transform.FeatureTransform` turns each partition into the feature matrix on
the worker that holds it, so training and scoring share one transform.

How it differs from the pandas engine, and why:

* **Early stopping.** ``lightgbm.dask`` (4.7) cannot stop early: each worker evaluates only its own
  shard of the validation set, so the workers would disagree about when to stop and the ones left
  waiting hang (LightGBM issues #3712, #4392, #6963). Here every worker records its local metric
  and its shard size at each round; the client combines them into the *global* validation curve
  (exact for the additive first metric, binary log loss or L2) and applies LightGBM's early-stopping
  rule to it afterwards. All ``num_boost_round`` trees are trained, then the saved model is cut at the
  best iteration, which is the iteration early stopping would have kept. ``trees_trained`` in the
  summary says how many were trained; ``early_stopping_round`` where training would have stopped.
* **Validation metrics.** The summary's ``valid_*`` values are computed on the client from the
  trimmed model's predictions on the whole validation set (the curves' AUC is a shard-size weighted
  mean of per-worker AUCs, an approximation; the summary's AUC is exact).
* **Determinism.** Data-parallel LightGBM finds the feature bins from each worker's shard, so the
  trees differ slightly from single-machine training on the same rows: metrics agree within the
  tolerance the tests state, models are not byte-identical to the pandas engine's. Partitions are
  placed on the workers in a fixed order (partition i on the i-th worker by name, round robin) and
  LightGBM runs with ``deterministic=True``, and the workers' network ranks follow their names (see
  ``_PartitionOrderClient``), so retraining on the same cluster layout gives the same model, in the
  same process or another; another number of workers gives another (equally valid) model. The random network ports
  LightGBM used are removed from the saved model's parameters so they do not make files differ.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

from nbops.config.params import TrainParams
from nbops.data.io import write_json
from nbops.data.schema import TableSchema
from nbops.files import write_text
from nbops.modeling.train import TrainResult, booster_params, lightgbm_feature_names
from nbops.progress import Progress
from nbops.runtime.transform import FeatureTransform

if TYPE_CHECKING:
    from distributed import Client

_RECORDS: dict[str, list[tuple[int, list[tuple[str, str, float, bool]], dict[str, int]]]] = {}
_RECORDS_LOCK = threading.Lock()
ADDITIVE_METRICS = ("binary_logloss", "l2", "l1")  # means over rows: shard means combine exactly
# LightGBM parameter -> the scikit-learn estimator argument of the same meaning (avoids alias warnings)
_SKLEARN_NAMES = {
    "min_data_in_leaf": "min_child_samples",
    "feature_fraction": "colsample_bytree",
    "bagging_fraction": "subsample",
    "bagging_freq": "subsample_freq",
    "lambda_l2": "reg_lambda",
    "seed": "random_state",
}
_NETWORK_LINES = ("[machines:", "[local_listen_port:")


# --------------------------------------------------------------------------- on the workers


class _Recorder:
    """LightGBM callback run on every worker: its local evaluation results and shard sizes per round."""

    order = 30
    before_iteration = False

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        model = env.model
        sizes = {
            name: int(ds.num_data())
            for name, ds in zip(getattr(model, "name_valid_sets", []), getattr(model, "valid_sets", []), strict=False)
        }
        results = [(str(r[0]), str(r[1]), float(r[2]), bool(r[3])) for r in env.evaluation_result_list or []]
        with _RECORDS_LOCK:
            _RECORDS.setdefault(self.token, []).append((env.iteration, results, sizes))


def _rounds_done(token: str) -> int:
    with _RECORDS_LOCK:
        return len(_RECORDS.get(token, []))


def _take_records(token: str) -> list[Any]:
    with _RECORDS_LOCK:
        return _RECORDS.pop(token, [])


def _quiet_lightgbm() -> None:
    """Silence LightGBM's network set-up on a worker (ports, ranks, "connecting to rank 1 failed,
    waiting"): printed to the worker's stdout, which a Jupyter kernel's local cluster shares with the
    executed notebook. LightGBM keeps its C++ log level per thread, so this runs as a task in the
    worker's task thread (the one that trains: one thread per worker) and sets the level there by
    building a two-row dataset with ``verbosity=-1``; Python-side messages go to the ``lightgbm``
    logger at ERROR. Errors still raise."""
    import logging

    logger = logging.getLogger("lightgbm")
    logger.setLevel(logging.ERROR)
    lgb.register_logger(logger)
    lgb.Dataset(np.zeros((2, 1)), label=np.array([0.0, 1.0]), params={"verbosity": -1}).construct()


def _matrix_and_label(part: pd.DataFrame, transform: dict[str, Any], target: str) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix (the one transform) and the label of one partition."""
    x = FeatureTransform.from_dict(transform).transform(part)
    return x, part[target].to_numpy(dtype=np.float64, na_value=np.nan)


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, Any]) -> Any:
    return pair[1]


def _predict_matrix(x: np.ndarray, model_text: str) -> np.ndarray:
    from nbops.engines.dask.work import cached_booster

    booster = cached_booster(model_text)
    return np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)


# --------------------------------------------------------------------------- on the client


class _PartitionOrderClient:
    """The client, except that ``who_has`` answers in the order of the futures it is asked about.

    Why: lightgbm.dask ranks its workers (and concatenates each worker's parts) in the order
    ``Client.who_has`` answers, and that method builds its key list from a set, whose order changes
    from one Python process to the next (string hashing is randomised). The network rank decides
    which worker finds which features' bins, so the model changed between runs. Asked in partition
    order, with partitions placed round robin by worker name, the ranks follow the worker names.
    Everything else is the client itself.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def who_has(self, futures: Any = None, **kwargs: Any) -> Any:
        answer = self._client.who_has(futures, **kwargs)
        if futures is None:
            return answer
        order = {f.key: i for i, f in enumerate(futures)}
        return dict(sorted(answer.items(), key=lambda item: order.get(item[0], len(order))))


@dataclass
class _Shards:
    """A split's matrix and label as dask arrays whose chunks live on fixed workers."""

    x: Any
    y: Any
    x_futures: list[Any]
    y_futures: list[Any]
    rows: int


def _shards(client: Client, path: Path, transform: FeatureTransform, target: str, workers: list[str]) -> _Shards:
    import dask
    import dask.array as da

    from nbops.engines.dask.parquet import frame, plan_pieces

    pieces = plan_pieces(path, min_pieces=len(workers), max_rows=1_000_000)
    columns = [*transform.raw_names, target]  # the transform computes derived features from the raw ones
    parts = frame(path, pieces, columns).to_delayed()
    build = dask.delayed(_matrix_and_label, pure=True)
    pairs = [
        client.compute(build(part, transform.to_dict(include_code=True), target), workers=[workers[i % len(workers)]])
        for i, part in enumerate(parts)
    ]
    x_futures = [client.submit(_first, f, workers=[workers[i % len(workers)]]) for i, f in enumerate(pairs)]
    y_futures = [client.submit(_second, f, workers=[workers[i % len(workers)]]) for i, f in enumerate(pairs)]
    n_features = len(transform.feature_names)
    x = da.concatenate(
        [
            da.from_delayed(dask.delayed(f), shape=(p.rows, n_features), dtype=np.float64)
            for f, p in zip(x_futures, pieces, strict=True)
        ]
    )
    y = da.concatenate(
        [
            da.from_delayed(dask.delayed(f), shape=(p.rows,), dtype=np.float64)
            for f, p in zip(y_futures, pieces, strict=True)
        ]
    )
    del pairs  # the x and y futures keep what they need
    return _Shards(x, y, x_futures, y_futures, sum(p.rows for p in pieces))


def early_stopping_point(curve: list[float], rounds: int, higher_is_better: bool) -> tuple[int, int]:
    """``(best iteration, round training stops at)``, both 1-based, as ``lgb.early_stopping`` decides."""
    best_score = -float("inf") if higher_is_better else float("inf")
    best = 0
    for i, score in enumerate(curve):
        if (score > best_score) if higher_is_better else (score < best_score):
            best_score, best = score, i
        elif i - best >= rounds:
            return best + 1, i + 1
    return best + 1, len(curve)


def combine_records(per_worker: dict[str, list[Any]]) -> tuple[dict[str, dict[str, list[float]]], dict[str, bool]]:
    """The global curves from every worker's local records: shard-size weighted means per round."""
    sums: dict[tuple[str, str], dict[int, list[float]]] = {}
    higher: dict[str, bool] = {}
    for records in per_worker.values():
        for iteration, results, sizes in records:
            for data, metric, value, is_higher in results:
                weight = float(sizes.get(data, 0))
                if weight == 0:
                    continue
                acc = sums.setdefault((data, metric), {}).setdefault(iteration, [0.0, 0.0])
                acc[0] += value * weight
                acc[1] += weight
                higher[metric] = is_higher
    history: dict[str, dict[str, list[float]]] = {}
    for (data, metric), by_round in sums.items():
        history.setdefault(data, {})[metric] = [by_round[i][0] / by_round[i][1] for i in sorted(by_round)]
    return history, higher


def strip_network_params(model_text: str) -> str:
    """Remove the random ports LightGBM's network used from the model's parameter block."""
    return "".join(line for line in model_text.splitlines(keepends=True) if not line.startswith(_NETWORK_LINES))


def validation_metrics(task_type: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The booster's metrics on the whole validation set, computed as LightGBM computes them."""
    if task_type == "binary":
        from sklearn.metrics import roc_auc_score

        eps = 1e-15  # LightGBM's kEpsilon
        loss = -(y * np.log(np.maximum(p, eps)) + (1 - y) * np.log(np.maximum(1 - p, eps)))
        return {"valid_binary_logloss": float(loss.mean()), "valid_auc": float(roc_auc_score(y, p))}
    return {"valid_l2": float(np.mean((p - y) ** 2)), "valid_l1": float(np.mean(np.abs(p - y)))}


def train_model_dask(
    client: Client,
    params: TrainParams,
    *,
    schema: TableSchema,
    transform: FeatureTransform,
    train_rows: Path,
    valid_rows: Path,
    model_out: Path,
    summary_out: Path,
) -> TrainResult:
    """Train with ``lightgbm.dask`` on the train split (Parquet), choose the best iteration on the
    validation split, and write the pandas engine's products (see the module doc for the differences).

    Returns:
        The booster (trimmed to its best iteration), the global learning curves and a summary.
    """
    from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

    from nbops.engines.dask.cluster import describe, workers_in_order

    lgb_params = booster_params(params, schema.task_type)
    workers = workers_in_order(client)
    cluster = describe(client)
    train = _shards(client, Path(train_rows), transform, schema.target, workers)
    valid = _shards(client, Path(valid_rows), transform, schema.target, workers)
    estimator_params = {_SKLEARN_NAMES.get(k, k): v for k, v in lgb_params.items() if k != "num_threads"}
    estimator_params.update(n_estimators=params.num_boost_round, tree_learner="data")
    estimator_cls = DaskLGBMClassifier if schema.task_type == "binary" else DaskLGBMRegressor
    # The proxy is the client for every attribute but who_has (it delegates through __getattr__).
    estimator = estimator_cls(client=cast("Client", _PartitionOrderClient(client)), **estimator_params)
    token = uuid.uuid4().hex
    failure: list[BaseException] = []
    client.gather([client.submit(_quiet_lightgbm, pure=False, workers=[w]) for w in workers])

    def fit() -> None:
        try:
            # lightgbm.dask waits on futures through distributed's default client: make ours current
            # in this thread only (the client is not the process-wide default, see nbops.engines.dask.cluster).
            # lightgbm.dask says it ignores n_jobs (it sets one thread per worker thread itself) and
            # prints its port search to stdout, which would land in the executed notebook: both are noise.
            with client.as_current(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                estimator.fit(
                    train.x,
                    train.y,
                    # lightgbm annotates these as one-element tuples; it takes a tuple of any length
                    eval_X=(train.x, valid.x),  # type: ignore[arg-type]
                    eval_y=(train.y, valid.y),  # type: ignore[arg-type]
                    eval_names=["train", "valid"],
                    feature_name=lightgbm_feature_names(transform.feature_names),
                    categorical_feature=transform.categorical_indices,
                    callbacks=[_Recorder(token)],
                )
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    started = time.perf_counter()
    thread = threading.Thread(target=fit, name="nbops-lightgbm-dask", daemon=True)
    thread.start()
    with Progress(params.num_boost_round, f"boosting on {len(workers)} Dask workers", unit="tree") as bar:
        while thread.is_alive():
            thread.join(0.5)
            try:
                done = max(client.run(_rounds_done, token).values(), default=0)
            except Exception:  # progress is best effort
                continue
            bar.set(min(done, params.num_boost_round))
    records = client.run(_take_records, token)
    if failure:
        raise RuntimeError(
            f"lightgbm.dask training on the Dask cluster at {cluster['scheduler']} failed: {failure[0]}"
        ) from failure[0]
    seconds = time.perf_counter() - started

    history, higher = combine_records(records)
    first_metric = lgb_params["metric"][0]
    best, stop_round = early_stopping_point(
        history["valid"][first_metric], params.early_stopping_rounds, higher[first_metric]
    )
    model_text = strip_network_params(estimator.booster_.model_to_string(num_iteration=best))
    write_text(model_text, model_out)
    booster = lgb.Booster(model_file=str(model_out))

    # Exact validation metrics of the saved model, on every validation row.
    predictions = [
        client.submit(_predict_matrix, f, model_text, workers=[workers[i % len(workers)]])
        for i, f in enumerate(valid.x_futures)
    ]
    p = np.concatenate(client.gather(predictions))
    y = np.concatenate(client.gather(valid.y_futures))
    client.cancel(predictions + train.x_futures + train.y_futures + valid.x_futures + valid.y_futures)

    trained = len(history["valid"][first_metric])
    params_out = {
        **lgb_params,
        "num_threads": cluster["threads"] // max(cluster["workers"], 1),
        "tree_learner": "data",
        "num_machines": len(workers),
    }
    summary = {
        "best_iteration": int(best),
        "trees_trained": int(trained),
        "early_stopping_round": int(stop_round),
        "num_threads": params_out["num_threads"],
        "train_rows": train.rows,
        "valid_rows": valid.rows,
        "features": transform.feature_names,
        **validation_metrics(schema.task_type, y, p),
        "engine": "dask",
        "dask_workers": cluster["workers"],
        "dask_threads": cluster["threads"],
        "dask_scheduler": cluster["scheduler"],
        "training_seconds": round(seconds, 3),
    }
    write_json(
        {
            "summary": summary,
            "booster_params": params_out,
            "early_stopping": "chosen after training on the global validation curve (lightgbm.dask cannot stop early)",
        },
        summary_out,
    )
    return TrainResult(booster, int(best), history, params_out, summary)
