"""`make lab`: the real JupyterLab with the repo's configuration, as a data scientist uses it.

A stage notebook opened there has its parameters injected; run, it reads the pipeline's products and
writes its own under build/interactive/ (never over the pipeline's), with W&B off. The Share Notebook
button (an upload to Ploomber Cloud) is disabled, `make lab` prints the URL and nothing that is not
the user's business, and notebook outputs never reach `git diff`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import REPO, copy_project, free_port, launch_chromium, nbops, output_of, stop_process
from tests.support.browser import PAGE_READY_MS

pytestmark = pytest.mark.slow
TOKEN = "nbops-lab-test-token"
AUTH = {"Authorization": f"token {TOKEN}"}
# Variables a pipeline build or a test runner may leave in the environment; a user's lab has none.
NOT_IN_A_LAB = (
    "NBOPS_PROJECT",
    "NBOPS_BUILD_ID",
    "NBOPS_RUN_IDENTITIES",
    "NBOPS_TRACKING",
    "WANDB_MODE",
    "PLOOMBER_ENV_FILENAME",
)
# The plugins of the ploomber-extension labextension (its bundle in .venv/share/jupyter/labextensions):
# "sharing" adds the Share Notebook button, "ploomber-extension:settings" its setting.
PLOOMBER_LAB_PLUGINS = ("sharing", "ploomber-extension:settings")


def _lab_env(tmp: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PLOOMBER_STATS_ENABLED": "false",  # exported by the Makefile
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
    }
    for var in NOT_IN_A_LAB:
        env.pop(var, None)
    return env


def lab_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """The command line `make lab ARGS=...` runs (read from `make -n`), and the variables it sets."""
    dry = subprocess.run(
        ["make", "-s", "-n", "-C", str(REPO), "lab", f"ARGS={shlex.join(args)}"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next((line for line in dry.stdout.splitlines() if "jupyter lab" in line), None)
    assert line is not None, f"`make -n lab` runs no `jupyter lab`:\n{dry.stdout}"
    words = shlex.split(line)
    env = {}
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not Path(words[0]).is_absolute():
        words[0] = str(REPO / words[0])
    return words, env


@contextmanager
def jupyterlab(root: Path, tmp: Path) -> Iterator[str]:
    """JupyterLab started as `make lab` starts it, from ``root`` (its root_dir), with a known token
    and a free port; yields its base URL."""
    port = free_port()
    cmd, make_env = lab_command(f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}")
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env={**_lab_env(tmp), **make_env}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/api/status", headers=AUTH, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (
                f"JupyterLab did not answer on {base} within 120 s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.5)
        yield base
    finally:
        stop_process(proc)


def fetch_notebook(base: str, path: str) -> dict:
    """A notebook as the browser gets it: GET /api/contents/<path>?content=1 (Ploomber injects here)."""
    response = httpx.get(f"{base}/api/contents/{path}", params={"content": 1}, headers=AUTH, timeout=120)
    assert response.status_code == 200, f"GET /api/contents/{path}: {response.status_code} {response.text[:500]}"
    return response.json()["content"]


def injected_source(nb: dict) -> str:
    cell = next((c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])), None)
    assert cell is not None, "no injected-parameters cell: Ploomber's extension did not inject"
    return "".join(cell["source"])


def snapshot(project: Path, exclude: Path, *more: Path) -> dict[str, str]:
    """sha256 of every file of the project outside ``exclude`` (and ``more``)."""
    return {
        str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(project.rglob("*"))
        if p.is_file() and not any(p.is_relative_to(e) for e in (exclude, *more))
    }


def save_notebook(base: str, path: str, nb: dict) -> None:
    """What the browser sends on Ctrl-S: PUT /api/contents/<path> with the notebook."""
    response = httpx.put(
        f"{base}/api/contents/{path}",
        json={"type": "notebook", "format": "json", "content": nb},
        headers=AUTH,
        timeout=120,
    )
    assert response.status_code == 200, f"PUT /api/contents/{path}: {response.status_code} {response.text[:500]}"


@pytest.fixture(scope="module")
def built_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built with env.test.yaml (W&B off). Its env.yaml is the test env, since the lab
    extension injects from env.yaml: the notebooks then point at this build's products."""
    project = copy_project(tmp_path_factory.mktemp("lab") / "project")
    shutil.copyfile(project / "env.test.yaml", project / "env.yaml")
    proc = nbops(project, "build", "--env", "env.test.yaml", "--set", "tracking=disabled")
    assert proc.returncode == 0, output_of(proc)[-5000:]
    return project


