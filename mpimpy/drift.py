"""Devices over time: products and networks read from seconds to years after programming.

What the drift notebooks share (``notebooks/drift.ipynb``, ``drift_inference.ipynb``,
``compare_drift.ipynb``): the engine settings of each device model (:func:`engine_settings`),
a product's errors over time on one programming per seed (:func:`product_over_time`), a
converted network's accuracy over time (:func:`accuracy_over_time`) and a log time axis with
readable ticks (:func:`log_time_axis`). Every time is seconds after programming; reading at a
time never programs again (:meth:`mpimpy.DPETensor.at_time`), so each seed is one chip aging.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch

from .config import validate_time
from .devices.models import DEVICE_MODELS, Measured, resolve_device_model

DAY = 86400.0
YEAR = 365 * DAY
#: Named times after programming (seconds), for axes and defaults.
NAMED_TIMES = {"1 s": 1.0, "1 min": 60.0, "1 h": 3600.0, "1 day": DAY, "1 month": 30 * DAY,
               "1 year": YEAR, "10 years": 10 * YEAR}
#: The default sweep: 1 s to 10 years.
TIMES = tuple(NAMED_TIMES.values())
#: Axis label of the time after programming.
TIME_LABEL = "time after programming (s, log scale)"


def engine_settings(device_model: str = "lognormal", *, extrapolate_table: bool = True,
                    table: str | None = None, **settings) -> dict:
    """``DPETensor`` keyword arguments for a device model given by name.

    ``"measured"`` gets its table (``table``, default the shipped example) with
    ``extrapolate=extrapolate_table`` and the table's ``LGS``, ``HGS`` and ``g_level``
    (:meth:`~mpimpy.devices.models.Measured.hardware`); the other names are passed on.
    ``settings`` (any other ``DPETensor`` setting) come on top.
    """
    if device_model not in DEVICE_MODELS:
        resolve_device_model(device_model)  # the error that lists the names
    if device_model == "measured":
        model = Measured(**({} if table is None else {"path": table}),
                         extrapolate=extrapolate_table)
        return {**model.hardware(), "device_model": model, **settings}
    return {"device_model": device_model, **settings}


def _times(times: Iterable[float]) -> list[float]:
    times = [validate_time(t, "times") for t in times]
    if not times:
        raise ValueError("times must hold at least one time after programming (seconds)")
    return times


def product_over_time(x_data: torch.Tensor, w_data: torch.Tensor, times: Iterable[float] = TIMES,
                      *, seeds: Iterable[int] = (0,), x_slice=(1, 1, 2, 4), w_slice=(1, 1, 2, 4),
                      bw_e: int | None = None, paral_size=(64, 64), progress: bool = False,
                      **engine_kwargs) -> pd.DataFrame:
    """Errors of the simulated ``x_data @ w_data`` read at each time, one chip per seed.

    For each seed an engine (``engine_kwargs`` plus ``seed``) programs ``w_data`` once and
    reads it at every time. Returns one row per (seed, time): ``seed``, ``t_inference`` (s),
    ``RE``, ``SNR_dB``, ``ABSE``, ``max_abs_error`` (against the exact float64 product) and
    ``gain``, the least-squares gain ``sum(y * y_ideal) / sum(y_ideal ** 2)``.
    """
    from tqdm.auto import tqdm

    from .engine import DPETensor
    from .metrics import all_metrics
    from .slicing import SlicedData

    times, seeds = _times(times), list(seeds)
    ideal = torch.as_tensor(x_data).double() @ torch.as_tensor(w_data).double()
    rows = []
    with tqdm(total=len(seeds) * len(times), desc="product", disable=not progress) as bar:
        for seed in seeds:
            engine = DPETensor(seed=seed, **engine_kwargs)
            x = SlicedData(list(x_slice), bw_e=bw_e, paral_size=paral_size, device=engine.device)
            mat = SlicedData(list(w_slice), bw_e=bw_e, paral_size=paral_size,
                             device=engine.device, is_weight=True)
            x.slice_data_imp(engine, x_data, transpose=True)
            mat.slice_data_imp(engine, w_data)
            reference = ideal.to(engine.device)
            for t in times:
                y = engine.at_time(t)(x, mat).double()
                row = {"seed": seed, "t_inference": t, **all_metrics(reference, y)}
                row["gain"] = float((y * reference).sum() / (reference * reference).sum())
                rows.append(row)
                bar.update()
    return pd.DataFrame(rows)


def accuracy_over_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                       times: Iterable[float] = TIMES, *, seeds: Sequence[int] = (0,),
                       batch_size: int = 1000, progress: bool = False) -> pd.DataFrame:
    """Accuracy of a converted model read at each time, one programming (chip) per seed.

    For each seed the memristive layers are programmed (:func:`mpimpy.nn.program`) and the
    model is evaluated on ``x`` at every time (:func:`mpimpy.nn.set_time`, no re-programming).
    Returns one row per (seed, time): ``seed``, ``t_inference`` (s), ``accuracy``. The model is
    left programmed with the last seed, at the last time.
    """
    from tqdm.auto import tqdm

    from .nn import accuracy, program, set_time

    times, seeds = _times(times), list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one programming seed")
    rows = []
    with tqdm(total=len(seeds) * len(times), desc="accuracy", disable=not progress) as bar:
        for seed in seeds:
            program(model, seed=seed)
            for t in times:
                set_time(model, t)
                rows.append({"seed": seed, "t_inference": t,
                             "accuracy": accuracy(model, x, y, batch_size)})
                bar.update()
    return pd.DataFrame(rows)


def time_label(seconds: float) -> str:
    """A short name for a time after programming: ``"1 h"``, ``"10 years"``, ``"2.5 days"``."""
    for name, value in NAMED_TIMES.items():
        if seconds == value:
            return name
    for unit, value in (("years", YEAR), ("days", DAY), ("h", 3600.0), ("min", 60.0)):
        if seconds >= value:
            return f"{seconds / value:.3g} {unit}"
    return f"{seconds:.3g} s"


def log_time_axis(ax, times: Iterable[float] | None = None) -> None:
    """A log x axis in seconds after programming with ticks at the named times (1 s to 10
    years) within the data's range, labelled with units."""
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ticks = [t for t in (times if times is not None else TIMES) if low <= t <= high]
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([time_label(t) for t in ticks], rotation=30, ha="right")
    ax.set_xlabel(TIME_LABEL)


__all__ = ["DAY", "NAMED_TIMES", "TIMES", "TIME_LABEL", "YEAR", "accuracy_over_time",
           "engine_settings", "log_time_axis", "product_over_time", "time_label"]
