"""``nbops schedule install|remove|show``: run monitoring and retraining from the user's crontab.

Why cron and not a scheduler of our own: every Linux machine has it, it survives reboots and needs no
process of ours to stay up. The entry is one line written through the system ``crontab`` command
(never by editing spool files), ending in a marker comment that names the project folder and the env
file, so installing again replaces that line, removing deletes only it, and every other entry of the
crontab is kept as it was.

What the entry runs, from the project folder, appending everything to ``<root>/reports/scheduled.log``
with a dated header and the exit status::

    <project>/.venv/bin/nbops build --env ENV && <project>/.venv/bin/nbops retrain --if-needed --env ENV

``flock`` (util-linux) makes a run that starts while the previous one is still going skip itself.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nbops.errors import ConfigError, NbopsError

MARKER = "# nbops-schedule"
LOG_NAME = "scheduled.log"
MAX_COMMAND = 1000  # Vixie/Debian cron: a longer command is "command too long", nothing installed

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class CronField:
    """One of the five fields: its name, its range, and the names it accepts (month, day of week)."""

    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)

    def expected(self) -> str:
        words = f" or names ({', '.join(self.names)})" if self.names else ""
        return (
            f"'*', a number {self.low}-{self.high}{words}, a range a-b, a step */n or a-b/n "
            "(n ≥ 1, at most the field's span), or a comma-separated list of these"
        )


FIELDS = (
    CronField("minute", 0, 59),
    CronField("hour", 0, 23),
    CronField("day of month", 1, 31),
    CronField("month", 1, 12, {m: i + 1 for i, m in enumerate(MONTHS)}),
    CronField("day of week", 0, 7, {d: i for i, d in enumerate(DAYS)}),  # 0 and 7 are both Sunday
)
_ITEM = re.compile(r"^(?P<base>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


class CronError(ConfigError):
    """A cron expression Debian's cron would refuse, or would accept but never (or wrongly) run."""


def validate_cron(expression: str, where: str = "--cron") -> str:
    """Check a 5-field cron expression field by field; return it with single spaces.

    Stricter than ``crontab`` itself on purpose: a reversed range (``5-1``) or a step past the field's
    span (``*/60`` minutes) installs silently there and then never runs, or runs once an hour.

    Raises:
        CronError: naming the field, what it accepts and what was found.
    """
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
    for position, (value, spec) in enumerate(zip(fields, FIELDS, strict=True), start=1):
        problem = _field_problem(value.lower(), spec)
        if problem:
            raise CronError(
                f"{where}: field {position} ({spec.name}) of {text!r} is not valid\n"
                f"  expected: {spec.expected()}\n"
                f"  found: {value!r}: {problem}"
            )
    return " ".join(fields)


def _field_problem(value: str, spec: CronField) -> str | None:
    """What is wrong with one field, or None."""
    for item in value.split(","):
        if not item:
            return "an empty item in the list (two commas, or one at an end)"
        match = _ITEM.match(item)
        if not match:
            return f"{item!r} is not '*', a value, a range or a step"
        base, step = match["base"], match["step"]
        if base == "*":
            low, high = spec.low, spec.high
        else:
            ends = base.split("-")
            numbers = []
            for end in ends:
                number = _number(end, spec)
                if isinstance(number, str):
                    return number
                numbers.append(number)
            low, high = numbers[0], numbers[-1]
            if low > high:
                return f"the range {item!r} runs backwards ({low} > {high}) and would never match"
            if step is not None and len(ends) == 1:
                return f"{item!r}: a step needs a range or '*' before it ({end}-{spec.high}/{step} or */{step})"
        if step is not None:
            n = int(step)
            span = spec.high - spec.low
            if not 1 <= n <= span:
                return f"the step /{n} must be between 1 and {span} (the span of {spec.low}-{spec.high})"
    return None


def _number(token: str, spec: CronField) -> int | str:
    """The value of a number or a name, or what is wrong with it."""
    if token.isdigit():
        value = int(token)
        if not spec.low <= value <= spec.high:
            return f"{value} is out of range {spec.low}-{spec.high}"
        return value
    if token in spec.names:
        return spec.names[token]
    if spec.names:
        return f"{token!r} is neither a number nor one of the names {', '.join(spec.names)}"
    return f"{token!r} is not a number"


