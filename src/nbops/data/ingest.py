"""The ingest stage: read the raw table, validate it against its schema, store valid and quarantined rows.

Nothing is lost: every input row ends up either in the valid table or in the quarantine file with its
reason, and the counts are checked to add up before anything is written.

Continuous training (``nbops retrain``) sets ``labelled_through``: the monitored production months up
to that one whose labels have arrived are appended to the training data, through the same validation
and quarantine as the main table, and the summary names every month added.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.config.params import IngestParams
from nbops.data.io import SUPPORTED_SUFFIXES, file_sha256, read_table, write_json, write_parquet
from nbops.data.profile import fingerprint, profile_table
from nbops.data.schema import ColumnSpec, TableSchema, infer_schema
from nbops.data.validate import ROW_COLUMN, ValidationResult, validate_table
from nbops.errors import ConfigError, DataError, format_rows

log = logging.getLogger(__name__)
SIMULATED_DATASET = "credit_risk"
# A production batch is a month: its file is named <YYYY-MM>.<csv|parquet|pq> (how monitor stores them).
MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
BATCH_SUFFIXES = SUPPORTED_SUFFIXES
# Which table a quarantined row came from, when labelled batches join: "main" or the batch's month.
BATCH_COLUMN = "_batch"
MAIN_BATCH = "main"


@dataclass(frozen=True)
class LabelledBatch:
    """One labelled production month appended to the training data (recorded in the summary)."""

    month: str
    file: str
    sha256: str
    rows_read: int
    rows_valid: int
    rows_quarantined: int


@dataclass
class IngestResult:
    """What ingest produced, for the report and for the next stages."""

    source: str
    schema: TableSchema
    schema_path: Path
    schema_created: bool
    validation: ValidationResult
    fingerprint: str
    source_sha256: str
    profile: dict[str, Any]
    # None unless labelled_through was set: then the months appended (and months skipped, with why).
    labelled_through: str | None = None
    labelled: list[LabelledBatch] | None = None
    labelled_skipped: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        v = self.validation
        out = {
            "source": self.source,
            "source_sha256": self.source_sha256,
            "dataset": self.schema.dataset,
            "schema_file": str(self.schema_path),
            "schema_created": self.schema_created,
            "target": self.schema.target,
            "task_type": self.schema.task_type,
            "time_column": self.schema.time_column,
            "rows_read": v.n_rows,
            "rows_valid": len(v.valid),
            "rows_quarantined": v.n_quarantined,
            "quarantine_reasons": v.reasons.to_dict(orient="records"),
            "fingerprint": self.fingerprint,
        }
        if self.labelled is not None:
            # Only with labelled batches: without them the summary is byte-identical to before.
            out["labelled_through"] = self.labelled_through
            out["labelled_months"] = [b.month for b in self.labelled]
            out["labelled_rows_read"] = sum(b.rows_read for b in self.labelled)
            out["labelled_rows_added"] = sum(b.rows_valid for b in self.labelled)
            out["labelled_batches"] = [b.__dict__ for b in self.labelled]
            out["labelled_skipped"] = self.labelled_skipped
        return out


def dataset_name(params: IngestParams) -> str:
    """'credit_risk' for the simulator, otherwise the data file's stem."""
    return SIMULATED_DATASET if params.data == "simulate" else Path(params.data).stem


def schema_path(params: IngestParams, project: Path) -> Path:
    """Where the dataset's schema file lives: ``schemas/<dataset>.schema.yaml`` unless set."""
    if params.schema_file != "auto":
        return (project / params.schema_file).resolve()
    return project / "schemas" / f"{dataset_name(params)}.schema.yaml"


