"""The shell a new user starts from: the documented commands work from a fresh shell, whose PATH
does not hold the project's environment, and ``make lab`` works as root too."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACTIVATE = ROOT / ".venv" / "bin" / "activate"
# `make -o` names a target make must not rebuild: the environment under test stays as it is
KEEP_ENV = ["-o", ".venv/.installed"]


def fresh_env(tmp_path: Path) -> dict[str, str]:
    """What a new login shell has: a system PATH, a home; nothing of this test's Python."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "MPIMPY_STORE": str(tmp_path / "store"), "JUPYTER_RUNTIME_DIR": str(home / "rt")}


def needs_make_and_venv():
    if shutil.which("make") is None:
        pytest.skip("no make")
    if not ACTIVATE.is_file():
        pytest.skip("the project's environment is not .venv (see make setup)")


def test_make_study_runs_a_study_from_a_fresh_shell(tmp_path):
    needs_make_and_venv()
    done = subprocess.run(["make", *KEEP_ENV, "study", "STUDY=quickstart", "WORKERS=1",
                           "ARGS=--dry-run"], cwd=ROOT, env=fresh_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Study 'quickstart' (dry run): 16 points, 16 to run" in done.stdout


def test_the_documented_activation_puts_mpimpy_on_path(tmp_path):
    needs_make_and_venv()
    script = "command -v mpimpy || echo 'not on PATH'\nsource .venv/bin/activate\n" \
             "mpimpy study validate quickstart"
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=fresh_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("not on PATH")  # a fresh shell has no mpimpy ...
    assert "ok: " in done.stdout and "quickstart.yaml (16 points" in done.stdout  # ... then has


def test_docs_say_how_to_put_mpimpy_on_path_before_using_it():
    """Every doc that writes bare ``mpimpy ...`` in a shell block first says how to get it."""
    for doc in (ROOT / "README.md", ROOT / "docs" / "studies.md"):
        text = doc.read_text()
        blocks = re.findall(r"```(?:bash|shell|sh)\n(.*?)```", text, re.S)
        commands = [line for block in blocks for line in block.splitlines()
                    if line.startswith("mpimpy ")]
        assert commands, doc
        first = text.index(commands[0])
        assert "source .venv/bin/activate" in text[:first], f"{doc}: {commands[0]}"


def test_make_lab_starts_jupyterlab_as_any_user_root_included(tmp_path):
    needs_make_and_venv()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = (f"LAB_ARGS=--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
            "--ServerApp.token=test-token --ServerApp.port_retries=0")
    lab = subprocess.Popen(["make", *KEEP_ENV, "lab", args], cwd=ROOT, env=fresh_env(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and lab.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/lab?token=test-token"
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(1)
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        output, _ = lab.communicate(timeout=60)
    assert status == 200, output
    if os.geteuid() == 0:
        assert "--allow-root" in output.splitlines()[0]  # the command make ran


def test_study_list_reads_a_local_store_as_mlflow_does(tmp_path):
    """``mpimpy study list`` reads a local store with two SQL queries (MLflow's client takes
    seconds to start): the same experiments, in the same order, with the same run counts."""
    from collections import Counter

    from mpimpy import tracking
    from mpimpy.cli import experiment_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.get_client(uri)
    for name, statuses in (("one", ["FINISHED", "FAILED", "FINISHED"]), ("two", ["KILLED"]),
                           ("gone", ["FINISHED"]), ("empty", [])):
        experiment_id = tracking.ensure_experiment(name, client=client)
        for status in statuses:
            run = client.create_run(experiment_id)
            client.set_terminated(run.info.run_id, status)
        deleted = client.create_run(experiment_id)  # a deleted run is not counted
        client.delete_run(deleted.info.run_id)
    client.create_run(tracking.ensure_experiment("running", client=client))
    client.delete_experiment(client.get_experiment_by_name("gone").experiment_id)

    expected = []
    for experiment in client.search_experiments():
        runs = client.search_runs([experiment.experiment_id])
        expected.append((experiment.name, experiment.experiment_id,
                         Counter(r.info.status for r in runs)))
    assert [name for name, _, _ in expected] == ["running", "empty", "two", "one", "Default"]
    assert experiment_runs(uri) == expected