# -- the entry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleEntry:
    """The crontab line of one project and env file."""

    cron: str
    project: Path
    env: str
    nbops: Path  # the nbops executable the job runs
    root: Path  # the env's product root: the log goes to <root>/reports/
    overrides: tuple[str, ...] = ()
    lock: bool = True  # flock available: overlapping runs skip themselves

    @property
    def log(self) -> Path:
        return self.root / "reports" / LOG_NAME

    @property
    def marker(self) -> str:
        return marker_for(self.project, self.env)

    def _here(self, path: Path) -> str:
        """``path`` as the job names it: relative to the project folder it runs in when inside it
        (Debian's cron refuses a command of 1,000 characters or more), quoted for the shell."""
        try:
            return shlex.quote(str(path.relative_to(self.project)) or ".")
        except ValueError:
            return shlex.quote(str(path))

    def command(self) -> str:
        """What the shell runs (before crontab escaping): build, then retrain if monitoring says so."""
        q = shlex.quote
        sets = "".join(f" --set {q(s)}" for s in self.overrides)
        nbops, env = self._here(self.nbops), q(self.env)
        state = self.root / ".nbops"
        stamp = 'echo "== $(date -u +%FT%TZ)'
        # `s=$?` first: dash (cron's /bin/sh) resets $? inside the $(date) that follows.
        steps = (
            f"export PLOOMBER_STATS_ENABLED=false; {stamp} nbops build, retrain --if-needed ({self.env})\"; "
            f"{nbops} build --env {env}{sets} && {nbops} retrain --if-needed --env {env}{sets}; s=$?; {stamp} exit status $s\""
        )
        if self.lock:  # a run that starts while the previous one still holds the lock skips itself
            steps = f"flock -n 9 || {{ {stamp} previous run still going: skipped\"; exit 0; }}; {steps}"
        redirect = f">> {self._here(self.log)} 2>&1" + (f" 9> {self._here(state / 'schedule.lock')}" if self.lock else "")
        return f"cd {q(str(self.project))} && mkdir -p {self._here(self.log.parent)} {self._here(state)} && {{ {steps}; }} {redirect}"

    def line(self) -> str:
        """The crontab line: schedule, escaped command, marker comment (a shell comment to cron)."""
        command = f"{escape_percent(self.command())} {escape_percent(self.marker)}"
        if len(command) >= MAX_COMMAND:
            raise NbopsError(
                f"the crontab entry would be {len(command)} characters after the schedule; cron refuses {MAX_COMMAND} or more\n"
                f"  where: project {self.project}, product root {self.root}\n"
                "  what to do: move the project (or the env file's `root`) to a shorter path, or pass fewer --set overrides"
            )
        return f"{self.cron} {command}"


def marker_for(project: Path, env: str) -> str:
    return f"{MARKER} project={project} env={env}"


def escape_percent(text: str) -> str:
    """Cron turns an unescaped % into a newline (the rest becomes the job's stdin)."""
    return text.replace("%", r"\%")


def command_of(line: str) -> str:
    """The shell command cron runs for a 5-field line: everything after the fields, % unescaped."""
    parts = line.split(None, 5)
    if len(parts) < 6:
        raise NbopsError(f"not a 5-field crontab line: {line!r}")
    return parts[5].replace(r"\%", "%")


def is_ours(line: str, project: Path, env: str) -> bool:
    return line.rstrip().endswith(" " + escape_percent(marker_for(project, env)))


def check_path(path: Path, what: str) -> None:
    """Cron lines are one line, and backslashes are handled differently by cron implementations."""
    if "\n" in str(path) or "\\" in str(path):
        raise NbopsError(f"{what} {str(path)!r} holds a newline or a backslash, which a crontab line cannot carry safely; move the project to a plain path")


# -- the crontab ---------------------------------------------------------------------------------


def crontab_binary() -> str:
    found = shutil.which("crontab")
    if not found:
        raise NbopsError(
            "the `crontab` command is not installed, so no schedule can be written\n"
            "  what to do: install cron (Debian/Ubuntu: `sudo apt-get install cron`, then `sudo service cron start`; "
            "`make browser` installs it too), or schedule with `nbops export airflow` or the GitHub workflow .github/workflows/scheduled.yml"
        )
    return found


