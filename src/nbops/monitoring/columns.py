"""Which columns of a plain table drift compares: the features of the dataset's schema, never its time,
id, target or personal-data columns (as the reference profile stored with a model version does).

``nbops drift REFERENCE CURRENT`` on two tables takes the roles from, in order: the schema file given
(``--schema``); the dataset's schema in the project (env.yaml's ``schema_file``, else
``schemas/<dataset>.schema.yaml``, else any ``schemas/*.schema.yaml``) when it declares every column of
the reference; else the schema the ingest stage would infer for the reference (from its first
INFER_ROWS rows), with env.yaml's ``target``, ``time_column``, ``id_columns`` and ``pii_columns``
(the ingest defaults outside a project).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbops.data.schema import ColumnSpec, TableSchema, infer_columns
from nbops.errors import NbopsError
from nbops.monitoring.profile import ReferenceProfile, build_reference_profile

# The roles are inferred from the reference's first rows: enough to tell ids, times, numbers and
# categories apart, and at 200,000 rows most of the command's time otherwise.
INFER_ROWS = 5_000
# Why a column is not a drift feature, by its role in the schema.
ROLE_REASONS = {
    "time": "time column",
    "id": "identifier",
    "target": "target",
    "pii": "personal data",
    "ignore": "ignored in the schema",
}


@dataclass(frozen=True)
class TableSettings:
    """What the ingest settings say about a table's columns (env.yaml, or the ingest defaults)."""

    target: str | None = "default"
    time_column: str = "auto"
    id_columns: tuple[str, ...] = ()
    pii_columns: tuple[str, ...] = ()
    schema_file: str = "auto"
    data: str = "simulate"
    source: str = "the ingest defaults"

    @classmethod
    def of_project(cls, project: Path | None, env: str = "env.yaml") -> TableSettings:
        """The settings in ``project``'s env file; the ingest defaults without a project or env file."""
        path = project / env if project is not None else None
        if path is None or not path.exists():
            return cls()
        import yaml

        raw: Any = yaml.safe_load(path.read_text()) or {}
        values = raw if isinstance(raw, dict) else {}

        def names(key: str) -> tuple[str, ...]:
            v = values.get(key) or []
            return tuple(str(x) for x in v) if isinstance(v, list) else ()

        time_column = values.get("time_column", "auto")
        return cls(
            target=str(values["target"]) if values.get("target") else cls.target,
            time_column="none" if time_column in (None, "", "none", "null") else str(time_column),
            id_columns=names("id_columns"),
            pii_columns=names("pii_columns"),
            schema_file=str(values.get("schema_file") or "auto"),
            data=str(values.get("data") or "simulate"),
            source=str(path),
        )


@dataclass
class DriftColumns:
    """The drift features of a table and the columns left out, each with the reason."""

    numeric: list[str]
    categorical: list[str]
    left_out: dict[str, str]
    schema: str  # where the roles come from: a schema file, or how they were inferred
    notes: list[str] = field(default_factory=list)  # what the inference said (as ingest says it)

    def profile(self, reference: pd.DataFrame) -> ReferenceProfile:
        return build_reference_profile(reference, self.numeric, self.categorical)

    def left_out_text(self) -> str:
        """'application_id (identifier), month (time column), default (target)'."""
        return ", ".join(f"{name} ({why})" for name, why in self.left_out.items())


def candidate_schemas(project: Path, settings: TableSettings) -> list[Path]:
    """The project's schema files, the dataset's own first."""
    from nbops.config.params import IngestParams
    from nbops.data.ingest import schema_path

    first = schema_path(IngestParams.model_construct(data=settings.data, schema_file=settings.schema_file), project)
    others = sorted((project / "schemas").glob("*.schema.yaml")) if (project / "schemas").is_dir() else []
    return [first, *[p for p in others if p.resolve() != first.resolve()]]


def find_schema(columns: list[str], project: Path | None, settings: TableSettings) -> tuple[TableSchema, Path] | None:
    """The project's schema that declares every one of ``columns`` (the dataset's own first), if any."""
    if project is None:
        return None
    for path in candidate_schemas(project, settings):
        if not path.exists():
            continue
        try:
            schema = TableSchema.load(path)
        except (NbopsError, OSError):  # another dataset's broken schema is not this table's business
            continue
        if set(columns) <= set(schema.names):
            return schema, path
    return None


def _where(path: Path, project: Path | None) -> str:
    if project is not None and path.resolve().is_relative_to(project.resolve()):
        return str(path.resolve().relative_to(project.resolve()))
    return str(path)


def drift_columns(
    reference: pd.DataFrame,
    *,
    file: str,
    schema_file: Path | None = None,
    project: Path | None = None,
    settings: TableSettings | None = None,
    exclude: tuple[str, ...] = (),
) -> DriftColumns:
    """The drift features of ``reference`` (read from ``file``) and the columns left out, with why."""
    settings = settings or TableSettings()
    columns = [str(c) for c in reference.columns]
    specs: list[ColumnSpec]
    notes: list[str] = []
    if schema_file is not None:
        schema = TableSchema.load(schema_file)
        specs, where = schema.columns, f"the schema {_where(schema_file, project)}"
    elif (found := find_schema(columns, project, settings)) is not None:
        specs, where = found[0].columns, f"the schema {_where(found[1], project)}"
    else:
        target = settings.target if settings.target in columns else None
        present = [c for c in columns if c != target]
        specs, notes, _ = infer_columns(
            reference[present].head(INFER_ROWS),
            time_column=settings.time_column if settings.time_column in (*present, "auto", "none") else "auto",
            id_columns=[c for c in settings.id_columns if c in present],
            pii_columns=[c for c in settings.pii_columns if c in present],
            file=file,
        )
        if target is not None:
            specs = [*specs, ColumnSpec(target, "numeric", "target")]
        where = f"the schema ingest infers for {file}, target {settings.target!r} ({settings.source})"
        if len(reference) >= INFER_ROWS:
            where += f", from its first {INFER_ROWS:,} rows"
    by_name = {c.name: c for c in specs}
    numeric, categorical, left_out = [], [], {}
    for name in columns:
        spec = by_name.get(name)
        if name in exclude:
            left_out[name] = "--exclude"
        elif spec is None:
            left_out[name] = "not in the schema"
        elif spec.role != "feature":
            left_out[name] = ROLE_REASONS.get(spec.role, spec.role)
        elif spec.kind == "numeric":
            numeric.append(name)
        elif spec.kind == "categorical":
            categorical.append(name)
        else:
            left_out[name] = f"{spec.kind} column"
    return DriftColumns(numeric, categorical, left_out, where, notes)
