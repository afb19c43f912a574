"""The cron grammar of ``schedule`` (env.yaml), ``nbops schedule`` and ``nbops export airflow``.

Parsing is croniter's (the parser Airflow uses). Debian's cron is stricter in two ways that croniter
lets through and that would install silently and then misfire, so they are refused here too: a range
that runs backwards (``5-1``: croniter wraps around, cron never matches) and a step longer than the
field's span (``*/60`` minutes runs once an hour). Like cron, it accepts a date that never comes
(``0 0 31 2 *``), which the tests use to install entries that never fire.
"""

from __future__ import annotations

import re

from nbops.errors import ConfigError

# (name, lowest, highest, names) of the five fields; 0 and 7 are both Sunday
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)
_RANGE_STEP = re.compile(r"^(?:(?P<low>\w+)(?:-(?P<high>\w+))?|\*)(?:/(?P<step>\d+))?$")


class CronError(ConfigError):
    """A cron expression Debian's cron would refuse, or would accept but never (or wrongly) run."""


def validate_cron(expression: str, where: str = "--cron") -> str:
    """Check a 5-field cron expression field by field; return it with single spaces.

    Raises:
        CronError: naming the field, what it accepts and what was found.
    """
    from croniter import croniter

    text = str(expression).strip()
    fields = text.split()
    if text.startswith("@"):
        raise CronError(
            f"{where}: {text!r} is a cron shorthand; nbops takes the 5 fields (the Airflow export uses "
            "the same value), e.g. '0 0 * * *' for @daily or '0 * * * *' for @hourly"
        )
    if len(fields) != 5:
        raise CronError(
            f"{where}: a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"found {len(fields)} in {text!r}; e.g. '0 6 * * *' runs every day at 06:00"
        )
    for position, (value, (name, low, high, names)) in enumerate(zip(fields, FIELDS, strict=True), start=1):
        alone = " ".join(value if i == position else "*" for i in range(1, 6))
        problem = _cron_stricter(value.lower(), low, high, names)
        if problem is None and not croniter.is_valid(alone):
            problem = _explain(value.lower(), low, high, names)
        if problem:
            words = f" or names ({', '.join(names)})" if names else ""
            raise CronError(
                f"{where}: field {position} ({name}) of {text!r} is not valid\n"
                f"  expected: '*', a number {low}-{high}{words}, a range a-b, a step */n or a-b/n "
                "(n ≥ 1, at most the field's span), or a comma-separated list of these\n"
                f"  found: {value!r}: {problem}"
            )
    return " ".join(fields)


def _explain(value: str, low: int, high: int, names: tuple[str, ...]) -> str:
    """Why croniter refused one field, item by item, in the words of the field."""
    for item in value.split(","):
        if not item:
            return "an empty item in the list (two commas, or one at an end)"
        match = _RANGE_STEP.match(item)
        if not match:
            return f"{item!r} is not '*', a value, a range or a step"
        for end in (match["low"], match["high"]):
            if end is None:
                continue
            if end.isdigit():
                if not low <= int(end) <= high:
                    return f"{int(end)} is out of range {low}-{high}"
            elif end not in names:
                return (
                    f"{end!r} is neither a number nor one of the names {', '.join(names)}"
                    if names
                    else f"{end!r} is not a number"
                )
    return "not accepted by the cron grammar"


def _cron_stricter(value: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    """What Debian's cron refuses or misruns although croniter accepts it."""
    for item in value.split(","):
        if any(c in item for c in "?lw#") and not any(item.startswith(n) or f"-{n}" in item for n in names):
            return f"{item!r} uses an extension ('?', 'L', 'W', '#') that Debian's cron does not know"
        match = _RANGE_STEP.match(item)
        if not match:
            continue
        ends = [_number(e, names) for e in (match["low"], match["high"]) if e is not None]
        if len(ends) == 2 and ends[0] is not None and ends[1] is not None and ends[0] > ends[1]:
            return f"the range {item!r} runs backwards ({ends[0]} > {ends[1]}) and would never match"
        if match["step"] is not None:
            if match["low"] is not None and match["high"] is None:
                return (
                    f"{item!r}: a step needs a range or '*' before it "
                    f"({match['low']}-{high}/{match['step']} or */{match['step']})"
                )
            if not 1 <= int(match["step"]) <= high - low:
                return f"the step /{match['step']} must be between 1 and {high - low} (the span of {low}-{high})"
    return None


def _number(token: str, names: tuple[str, ...]) -> int | None:
    if token.isdigit():
        return int(token)
    return names.index(token) + (1 if len(names) == 12 else 0) if token in names else None
