"""Logging an application run to MLflow (on top of :mod:`mpimpy.tracking`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mpimpy import tracking


def log_history(name: str, values: Sequence[float], steps: Sequence[int] | None = None,
                run=None) -> int:
    """Log a metric's history (one value per step, e.g. the error after each time step) in
    one batch; non-finite values are skipped. Returns how many values were logged.

    ``run``: a :class:`mpimpy.tracking.TrackedRun` (default the open run).
    """
    from mlflow.entities import Metric

    run = run or tracking.current_run()
    if run is None:
        raise RuntimeError("no open run: call mpimpy.tracking.start_run() first, or pass run")
    steps = range(len(values)) if steps is None else steps
    if len(steps) != len(values):
        raise ValueError(f"{len(values)} values but {len(steps)} steps")
    now = int(time.time() * 1000)
    items = []
    for step, value in zip(steps, values, strict=True):
        finite, _ = tracking.loggable_metrics({name: float(value)})
        if name in finite:
            items.append(Metric(name, finite[name], now, int(step)))
    for start in range(0, len(items), 1000):
        run.client.log_batch(run.run_id, metrics=items[start:start + 1000])
    return len(items)


def log_answer(answer_sim, answer_ideal, matmul, *, seed: int | None,
               params: Mapping[str, Any] | None = None,
               metrics: Mapping[str, float] | None = None,
               tags: Mapping[str, Any] | None = None, run=None,
               sim_time_s: float | None = None) -> dict[str, float]:
    """:func:`mpimpy.tracking.log_result` of an application's answer against the exact one.

    Logs the hardware and slicing settings of ``matmul`` (a
    :class:`~mpimpy.apps.matmul.CrossbarMatmul`), ``params``, RE/SNR/... of the answer,
    ``sim_time_s`` (the time ``matmul`` spent in simulated products unless given),
    ``n_products`` (its calls) and ``metrics``.
    """
    all_params = dict(matmul.params()) if hasattr(matmul, "params") else {}
    all_params.update(params or {})
    extra = {"n_products": float(getattr(matmul, "calls", 0))}
    extra.update(metrics or {})
    return tracking.log_result(answer_sim, answer_ideal,
                               sim_time_s=float(getattr(matmul, "sim_time_s", 0.0)
                                                if sim_time_s is None else sim_time_s),
                               seed=seed, params=all_params, tags=tags, run=run,
                               extra_metrics=extra)


def save_figure(figure, name: str, gallery_dir: str | Path | None = None, run=None) -> None:
    """Log ``figure`` as ``plots/<name>.png`` in the run (default: the open one) and, when
    ``gallery_dir`` is set, also save it there as ``<name>.png``."""
    from mpimpy.studies.compare import log_figure

    log_figure(figure, name, run)
    if gallery_dir:
        folder = Path(gallery_dir)
        folder.mkdir(parents=True, exist_ok=True)
        figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")


__all__ = ["log_answer", "log_history", "save_figure"]