def read_crontab() -> list[str]:
    """The current user's crontab lines ([] when there is none)."""
    proc = subprocess.run([crontab_binary(), "-l"], capture_output=True, text=True)
    if proc.returncode != 0:
        if "no crontab" in proc.stderr.lower():
            return []
        raise NbopsError(f"`crontab -l` failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.splitlines()


def write_crontab(lines: list[str]) -> None:
    """Replace the crontab with ``lines`` (``crontab -`` validates the whole file before installing);
    no lines removes the crontab, as it was before the first install."""
    if not lines:
        subprocess.run([crontab_binary(), "-r"], capture_output=True, text=True)
        return
    proc = subprocess.run([crontab_binary(), "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        raise NbopsError(f"`crontab -` refused the new crontab (exit {proc.returncode}); nothing was changed:\n{proc.stderr.strip()}")


def install(entry: ScheduleEntry) -> tuple[str, bool]:
    """Add or replace ``entry``'s line; return the line and whether an older one was replaced."""
    lines = read_crontab()
    kept = [line for line in lines if not is_ours(line, entry.project, entry.env)]
    new = entry.line()
    write_crontab([*kept, new])
    return new, len(kept) != len(lines)


def remove(project: Path, env: str) -> list[str]:
    """Delete the project's line for ``env``; return the lines removed (none if it was not there)."""
    lines = read_crontab()
    kept = [line for line in lines if not is_ours(line, project, env)]
    if len(kept) != len(lines):
        write_crontab(kept)
    return [line for line in lines if is_ours(line, project, env)]


def find(project: Path, env: str) -> str | None:
    return next((line for line in read_crontab() if is_ours(line, project, env)), None)


def cron_daemon_running() -> bool | None:
    """Whether a cron daemon runs here (None when this cannot be told, e.g. not Linux)."""
    proc_dir = Path("/proc")
    if not proc_dir.exists():
        return None
    for stat in proc_dir.glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() in ("cron", "crond"):
                return True
        except OSError:
            continue
    return False


def nbops_executable(project: Path) -> tuple[Path, str | None]:
    """``<project>/.venv/bin/nbops`` (what `make install` creates), else the nbops running now.

    Returns:
        The path, and a note when it is not the project's own.
    """
    own = project / ".venv" / "bin" / "nbops"
    if own.exists():
        return own, None
    # Not resolved: a venv's python is a symlink, and resolving it would leave the venv.
    running = Path(sys.executable).parent / "nbops"
    if running.exists():
        return running, f"{own} does not exist (run `make install`); the entry runs {running}, the nbops running now"
    raise NbopsError(f"no nbops executable to schedule: neither {own} nor {running} exists; run `make install` in {project}")


# -- the command -----------------------------------------------------------------------------------


def cmd_schedule(args: argparse.Namespace) -> int:
    """``nbops schedule install|remove|show [--env ENV] [--cron EXPR]``."""
    from nbops.cli import _overrides, _project

    project = _project(args)
    check_path(project, "the project folder")
    if args.action == "remove":
        removed = remove(project, args.env)
        print(f"removed the schedule of {project} ({args.env}):\n  {removed[0]}" if removed else f"no nbops schedule for {project} ({args.env}) in the crontab: nothing removed")  # noqa: T201
        return 0
    if args.action == "show":
        line = find(project, args.env)
        if line is None:
            others = [x for x in read_crontab() if MARKER in x]
            print(f"no nbops schedule for {project} ({args.env}); `nbops schedule install --env {args.env}` adds one")  # noqa: T201
            if others:
                print("other nbops schedules in this crontab:\n" + "\n".join(f"  {x}" for x in others))  # noqa: T201
            return 0
        print(f"{' '.join(line.split()[:5])}  (minute hour day-of-month month day-of-week, the machine's local time)\n{line}")  # noqa: T201
        return 0

    from nbops.pipeline.check import check_project

    checked = check_project(project, args.env, _overrides(args.set))
    cron = validate_cron(args.cron, "--cron") if args.cron is not None else validate_cron(checked.settings.schedule, f"{args.env}: schedule")
    nbops, note = nbops_executable(project)
    root = Path(checked.settings.root)
    root = root if root.is_absolute() else project / root
    check_path(root, "the product root")
    entry = ScheduleEntry(cron, project, args.env, nbops, root, tuple(args.set), lock=shutil.which("flock") is not None)
    line, replaced = install(entry)
    print(f"{'replaced' if replaced else 'installed'} the schedule of {project} ({args.env}): {cron}\n  {line}\nlog: {entry.log}")  # noqa: T201
    for warning in [note, None if entry.lock else "`flock` is missing: a run that outlasts the interval can overlap the next one",
                    "no cron daemon is running on this machine: the entry will not fire until one is (`sudo service cron start`)" if cron_daemon_running() is False else None]:
        if warning:
            print(f"note: {warning}")  # noqa: T201
    return 0
