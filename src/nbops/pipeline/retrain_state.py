"""The state of continuous training: ``<root>/.nbops/retrain.json``, what ``nbops retrain`` last
decided and acted on, and the labelled months that join the training data (``nbops build`` reads it)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbops.config import paths
from nbops.errors import NbopsError

STATE_FILE = Path(paths.RETRAIN_STATE)
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def state_path(root: str | Path) -> Path:
    """Where the retrain state lives: ``<root>/.nbops/retrain.json``, beside the build lineage."""
    return Path(root) / STATE_FILE


def load_state(root: str | Path) -> dict[str, Any]:
    """The last retrain's state; a fresh state (nothing labelled, nothing acted on) when there is none.

    Raises:
        NbopsError: the file exists but is not a JSON object with the expected keys (a hand edit gone
            wrong must not silently reset what was acted on, which would retrain again).
    """
    path = state_path(root)
    fresh: dict[str, Any] = {"labelled_through": None, "acted_on": []}
    if not path.exists():
        return fresh
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NbopsError(
            f"{path}: the retrain state is not valid JSON ({exc})\n"
            '  expected: {"labelled_through": "YYYY-MM" or null, "acted_on": [batch ids], ...}\n'
            "  what to do: fix the file, or delete it (the next `nbops retrain --if-needed` then treats every labelled "
            "month and alert as new)"
        ) from exc
    if not isinstance(data, dict):
        raise NbopsError(
            f"{path}: expected a JSON object with labelled_through and acted_on, found {type(data).__name__}; fix or "
            "delete the file"
        )
    through = data.get("labelled_through")
    if through is not None and not (isinstance(through, str) and MONTH.match(through)):
        raise NbopsError(
            f"{path}: labelled_through expected 'YYYY-MM' or null, found {through!r}; fix or delete the file"
        )
    acted = data.get("acted_on", [])
    if not isinstance(acted, list) or not all(isinstance(a, str) for a in acted):
        raise NbopsError(
            f"{path}: acted_on expected a list of batch ids (strings), found {acted!r}; fix or delete the file"
        )
    return {**fresh, **data}


def save_state(root: str | Path, state: Mapping[str, Any]) -> Path:
    """Write the state atomically (a crash never leaves half a file for ``nbops build`` to read)."""
    from nbops.data.io import write_json

    return write_json(dict(state), state_path(root))