def test_jupyterlab_contents_api_opens_a_stage_notebook_with_injected_parameters(tmp_path: Path) -> None:
    with jupyterlab(REPO, tmp_path) as base:
        nb = fetch_notebook(base, "notebooks/01_ingest.ipynb")
    tags = [c["metadata"].get("tags", []) for c in nb["cells"]]
    assert ["parameters"] in tags and ["injected-parameters"] in tags
    injected = injected_source(nb)
    assert 'data = "simulate"' in injected and "product = {" in injected


def test_stage_notebooks_run_from_the_lab_leave_every_pipeline_product_byte_identical(
    built_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    project = built_project
    interactive = project / "build" / "interactive"
    shutil.rmtree(interactive, ignore_errors=True)
    sources = project / "notebooks"  # saving a notebook rewrites its source: that is the user's file
    before = snapshot(project, interactive, sources)
    assert any(k.startswith("build/test/registry/") for k in before), "the build made no registry"
    for var in NOT_IN_A_LAB:  # the kernels nbclient starts get this environment, as a lab kernel would
        monkeypatch.delenv(var, raising=False)
    outputs = {}
    with jupyterlab(project, tmp_path / "lab") as base:
        for stage in ("03_train", "04_evaluate", "05_register"):
            nb = nbformat.from_dict(fetch_notebook(base, f"notebooks/{stage}.ipynb"))
            assert str(project / "build/test") in injected_source(nb), "the injected paths are not the pipeline's"
            NotebookClient(
                nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(project / "notebooks")}}
            ).execute()
            outputs[stage] = json.dumps([o for c in nb.cells if c.cell_type == "code" for o in c.outputs])
            save_notebook(base, f"notebooks/{stage}.ipynb", json.loads(nbformat.writes(nb)))
    after = snapshot(project, interactive, sources)
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
    touched = {"changed": changed, "added": added, "removed": removed}
    assert not any(touched.values()), (
        "running stage notebooks in the lab touched files outside build/interactive: "
        + "; ".join(
            f"{what} {len(paths)}: {', '.join(paths[:8])}{' ...' if len(paths) > 8 else ''}"
            for what, paths in touched.items()
            if paths
        )
    )
    # ...and wrote its own products under the interactive root
    for product in (
        "models/model.txt",
        "reports/figures/learning_curve.png",
        "reports/metrics.json",
        "reports/promotion_gate.json",
        "models/registration.json",
        "reports/model_card/card.html",
    ):
        assert (interactive / product).is_file(), f"no {interactive / product}"
    assert list(interactive.glob("registry/*/versions/v0001/model.txt")), (
        "register did not write the interactive registry"
    )
    assert json.loads((interactive / "models/registration.json").read_text())["registry"].startswith(str(interactive))
    assert not list(project.rglob("offline-run-*")), "a W&B run was added though nobody asked for one"
    for stage, shown in outputs.items():  # each notebook says so
        assert "interactive run" in shown and "build/interactive" in shown and "build/test" in shown, (
            f"{stage}: no interactive notice"
        )


def _page_config(html: str) -> dict:
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no jupyter-config-data in /lab"
    return json.loads(match.group(1))


def _plugin_disabled(plugin: str, disabled: list[str]) -> bool:
    """JupyterLab's rule (isPluginDisabled in its index.js): the plugin id, or its package before ':'."""
    package = plugin.split(":", 1)[0] if ":" in plugin else ""
    return any(d == plugin or (package and d == package) for d in disabled)


