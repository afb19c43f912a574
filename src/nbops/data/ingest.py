"""The ingest stage: read the raw table, validate it against its schema, store valid and quarantined rows.

Nothing is lost: every input row ends up either in the valid table or in the quarantine file with its
reason, and the counts are checked to add up before anything is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.data.io import file_sha256, read_table, write_json, write_parquet
from nbops.data.profile import fingerprint, profile_table
from nbops.data.schema import ColumnSpec, TableSchema, infer_schema
from nbops.data.validate import ValidationResult, validate_table
from nbops.errors import DataError, format_rows
from nbops.params import IngestParams

log = logging.getLogger(__name__)
SIMULATED_DATASET = "credit_risk"


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

    def summary(self) -> dict[str, Any]:
        v = self.validation
        return {
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
    return df, str(path)


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
    source_file = source if params.data != "simulate" else str(raw)
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
    write_parquet(result.quarantine, quarantine)
    write_parquet(result.valid, valid)
    prof = profile_table(result.valid, schema)
    write_json(prof, profile)
    out = IngestResult(source, schema, path, created, result, fingerprint(result.valid), file_sha256(raw), prof)
    write_json(out.summary(), summary)
    if result.n_quarantined:
        top = result.reasons.iloc[0]
        log.warning(
            "%s: quarantined %d of %d rows (%s); most common: column '%s', %s, rows %s",
            source_file, result.n_quarantined, len(df), quarantine, top["column"], top["problem"], top["first_rows"],
        )
    share = result.n_quarantined / len(df)
    if share > params.max_quarantine_fraction:
        bad_rows = result.quarantine["_row"].tolist()
        raise DataError(
            f"{share:.0%} of rows failed validation, more than max_quarantine_fraction={params.max_quarantine_fraction:g}",
            file=source_file,
            column=str(result.reasons.iloc[0]["column"]),
            rows=bad_rows,
            expected="values that match the schema " + str(path),
            found="; ".join(f"{r.column}: {r.problem} ({r.rows} rows)" for r in result.reasons.head(5).itertuples()),
            hint=f"inspect {quarantine} (every bad row with its reason), then fix the data or the schema; rows {format_rows(bad_rows, 3)} are the first",
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
