"""`make lab`: JupyterLab with the repo's configuration opens a stage notebook with parameters injected."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyterlab_contents_api_opens_a_stage_notebook_with_injected_parameters(tmp_path: Path) -> None:
    port, token = _free_port(), "nbops-test-token"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(REPO / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "PLOOMBER_STATS_ENABLED": "false"}
    env.pop("NBOPS_PROJECT", None)
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", "--no-browser", "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/contents/notebooks/01_ingest.ipynb"
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(url, params={"content": 1}, headers={"Authorization": f"token {token}"}, timeout=10)
                break
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "lab.log").read_text()
                time.sleep(0.5)
        assert response is not None, "JupyterLab did not answer within 90 s"
        assert response.status_code == 200, response.text[:500]
        cells = response.json()["content"]["cells"]
        tags = [c["metadata"].get("tags", []) for c in cells]
        assert ["parameters"] in tags and ["injected-parameters"] in tags
        injected = "".join(next(c["source"] for c in cells if "injected-parameters" in c["metadata"].get("tags", [])))
        assert 'data = "simulate"' in injected and "product = {" in injected
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
