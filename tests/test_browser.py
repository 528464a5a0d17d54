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

import nbformat
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
    """The shipped explorer notebook, used in JupyterLab as a user would: a slider changes the
    result; an invalid input greys the figures out and disables logging; saving the notebook
    (JupyterLab also autosaves) leaves the tracked file exactly as committed, so runs do not
    log a -dirty commit."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from mpimpy import nbclean

    hook = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "mpimpy.json"
    assert hook.is_file(), "the Jupyter pre-save hook is not installed: run `make setup`"
    shipped = ROOT / "notebooks" / "explorer.ipynb"
    committed = shipped.read_bytes()
    checkpoints = shipped.parent / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"))
    lab = start([sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                 f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
                 f"--ServerApp.root_dir={shipped.parent}", "--LabApp.news_url=",
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

        page.get_by_role("tab", name="format").click()
        x_slices = page.locator(".widget-text", has_text="x_slice").locator("input")
        x_slices.fill("2,1,2")
        x_slices.press("Enter")
        page.locator(".mpimpy-explorer-figures.mpimpy-explorer-stale").wait_for(timeout=30_000)
        assert "sign slice" in status.inner_text()
        assert page.get_by_text("Out of date").count()
        assert page.get_by_role("button", name="Log to MLflow").is_disabled()
        page.screenshot(path=str(artifacts / "explorer-stale.png"), full_page=True)

        saved_before = shipped.stat().st_mtime_ns
        page.locator(".jp-Notebook").first.click()  # the notebook, not a widget, has the focus
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        while shipped.stat().st_mtime_ns == saved_before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert shipped.stat().st_mtime_ns != saved_before, "JupyterLab did not save"
        time.sleep(0.5)  # the write is complete
        (artifacts / "explorer-saved.ipynb").write_bytes(shipped.read_bytes())
        assert shipped.read_bytes() == committed, "saving the explorer changed the tracked file"
        assert nbclean.is_clean(nbformat.read(str(shipped), as_version=4))
    finally:
        stop(lab)
        shipped.write_bytes(committed)
        if not had_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
    assert lab.poll() is not None


def test_mlflow_ui_opens_experiments_on_their_runs(browser, tmp_path, artifacts):
    """A shrunk quickstart study through the real runner, then `mpimpy ui` in a browser that
    never saw MLflow: the experiment opens on its runs table, without any click, with the
    key metrics and the swept parameters as columns, and the study's description."""
    import yaml

    from mpimpy import tracking
    from mpimpy.studies import run_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    shipped = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    study = {**shipped, "name": "ui-study", "experiment": "ui-study",
             "notebook": str(ROOT / "notebooks" / "quickstart.ipynb"),
             "parameters": {"m": 8, "k": 64, "n": 8},
             "grid": {"fmt": ["INT", "FP"], "var": [0.1]}, "seeds": [0]}
    path = tmp_path / "ui-study.yaml"
    path.write_text(yaml.safe_dump(study))
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
        assert result.ok, result.summary()
        client = tracking.get_client(uri)
        experiment = client.get_experiment_by_name("ui-study")
        runs = client.search_runs([experiment.experiment_id])
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    names = sorted(r.info.run_name for r in runs)
    assert names == ["fmt=FP,var=0.1,seed=0", "fmt=INT,var=0.1,seed=0"]

    port = free_port()
    server = start([sys.executable, "-m", "mpimpy", "ui", "--port", str(port)],
                   tmp_path / "mlflow.log", env=env)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server, timeout_s=180)
        page = browser.new_context(viewport={"width": 1700, "height": 900}).new_page()
        page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}")
        try:
            for name in names:
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            header = page.locator("[role=columnheader]")
            header.filter(has_text=re.compile(r"^SNR_dB$")).first.wait_for(timeout=30_000)
            shown = {text.strip() for text in header.all_inner_texts()}
            assert {"RE", "SNR_dB", "fmt", "var"} <= shown, shown
            assert page.get_by_text(shipped["description"]).count()
        finally:
            page.screenshot(path=str(artifacts / "mlflow-runs.png"), full_page=True)
        assert "GenAI" not in page.url and "/runs" in page.url
    finally:
        stop(server)
    assert server.poll() is not None
