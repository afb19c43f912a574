"""Debian's headless Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags that work as root in a container (see /work/shared/STACK.md, Voila).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright: Any) -> Any:
    """Headless Chromium from ``sync_playwright()``: the Debian binary with :data:`CHROMIUM_FLAGS`."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)


# How long a page may take to become ready before a test calls it hung. Generous on purpose: with a
# test worker per core, a Voila or JupyterLab kernel shares the cores with another test's build and
# can wait minutes for one. A deadline for a hang, never a speed check.
PAGE_READY_MS = 240_000
