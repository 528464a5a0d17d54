"""Helpers of the study tests: study files next to the small notebooks of tests/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
SIMPLE = "simple.ipynb"


def write_study(folder: Path, name: str = "s", **content) -> Path:
    """A study file in ``folder``, next to copies of the test notebooks (a study may run the
    notebooks of its own folder)."""
    for notebook in DATA.glob("*.ipynb"):
        if not (folder / notebook.name).exists():
            shutil.copy(notebook, folder)
    data = {"name": name, "notebook": SIMPLE, **content}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def all_runs(client, experiment_name: str) -> list:
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"experiment {experiment_name!r} missing"
    return client.search_runs([experiment.experiment_id], max_results=1000)


def default_sigint() -> None:
    """``preexec_fn`` of a runner that a test stops as Ctrl-C does: SIGINT back to its default.

    A process started from a background job of a non-interactive shell (as CI scripts often
    are) inherits SIGINT ignored (POSIX), and Python keeps an ignored SIGINT ignored, as a
    program started with ``nohup`` should; the test plays a terminal's Ctrl-C.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