def simulator_schema() -> TableSchema:
    """The simulator's declared schema, as a :class:`TableSchema`."""
    from nbops.data.simulate import ID_COLUMN, TARGET, TIME_COLUMN, declared_schema

    columns = []
    for c in declared_schema()["columns"]:
        kind = {"id": "text"}.get(c["kind"], c["kind"])
        columns.append(
            ColumnSpec(
                name=c["name"],
                kind=kind,
                role=c["role"],
                nullable=c["nullable"],
                min=c.get("min"),
                max=c.get("max"),
                categories=c.get("categories"),
            )
        )
    assert any(c.name == ID_COLUMN for c in columns)
    return TableSchema(SIMULATED_DATASET, TARGET, "binary", columns, time_column=TIME_COLUMN)


def load_source(params: IngestParams, project: Path, raw_out: Path) -> tuple[pd.DataFrame, str]:
    """Read the raw table (or simulate it) and keep a Parquet snapshot of exactly what was read."""
    if params.data == "simulate":
        from nbops.data.simulate import simulate_history, write_simulation

        df, truth = simulate_history(rows=params.rows, seed=params.seed)
        write_simulation(df, truth, raw_out)
        return df, f"simulate(rows={params.rows}, seed={params.seed})"
    path = Path(params.data)
    path = path if path.is_absolute() else (project / path)
    df = read_table(path)
    write_parquet(df, raw_out)
    # As the user named it: relative to the project when inside it (no machine's path in the lineage,
    # the model card or the reports).
    return df, str(path.relative_to(project)) if path.is_relative_to(project) else str(path)


def ingest(
    params: IngestParams,
    *,
    project: Path,
    raw: Path,
    valid: Path,
    quarantine: Path,
    summary: Path,
    profile: Path,
) -> IngestResult:
    """Run the ingest stage and write its products.

    Args:
        params: typed ingest parameters.
        project: the project folder (schemas/ lives there).
        raw, valid, quarantine, summary, profile: product paths.

    Returns:
        The ingest result, for display.

    Raises:
        DataError: the table cannot be used, or more rows than ``max_quarantine_fraction`` are bad
            (the quarantine file is written first, so the rows can be inspected).
    """
    df, source = load_source(params, project, raw)
    # Errors name the file as the filesystem sees it; the summary, as the user named it.
    source_file = (
        str(Path(params.data) if Path(params.data).is_absolute() else project / params.data)
        if params.data != "simulate"
        else str(raw)
    )
    path = schema_path(params, project)
    created = False
    if path.exists():
        schema = TableSchema.load(path)
        if schema.target != params.target:
            raise DataError(
                "the schema file names a different target",
                file=str(path),
                column=params.target,
                expected=f"target: {params.target} (from the settings)",
                found=f"target: {schema.target}",
                hint="edit the schema file's target, or delete the file so it is inferred again",
            )
    else:
        if params.data == "simulate":
            schema = simulator_schema()
        else:
            schema = infer_schema(
                df,
                dataset=dataset_name(params),
                target=params.target,
                task_type=params.task_type,
                time_column=params.time_column or "none",
                id_columns=params.id_columns,
                pii_columns=params.pii_columns,
                file=source_file,
            )
        schema.save(path)
        created = True
        log.info("wrote the schema to %s: review and edit it, it is used from now on", path)
    _apply_settings(schema, params)
    result = validate_table(df, schema, file=source_file)
    assert len(result.valid) + result.n_quarantined == len(df), "rows lost in validation"
    through = normalise_month(params.labelled_through)
    labelled: list[LabelledBatch] | None = None
    skipped: list[dict[str, str]] = []
    if through is not None:
        result, labelled, skipped = append_labelled_batches(
            result, schema, folder=_folder(params.labelled_batches, project), through=through
        )
        source += f" + labelled production months {_month_span([b.month for b in labelled])}" if labelled else ""
    write_parquet(result.quarantine, quarantine)
    write_parquet(result.valid, valid)
    prof = profile_table(result.valid, schema)
    write_json(prof, profile)
    out = IngestResult(
        source,
        schema,
        path,
        created,
        result,
        fingerprint(result.valid),
        file_sha256(raw),
        prof,
        through,
        labelled,
        skipped,
    )
    write_json(out.summary(), summary)
    if result.n_quarantined:
        top = result.reasons.iloc[0]
        where = next((b.file for b in labelled or [] if b.month == top.get("batch")), source_file)
        log.warning(
            "%s: quarantined %d of %d rows (%s); most common: column '%s', %s, rows %s",
            where,
            result.n_quarantined,
            result.n_rows,
            quarantine,
            top["column"],
            top["problem"],
            top["first_rows"],
        )
    share = result.n_quarantined / result.n_rows
    if share > params.max_quarantine_fraction:
        bad_rows = result.quarantine["_row"].tolist()
        bad_files = source_file
        if labelled:
            # Row numbers restart in each file: name every file that holds quarantined rows.
            in_batches = sum(b.rows_quarantined for b in labelled)
            bad_files = ", ".join(
                ([source_file] if result.n_quarantined > in_batches else [])
                + [b.file for b in labelled if b.rows_quarantined]
            )
        raise DataError(
            f"{share:.0%} of rows failed validation, more than "
            f"max_quarantine_fraction={params.max_quarantine_fraction:g}",
            file=bad_files,
            column=str(result.reasons.iloc[0]["column"]),
            rows=bad_rows,
            expected="values that match the schema " + str(path),
            found="; ".join(
                (f"{r.batch}: " if labelled else "") + f"{r.column}: {r.problem} ({r.rows} rows)"
                for r in result.reasons.head(5).itertuples()
            ),
            hint=f"inspect {quarantine} (every bad row with its reason), then fix the data or the schema; rows "
            f"{format_rows(bad_rows, 3)} are the first",
        )
    return out


