"""Errors a user can act on: what was expected, what was found, where, and what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class NbopsError(Exception):
    """Base class for every error nbops raises on purpose (as opposed to a bug)."""


class ConfigError(NbopsError):
    """A parameter, env key or pipeline entry is unknown or has the wrong type."""


class DataError(NbopsError):
    """A table cannot be used as it is: wrong file, missing column, unusable values.

    The message always names the file, and where it applies the column (or the feature function, and
    the line of the file) and the rows.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        function: str | None = None,
        line: int | None = None,
        rows: Sequence[int] | None = None,
        expected: str | None = None,
        found: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.function = function
        self.line = line
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
        if self.function:
            where.append(f"function {self.function}()")
        if self.line:
            where.append(f"line {self.line}")
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


def shown(value: object) -> str:
    """A value as a user wrote it: ``1`` and ``'yes'``, never ``np.int64(1)`` or ``np.str_('yes')``."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    return repr(value)


def format_rows(rows: Sequence[int], limit: int = 10) -> str:
    """Render row numbers compactly: '3, 17, 42 and 1,204 more'."""
    shown = ", ".join(str(r) for r in list(rows)[:limit])
    rest = len(rows) - limit
    return f"{shown} and {rest:,} more" if rest > 0 else shown


def closest_names(name: str, known: Sequence[object], n: int = 3) -> list[str]:
    """Known names a misspelt ``name`` probably meant: same letters in another case first, then
    the closest spellings."""
    names = [str(k) for k in known]
    same_case = [k for k in names if k.lower() == name.lower() and k != name]
    by_lower = {k.lower(): k for k in names}
    close = [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)]
    return list(dict.fromkeys([*same_case, *close]))[:n]


def missing_column_found(name: str, columns: Sequence[object], limit: int = 40) -> str:
    """'found' for a column that is not in a table: the likely intended names first, then every
    column (up to ``limit``), so the one meant is never cut off the list."""
    guesses = closest_names(name, columns)
    names = [str(c) for c in columns]
    listing = ", ".join(names[:limit]) + (f" and {len(names) - limit:,} more" if len(names) > limit else "")
    hint = (
        f"no column '{name}'; did you mean {' or '.join(repr(g) for g in guesses)}? "
        if guesses
        else f"no column '{name}'; "
    )
    return f"{hint}the table's {len(names):,} columns are: {listing}"
