"""Both front ends in a real browser: the explorer in JupyterLab and the MLflow UI.

Headless Chromium (Debian's ``chromium`` package) driven by Playwright, against JupyterLab and
the MLflow server started here on free loopback ports and stopped by process id afterwards.
Screenshots go to ``outputs/browser/`` (or ``$MPIMPY_TEST_ARTIFACTS``).

Run with ``make test-browser`` (``pytest -m browser``); ``make test`` leaves these out.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("MPIMPY_TEST_ARTIFACTS", ROOT / "outputs" / "browser"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test-browser` installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def start(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, **kwargs)


def stop(process: subprocess.Popen) -> None:
    """Stop the server and everything it started (its process group), by process id."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:  # children left behind (kernels, workers) share the group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_explorer_in_jupyterlab(browser, tmp_path, artifacts):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    shutil.copy(ROOT / "notebooks" / "explorer.ipynb", tmp_path / "explorer.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"))
    lab = start([sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                 f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
                 f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                 "--ServerApp.allow_root=True"],
                tmp_path / "jupyterlab.log", env=env)
    try:
        wait_for(f"http://127.0.0.1:{port}/api/status?token={token}", lab)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}/lab/tree/explorer.ipynb?token={token}")
        page.locator(".jp-Notebook").wait_for(timeout=90_000)
        select_kernel = page.get_by_role("button", name="Select", exact=True)
        try:  # JupyterLab may ask which kernel to start: the notebook's own
            select_kernel.wait_for(timeout=15_000)
            select_kernel.click()
        except PlaywrightTimeout:
            pass
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        status = page.locator(".mpimpy-explorer-status")
        try:
            status.get_by_text(re.compile(r"RE = ")).wait_for(timeout=120_000)
        finally:
            page.screenshot(path=str(artifacts / "explorer-loaded.png"), full_page=True)
        first = status.inner_text()
        page.screenshot(path=str(artifacts / "explorer-before.png"), full_page=True)

        page.get_by_role("tab", name="device").click()
        var_slider = page.locator(".widget-slider", has_text="var").locator(".noUi-handle")
        var_slider.focus()
        page.keyboard.press("End")  # var to its maximum, 0.5
        page.wait_for_function(
            "(before) => { const s = document.querySelector('.mpimpy-explorer-status');"
            " return s && s.innerText.includes('RE =') && s.innerText !== before; }",
            arg=first, timeout=60_000)
        second = status.inner_text()
        page.screenshot(path=str(artifacts / "explorer-after.png"), full_page=True)

        def relative_error(text):
            return float(re.search(r"RE = ([0-9.e+-]+)", text).group(1))

        assert relative_error(second) > relative_error(first)
    finally:
        stop(lab)
    assert lab.poll() is not None


def test_mlflow_ui_lists_logged_runs(browser, tmp_path, artifacts):
    import numpy as np

    from mpimpy import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        names = [f"browser-run-{i}" for i in range(3)]
        rng = np.random.default_rng(0)
        for name in names:
            ideal = rng.standard_normal(50)
            with tracking.start_run("browser-test", run_name=name) as run:
                tracking.log_result(ideal + 0.01 * rng.standard_normal(50), ideal,
                                    sim_time_s=0.1, seed=0, params={"var": 0.05}, run=run,
                                    plots=False)
        experiment_id = tracking.ensure_experiment("browser-test")
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]

    port = free_port()
    server = start([sys.executable, "-m", "mpimpy", "ui", "--port", str(port)],
                   tmp_path / "mlflow.log", env=env)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server, timeout_s=180)
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs")
        training = page.get_by_text("Model training", exact=True)
        if training.count():  # MLflow 3 opens on its GenAI view; runs live under training
            training.first.click()
        try:
            for name in names:
                page.get_by_text(name).first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(artifacts / "mlflow-runs.png"), full_page=True)
    finally:
        stop(server)
    assert server.poll() is not None
