"""Errors a user can act on: what was expected, what was found, where, and what to do next."""

from __future__ import annotations

from collections.abc import Sequence


class NbopsError(Exception):
    """Base class for every error nbops raises on purpose (as opposed to a bug)."""


class ConfigError(NbopsError):
    """A parameter, env key or pipeline entry is unknown or has the wrong type."""


class DataError(NbopsError):
    """A table cannot be used as it is: wrong file, missing column, unusable values.

    The message always names the file, and where it applies the column and the rows.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: Sequence[int] | None = None,
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.rows = list(rows) if rows is not None else None
        self.expected = expected
        self.found = found
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.problem]
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.column:
            where.append(f"column '{self.column}'")
        if self.rows:
            where.append(f"rows {format_rows(self.rows)}")
        if where:
            parts.append("  where: " + ", ".join(where))
        if self.expected:
            parts.append(f"  expected: {self.expected}")
        if self.found:
            parts.append(f"  found: {self.found}")
        if self.hint:
            parts.append(f"  what to do: {self.hint}")
        return "\n".join(parts)


def format_rows(rows: Sequence[int], limit: int = 10) -> str:
    """Render row numbers compactly: '3, 17, 42 and 1,204 more'."""
    shown = ", ".join(str(r) for r in list(rows)[:limit])
    rest = len(rows) - limit
    return f"{shown} and {rest:,} more" if rest > 0 else shown