def test_the_lab_page_config_disables_share_notebook_and_its_upload_api(tmp_path: Path) -> None:
    bundle = "".join(
        p.read_text(errors="replace")
        for p in (Path(sys.prefix) / "share/jupyter/labextensions/ploomber-extension/static").glob("*.js")
    )
    for plugin in PLOOMBER_LAB_PLUGINS:  # so that a renamed plugin fails here rather than passing unseen
        assert f'"{plugin}"' in bundle, (
            f"ploomber-extension no longer has a plugin '{plugin}'; update PLOOMBER_LAB_PLUGINS and "
            ".jupyter/labconfig/page_config.json"
        )
    with jupyterlab(REPO, tmp_path) as base:
        page = httpx.get(f"{base}/lab", params={"token": TOKEN}, timeout=30)
        upload = httpx.get(f"{base}/ploomber/apikey", headers=AUTH, timeout=30)
    assert page.status_code == 200
    config = _page_config(page.text)
    disabled = list(config["disabledExtensions"])
    assert "ploomber-extension" in [e["name"] for e in config["federated_extensions"]], (
        "the test needs the extension installed"
    )
    for plugin in PLOOMBER_LAB_PLUGINS:
        assert _plugin_disabled(plugin, disabled), (
            f"plugin '{plugin}' is enabled in the lab's page config (disabled: {disabled}); disable it in "
            ".jupyter/labconfig/page_config.json"
        )
    assert upload.status_code == 404, (
        f"/ploomber/apikey answers {upload.status_code}: ploomber_extension's server side (Ploomber Cloud upload) "
        "is loaded"
    )


def test_a_stage_notebook_in_chromium_has_its_parameters_injected_no_share_button_and_runs_interactively(
    built_project: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    pipeline_model = built_project / "build/test/models/model.txt"
    before = hashlib.sha256(pipeline_model.read_bytes()).hexdigest()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with jupyterlab(built_project, tmp_path / "lab") as base, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/notebooks/03_train.ipynb?token={TOKEN}", wait_until="domcontentloaded")
            panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            panel.locator(".cm-line", has_text="product = {").first.wait_for(timeout=PAGE_READY_MS)
            toolbar = panel.locator(".jp-NotebookPanel-toolbar")
            toolbar.locator(".jp-KernelName", has_text="Python").wait_for(timeout=PAGE_READY_MS)
            page.wait_for_timeout(1500)  # let late toolbar items (widget extensions) render
            page.screenshot(path=str(shots / "lab_train_injected.png"))
            buttons = toolbar.locator(".jp-ToolbarButtonComponent").count()
            share = toolbar.locator(".share-nb-button").count() + toolbar.get_by_text("Share Notebook").count()
            injected = panel.locator(".cm-line", has_text=str(pipeline_model)).count()
            # Run All, as a data scientist would: the notebook says it runs interactively
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            notice = panel.locator(".jp-OutputArea-output", has_text="interactive run").first
            notice.wait_for(timeout=300_000)
            panel.locator(".jp-OutputArea-output", has_text="objective:").first.wait_for(timeout=300_000)
            notice.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "lab_train_ran.png"))
            shown = notice.inner_text()
        finally:
            browser.close()
    assert buttons >= 5, f"the notebook toolbar shows {buttons} buttons: it did not render"
    assert share == 0, f"the Share Notebook button is in the notebook toolbar (screenshot: {shots})"
    assert injected, "the injected cell does not show the pipeline's model path"
    assert "build/interactive" in shown and "W&B disabled" in shown, shown
    assert hashlib.sha256(pipeline_model.read_bytes()).hexdigest() == before, (
        f"Run All in the lab rewrote {pipeline_model}"
    )
    assert (built_project / "build/interactive/models/model.txt").is_file()