def _apply_settings(schema: TableSchema, params: IngestParams) -> None:
    """Settings win over the schema file for id/pii marks, so a user can protect a column from env.yaml."""
    for col in schema.columns:
        if col.name in params.pii_columns:
            col.role, col.kind = "pii", "text"
            col.categories = col.min = col.max = None  # nothing about its values is kept
        elif col.name in params.id_columns and col.role != "target":
            col.role = "id"


# --------------------------------------------------------------------------- labelled production batches


def normalise_month(value: str | None) -> str | None:
    """``labelled_through`` as 'YYYY-MM', or None when unset (null, '', 'none': how YAML and Ploomber render it).

    Raises:
        ConfigError: a value that is not a month.
    """
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() in ("", "none", "null"):
        return None
    if not MONTH_PATTERN.match(text):
        raise ConfigError(
            f"labelled_through: expected a month 'YYYY-MM' (or none), found {value!r}; "
            "`nbops retrain` sets it from the monitoring history, or pass --set labelled_through=2025-04"
        )
    return text


def _folder(value: str, project: Path) -> Path:
    folder = Path(value)
    return folder if folder.is_absolute() else project / folder


def _month_span(months: list[str]) -> str:
    return months[0] if len(months) == 1 else f"{months[0]}..{months[-1]} ({len(months)} months)"


