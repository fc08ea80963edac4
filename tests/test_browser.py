"""The token-alignment notebook in a real browser: JupyterLab + headless Chromium (Playwright).

Needs Debian's ``chromium`` and ``npm install`` in ``tests/e2e`` (``.ci/run`` installs both).
Skipped with the reason when they are missing, unless ``FINELIP_REQUIRE_E2E=1`` (CI), where a
missing browser is a failure.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "tests" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/lib/chromium/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _require_browser():
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        missing.append(f"playwright-core (cd {E2E} && npm install)")
    if shutil.which("node") is None:
        missing.append("node")
    if missing:
        message = "browser test needs " + "; ".join(missing)
        if os.environ.get("FINELIP_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {seconds} s")


def test_alignment_notebook_in_jupyterlab_heatmap_changes_on_word_click(tmp_path):
    _require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*"):
        old.unlink()
    notebook = nbformat.read(str(ROOT / "notebooks" / "04_token_alignment.ipynb"), as_version=4)
    at = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    tiny = "# small parameters for the test, as papermill would inject them\nmodel = None\nsteps = 2\nbatch_size = 8\npointing_samples = 4"
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(tiny))
    nbformat.write(notebook, str(tmp_path / "alignment.ipynb"))

    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", server)
        url = f"http://127.0.0.1:{port}/lab/tree/alignment.ipynb?token={token}"
        # Its own process group: on a timeout the driver and its browser go down together.
        driver = subprocess.Popen(["node", str(E2E / "alignment.mjs"), url, str(ARTIFACTS)], cwd=E2E, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            driver_output, _ = driver.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            driver_output, _ = driver.communicate()
    finally:
        server.terminate()  # JupyterLab shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)  # whatever of the server's group is left
        except ProcessLookupError:
            pass
        log.close()
        shutil.copy(tmp_path / "jupyterlab.log", ARTIFACTS / "jupyterlab.log")
    result_file = ARTIFACTS / "result.json"
    assert result_file.is_file(), f"the browser driver wrote no result: {driver_output}"
    result = json.loads(result_file.read_text())
    assert result["ok"], f"{result.get('error')}; screenshot: {ARTIFACTS / 'failure.png'}"
    assert result["errors"] == [], f"JavaScript errors were logged: {result['errors']}"
    before = np.asarray(Image.open(ARTIFACTS / "heatmap_before.png").convert("RGB"), dtype=np.float32)
    after = np.asarray(Image.open(ARTIFACTS / "heatmap_after.png").convert("RGB"), dtype=np.float32)
    assert before.shape == after.shape and before.shape[0] > 100
    changed = (np.abs(before - after).max(-1) > 8).mean()
    assert changed > 0.01, f"the rendered heatmap barely changed ({changed:.2%} of pixels) after clicking a word"
    assert (ARTIFACTS / "notebook.png").is_file()