def test_make_lab_prints_the_url_and_nothing_that_is_not_the_users_business(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["make", "-C", str(REPO), "lab", f"ARGS=--port={port}"],
        env=_lab_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    url = None
    try:
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = [
                m.group(0) for line in list(lines) if (m := re.search(r"http://127\.0\.0\.1:\d+/lab\?token=\w+", line))
            ]
            url = found[0] if found else None
            time.sleep(0.3)
        assert url, "`make lab` printed no URL with a token:\n" + "".join(lines)
        page = httpx.get(url, timeout=30)
        token = url.split("token=")[1]
        opened = httpx.get(
            f"http://127.0.0.1:{port}/api/contents/notebooks/03_train.ipynb",
            params={"content": 1},
            headers={"Authorization": f"token {token}"},
            timeout=120,
        )
        time.sleep(2)  # anything logged late (language servers, extensions) is printed by now
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the JupyterLab it started (their own session)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert page.status_code == 200 and "jupyter-config-data" in page.text, f"{url} answered {page.status_code}"
    assert opened.status_code == 200 and "product = {" in json.dumps(opened.json()["content"])
    noise = [
        line
        for line in lines
        if re.search(
            r"nbclassic|Notebook 7|Warning\b|warn\(|deprecated|extension was successfully|^\[[IW] |DAG render",
            line,
            re.I,
        )
    ]
    assert not noise, "`make lab` printed:\n" + "".join(noise) + "\nin:\n" + output
    assert str(port) in url, output


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=nbops test", "-c", "user.email=test@example.org", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"git {' '.join(args)} failed in {repo}:\n{proc.stderr}"
    return proc.stdout


def test_notebook_outputs_saved_by_jupyterlab_never_show_in_git_diff(tmp_path: Path) -> None:
    import nbformat

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, capture_output=True)
    # what is tested is the worktree's Makefile, .gitattributes and notebooks, committed or not
    names = [n for n in ("Makefile", ".gitattributes") if (REPO / n).exists()]
    names += [str(p.relative_to(REPO)) for p in (*REPO.glob("notebooks/*.ipynb"), *REPO.glob("dashboards/*.ipynb"))]
    for name in names:
        shutil.copyfile(REPO / name, clone / name)
    _git(clone, "add", *names)
    _git(clone, "commit", "-q", "--allow-empty", "-m", "as in the worktree")
    (clone / ".venv").symlink_to(REPO / ".venv")  # the repo's pinned nbstripout, without a second install
    for _ in range(2):  # idempotent
        proc = subprocess.run(["make", "-C", str(clone), "git-filter"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--keep-count" in _git(clone, "config", "filter.nbstripout.clean")
    # the committed notebooks are already stripped: the filter changes nothing in a fresh checkout
    for path in (*clone.glob("notebooks/*.ipynb"), *clone.glob("dashboards/*.ipynb")):
        os.utime(path)
    assert _git(clone, "status", "--porcelain", "--", "*.ipynb") == ""

    # JupyterLab saves a run notebook: counts, outputs (text and a figure), timings, widget state
    path = clone / "notebooks/03_train.ipynb"
    nb = nbformat.read(path, as_version=4)
    kept = []
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        cell.execution_count = count
        cell.metadata["execution"] = {"iopub.execute_input": "2026-12-01T10:00:00.000000Z"}
        if cell.metadata.get("keep_output"):
            kept.append(json.dumps(cell.outputs))
            continue
        cell.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text="OUTPUT-FROM-A-LAB-RUN 0.8253\n"),
            nbformat.v4.new_output(
                "display_data",
                data={
                    "image/png": (
                        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
                    ),
                    "text/plain": "<Figure size 640x480>",
                },
            ),
        ]
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"state": {"abc": {"model_name": "FloatProgressModel"}}}
    }
    nbformat.write(nb, path)
    assert "OUTPUT-FROM-A-LAB-RUN" in path.read_text()

    diff = _git(clone, "diff", "--", "notebooks/03_train.ipynb")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    for needle in ("OUTPUT-FROM-A-LAB-RUN", "image/png", "iopub", "widget-state", "output_type"):
        assert needle not in diff, f"`git diff` shows notebook outputs ({needle}):\n{diff[:3000]}"
    # --keep-count, as the pre-commit hook (nbval compares only cells with a count): counts may show
    assert all('"execution_count"' in line for line in changed), (
        "`git diff` shows more than execution counts:\n" + "\n".join(changed)
    )
    _git(clone, "add", "notebooks/03_train.ipynb")
    staged = nbformat.reads(_git(clone, "show", ":notebooks/03_train.ipynb"), as_version=4)
    code = [c for c in staged.cells if c.cell_type == "code"]
    assert all(c.outputs == [] for c in code if not c.metadata.get("keep_output")), "outputs reached the index"
    assert [json.dumps(c.outputs) for c in code if c.metadata.get("keep_output")] == kept, (
        "the outputs nbval checks were lost"
    )
    assert "OUTPUT-FROM-A-LAB-RUN" in path.read_text(), "the filter changed the file in the work tree"

    # a change to the source still shows
    cell = next(c for c in nb.cells if c.cell_type == "code" and "run_train" in c.source)
    cell.source += "\nprint(stage.product['model'])"
    nbformat.write(nb, path)
    diff = _git(clone, "diff", "--", "notebooks/03_train.ipynb")
    assert "print(stage.product['model'])" in diff and "OUTPUT-FROM-A-LAB-RUN" not in diff, diff[:3000]
