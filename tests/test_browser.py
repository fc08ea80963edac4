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


def _artifacts(name: str) -> Path:
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _run_in_jupyterlab(tmp_path, notebook: str, driver: str, artifacts: Path) -> tuple[dict, str]:
    """JupyterLab on ``tmp_path`` (its own config, runtime and workspace folders, a random token),
    ``node tests/e2e/<driver> <notebook url> <artifacts>``, the server shut down; returns the
    driver's result.json and its output. The server's log is kept with the artifacts."""
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
        url = f"http://127.0.0.1:{port}/lab/tree/{notebook}?token={token}"
        # Its own process group: on a timeout the driver and its browser go down together.
        process = subprocess.Popen(["node", str(E2E / driver), url, str(artifacts)], cwd=E2E, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            driver_output, _ = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            driver_output, _ = process.communicate()
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
        shutil.copy(tmp_path / "jupyterlab.log", artifacts / "jupyterlab.log")
    result_file = artifacts / "result.json"
    assert result_file.is_file(), f"the browser driver wrote no result: {driver_output}"
    result = json.loads(result_file.read_text())
    assert result["ok"], f"{result.get('error')}; screenshot: {artifacts / 'failure.png'}"
    assert result["errors"] == [], f"JavaScript errors were logged: {result['errors']}"
    return result, driver_output


def test_alignment_notebook_in_jupyterlab_heatmap_changes_on_word_click(tmp_path):
    _require_browser()
    artifacts = _artifacts("alignment")
    notebook = nbformat.read(str(ROOT / "notebooks" / "04_token_alignment.ipynb"), as_version=4)
    at = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    tiny = "# small parameters for the test, as papermill would inject them\nmodel = None\nsteps = 2\nbatch_size = 8\npointing_samples = 4"
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(tiny))
    nbformat.write(notebook, str(tmp_path / "alignment.ipynb"))
    _run_in_jupyterlab(tmp_path, "alignment.ipynb", "alignment.mjs", artifacts)
    before = np.asarray(Image.open(artifacts / "heatmap_before.png").convert("RGB"), dtype=np.float32)
    after = np.asarray(Image.open(artifacts / "heatmap_after.png").convert("RGB"), dtype=np.float32)
    assert before.shape == after.shape and before.shape[0] > 100
    changed = (np.abs(before - after).max(-1) > 8).mean()
    assert changed > 0.01, f"the rendered heatmap barely changed ({changed:.2%} of pixels) after clicking a word"
    assert (artifacts / "notebook.png").is_file()


def test_explorer_notebook_in_jupyterlab_baseline_and_a_brushed_axis_change_the_tables(tmp_path):
    """The explorer on the shipped calibration: the effects table follows *compare with*, and a
    brush dragged on the metric's parallel axis (plotly in the page → the kernel → the table) leaves
    fewer settings in the table under it."""
    import re

    _require_browser()
    artifacts = _artifacts("explorer")
    notebook = nbformat.read(str(ROOT / "ablations" / "explorer.ipynb"), as_version=4)
    at = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    exports = tmp_path / "exports"
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(f"export_dir = {str(exports)!r}  # not the project's folder"))
    nbformat.write(notebook, str(tmp_path / "explorer.ipynb"))
    result, output = _run_in_jupyterlab(tmp_path, "explorer.ipynb", "explorer.mjs", artifacts)
    # the default view compares with the preset default (K = 16): K = 4 is one of its rows
    assert "atrm_k=4" in result["effects_before"] and result["effects_before"] != result["effects_after"]
    assert "atrm_k=16" in result["effects_after"]  # against K = 4 the preset default is one row among the others
    total = int(re.search(r"(\d+) of (\d+) setting", result["brush_before"]).group(2))
    assert result["brush_before"].startswith(f"{total} of {total} setting") and result["rows_before"] == total == 18
    kept = int(re.search(r"(\d+) of \d+ setting\(s\) pass the brushes on (\S+)", result["brush_after"]).group(1))
    assert 0 < kept < total and result["rows_after"] == kept, (result["brush_after"], result["rows_after"])
    assert "global/group/t2i" in result["brush_after"]  # the brushed axis was the metric's
    for name in ("explorer_default_view.png", "effects_before.png", "effects_after.png", "parallel_before.png",
                 "parallel_brushed.png", "settings_brushed.png"):
        assert Image.open(artifacts / name).size[0] > 200, name
