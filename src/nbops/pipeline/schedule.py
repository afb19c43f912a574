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

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nbops.errors import NbopsError

MARKER = "# nbops-schedule"
LOG_NAME = "scheduled.log"
MAX_COMMAND = 1000  # Vixie/Debian cron: a longer command is "command too long", nothing installed

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
            # the env name leaves the double quotes, shell-quoted: its text is echoed, never run
            f'export PLOOMBER_STATS_ENABLED=false; {stamp} nbops build, retrain --if-needed ("{env}")"; '
            f"{nbops} build --env {env}{sets} && {nbops} retrain --if-needed --env {env}{sets}; s=$?; {stamp} exit "
            'status $s"'
        )
        if self.lock:  # a run that starts while the previous one still holds the lock skips itself
            steps = f'flock -n 9 || {{ {stamp} previous run still going: skipped"; exit 0; }}; {steps}'
        redirect = f">> {self._here(self.log)} 2>&1" + (
            f" 9> {self._here(state / 'schedule.lock')}" if self.lock else ""
        )
        return (
            f"cd {q(str(self.project))} && mkdir -p {self._here(self.log.parent)} {self._here(state)} "
            f"&& {{ {steps}; }} {redirect}"
        )

    def line(self) -> str:
        """The crontab line: schedule, escaped command, marker comment (a shell comment to cron)."""
        command = f"{escape_percent(self.command())} {escape_percent(self.marker)}"
        if len(command) >= MAX_COMMAND:
            raise NbopsError(
                f"the crontab entry would be {len(command)} characters after the schedule; cron refuses {MAX_COMMAND} "
                "or more\n"
                f"  where: project {self.project}, product root {self.root}\n"
                "  what to do: move the project (or the env file's `root`) to a shorter path, or pass fewer --set "
                "overrides"
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
        raise NbopsError(
            f"{what} {str(path)!r} holds a newline or a backslash, which a crontab line cannot carry safely; move the "
            "project to a plain path"
        )


# -- the crontab ---------------------------------------------------------------------------------


def crontab_binary() -> str:
    found = shutil.which("crontab")
    if not found:
        raise NbopsError(
            "the `crontab` command is not installed, so no schedule can be written\n"
            "  what to do: install cron (Debian/Ubuntu: `sudo apt-get install cron`, then `sudo service cron start`; "
            "`make browser` installs it too), or schedule with `nbops export airflow` or the GitHub workflow "
            ".github/workflows/scheduled.yml"
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
        raise NbopsError(
            f"`crontab -` refused the new crontab (exit {proc.returncode}); nothing was changed:\n{proc.stderr.strip()}"
        )


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
    raise NbopsError(
        f"no nbops executable to schedule: neither {own} nor {running} exists; run `make install` in {project}"
    )
