"""What the tests share, imported one way everywhere: ``from tests.support import ...``.

Fixtures live in ``tests/conftest.py``; everything here is a plain function or constant.
"""

from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS, launch_chromium
from tests.support.html import tables_of, text_of
from tests.support.models import TinyModel, tiny_registered_model, train_tiny_booster
from tests.support.processes import free_port, stop_process
from tests.support.project import (
    PROJECT_FILES,
    REPO,
    TEST_ROOT,
    copy_project,
    files_containing,
    nbops,
    nbops_in_process,
    output_of,
)
from tests.support.user_tasks import EXAMPLE_TASK, add_example_task, readme_block

__all__ = [
    "EXAMPLE_TASK",
    "add_example_task",
    "readme_block",
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "PROJECT_FILES",
    "REPO",
    "TEST_ROOT",
    "TinyModel",
    "copy_project",
    "files_containing",
    "free_port",
    "launch_chromium",
    "nbops",
    "nbops_in_process",
    "output_of",
    "stop_process",
    "tables_of",
    "text_of",
    "tiny_registered_model",
    "train_tiny_booster",
]
