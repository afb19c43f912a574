"""What the commands share: ``--env``/``--set``, the project folder, the registry, a text table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops.errors import NbopsError

if TYPE_CHECKING:
    from nbops.pipeline.check import CheckedProject
    from nbops.registry.store import Registry


def add_env_args(p: argparse.ArgumentParser) -> None:
    """``--env FILE`` and repeatable ``--set KEY=VALUE``: the values a command runs with."""
    p.add_argument(
        "--env", default="env.yaml", help="env file beside pipeline.yaml (env.test.yaml for the small sample)"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override an env key (repeatable)")


def add_wait_arg(p: argparse.ArgumentParser) -> None:
    """``--no-wait``: refuse, rather than wait, when another command holds the project's root."""
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="when another build, retrain or promotion holds the products root, stop with a message instead of waiting",
    )


def say_waiting(holders: list[Any]) -> None:
    """One line on stderr while a command waits for the root's lock: who holds it, since when."""
    who = "; ".join(h.describe() for h in holders) or "another nbops command"
    print(
        f"waiting: {who} holds this project's products root; going on when it finishes (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )


def overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set`` pairs as typed values: YAML turns "[a, b]" into a list and "0.1" into a number,
    and ``nbops check`` then validates the types."""
    import yaml

    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise NbopsError(f"--set expects KEY=VALUE, found {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values


def project_of(args: argparse.Namespace) -> Path:
    """The project folder: ``--project``, else the nearest folder above holding pipeline.yaml."""
    from nbops.config.paths import project_root

    return project_root(args.project)


def registry_of(args: argparse.Namespace) -> tuple[Registry, CheckedProject]:
    """The dataset's registry under the env file's root (``<root>/registry/<dataset>``)."""
    from nbops.config.paths import registry_dir
    from nbops.data.ingest import dataset_name
    from nbops.pipeline.check import check_project
    from nbops.registry.publish import registry_for

    project = project_of(args)
    checked = check_project(project, args.env, overrides(args.set))
    root = Path(checked.settings.root)
    return registry_for(
        registry_dir(root if root.is_absolute() else project / root), dataset_name(checked.settings)
    ), checked


def text_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as aligned plain-text columns."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    out = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(out)


def say(text: str = "", err: bool = False) -> None:
    """The command speaks to its user: stdout, or stderr for a failure; flushed at once, so it stays
    in order with a build's live output."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()