def labelled_batch_files(folder: Path, through: str) -> list[tuple[str, Path]]:
    """(month, file) of every production batch named ``YYYY-MM.<csv|parquet|pq>`` up to ``through``, in order.

    Other files (the simulator's ``.truth.json`` sidecars, serving logs) are not months and are left alone.

    Raises:
        DataError: the folder does not exist, or it has no file for the month ``through`` names
            (asking for labels through a month that was never monitored is a mistake, not a no-op).
    """
    if not folder.is_dir():
        raise DataError(
            "the folder of labelled production batches does not exist",
            file=str(folder),
            expected=f"monitored production months (YYYY-MM.parquet) up to labelled_through={through}",
            hint="run the pipeline first (the monitor task stores each month there), or set labelled_through to none",
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in BATCH_SUFFIXES and MONTH_PATTERN.match(path.stem):
            if path.stem in found:
                raise DataError(
                    "two files hold the same production month",
                    file=f"{found[path.stem]}, {path}",
                    expected="one file per month",
                    hint="delete one of them",
                )
            found[path.stem] = path
    if through not in found:
        months = sorted(found)
        raise DataError(
            f"labelled_through={through} names a month with no batch file",
            file=str(folder / f"{through}.parquet"),
            expected=f"a file {through}.parquet (or .csv, .pq) in {folder}",
            found=f"months {', '.join(months)}" if months else "no month files",
            hint="set labelled_through to a month that was monitored (or none); `nbops retrain --if-needed --dry-run` "
            "says which months have labels",
        )
    return [(m, found[m]) for m in sorted(found) if m <= through]


def append_labelled_batches(
    main: ValidationResult, schema: TableSchema, *, folder: Path, through: str
) -> tuple[ValidationResult, list[LabelledBatch], list[dict[str, str]]]:
    """Validate each labelled month like the main table and append its rows to the training data.

    Why per month: a bad row is quarantined with its own file, row number and month, so a reader can
    find it; and a month whose labels have not arrived (no target column, or every target empty) is
    skipped and recorded, never half-used. The month ``through`` itself must carry labels.

    Returns:
        The combined validation (valid rows: main then months in order; quarantine with a
        ``_batch`` column, 'main' or the month), the months appended, and the months skipped with why.

    Raises:
        DataError: the month ``through`` has no labels, or a batch fails a whole-table check (a
            missing or undeclared column), naming its file.
    """
    batches: list[LabelledBatch] = []
    skipped: list[dict[str, str]] = []
    valids = [main.valid]
    quarantines = [_tag(main.quarantine, MAIN_BATCH, 1)]
    reasons = [_tag(main.reasons, MAIN_BATCH, 0, name="batch")]
    n_rows = main.n_rows
    for month, path in labelled_batch_files(folder, through):
        df = read_table(path)
        if schema.target not in df.columns or df[schema.target].isna().all():
            why = f"no labels yet: {'no' if schema.target not in df.columns else 'an empty'} '{schema.target}' column"
            if month == through:
                raise DataError(
                    f"labelled_through={through} names a month whose labels have not arrived",
                    file=str(path),
                    column=schema.target,
                    expected=f"the outcome column '{schema.target}' filled in",
                    found=why,
                    hint="set labelled_through to an earlier month, or add the labels to the file",
                )
            skipped.append({"month": month, "file": str(path), "reason": why})
            log.warning("%s: %s; not added to the training data", path, why)
            continue
        checked = validate_table(df, schema, file=str(path))
        assert len(checked.valid) + checked.n_quarantined == len(df), "rows lost in validation"
        valids.append(checked.valid)
        quarantines.append(_tag(checked.quarantine, month, 1))
        reasons.append(_tag(checked.reasons, month, 0, name="batch"))
        n_rows += len(df)
        batches.append(
            LabelledBatch(month, str(path), file_sha256(path), len(df), len(checked.valid), checked.n_quarantined)
        )
        log.info("%s: %d labelled rows added, %d quarantined", month, len(checked.valid), checked.n_quarantined)
    combined = ValidationResult(
        valid=pd.concat(valids, ignore_index=True),
        quarantine=pd.concat(quarantines, ignore_index=True) if any(len(q) for q in quarantines) else quarantines[0],
        reasons=pd.concat([r for r in reasons if len(r)] or reasons[:1], ignore_index=True),
        n_rows=n_rows,
    )
    assert len(combined.valid) + combined.n_quarantined == combined.n_rows, "rows lost appending labelled batches"
    return combined, batches, skipped


def _tag(frame: pd.DataFrame, batch: str, position: int, name: str = BATCH_COLUMN) -> pd.DataFrame:
    """A copy of ``frame`` with the batch named in a column at ``position`` (after ``_row`` in quarantine)."""
    out = frame.copy()
    if name == BATCH_COLUMN and ROW_COLUMN not in out.columns:
        position = 0
    out.insert(position, name, pd.Series([batch] * len(out), index=out.index, dtype="string"))
    return out
