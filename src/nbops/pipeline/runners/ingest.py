"""Ingest: read or simulate, validate, quarantine, profile, fingerprint."""

from __future__ import annotations

from nbops.config.params import IngestParams
from nbops.data.ingest import IngestResult, ingest
from nbops.pipeline.context import Stage
from nbops.pipeline.runners.common import track


def run_ingest(stage: Stage[IngestParams]) -> IngestResult:
    """Read the table (or simulate it), validate every row, quarantine the bad ones with the reason."""
    result = ingest(
        stage.params,
        project=stage.project,
        raw=stage.out("raw"),
        valid=stage.out("valid"),
        quarantine=stage.out("quarantine"),
        summary=stage.out("summary"),
        profile=stage.out("profile"),
    )
    result.schema.save(stage.out("schema"))
    with track(stage, private_columns=result.schema.private) as run:
        summary = result.summary()
        run.log_metrics({k: summary[k] for k in ("rows_read", "rows_valid", "rows_quarantined")})
        run.log_artifact(
            f"{result.schema.dataset}-valid",
            "dataset",
            [stage.product["valid"], stage.product["schema"]],
            {"fingerprint": result.fingerprint, "source_sha256": result.source_sha256},
        )
        if result.validation.n_quarantined:
            run.log_table("quarantine_reasons", result.validation.reasons)
    return result
