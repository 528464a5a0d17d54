"""Interactive explorer: move a hardware slider, see the simulated product change.

Two layers, so the logic can be tested without a browser:

* :func:`simulate` takes plain settings (:class:`ExplorerSettings`), runs one simulated product
  on random data and returns the results and metrics: no widgets involved.
* :class:`Explorer` wraps it in ipywidgets for JupyterLab (``notebooks/explorer.ipynb``):
  controls for the settings a slider or a menu can set, three figures redrawn after each
  change (debounced, so dragging a slider does not queue dozens of runs) and a button that
  logs the current configuration and its figures to MLflow, as a run named after the settings
  that differ from the defaults.

The hardware settings are :class:`~mpimpy.config.CrossbarConfig`'s (names, types, defaults and
ranges declared there once); the explorer adds only its own: the operands' format and sizes,
its widgets' limits and the defaults it changes (:data:`EXPLORER_DEFAULTS`).

An update takes well under a second from input to redraw on a laptop CPU: sizes are capped
(:data:`LIMITS`), the three figures are made once and only their data change
(:class:`ExplorerFigures`), and a figure whose data did not change is not drawn again
(``benchmarks/bench_explorer.py`` measures it against a full redraw). While the settings are
invalid the figures are marked out of date and logging is refused.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import Field, asdict, dataclass, field, fields, make_dataclass, replace

import numpy as np
import torch

from . import tracking
from .calibration import FROZEN_ADC_RANGES
from .config import ADC_RANGE_MODES, DEFAULT_VAR, INPUT_ENCODINGS, MAPPINGS, CrossbarConfig
from .engine import DPETensor
from .metrics import all_metrics
from .slicing import SlicedData, parse_slice_method

#: (min, max) of the problem and array sizes the explorer allows.
LIMITS = {"m": (1, 512), "k": (1, 1024), "n": (1, 512), "array_size": (4, 256)}
#: DAC and ADC levels the explorer offers: 2**1 .. 2**16 (``None``: an ideal converter).
CONVERTER_LEVELS = tuple(2**bits for bits in range(1, 17))
#: Outputs shown in the scatter plot (a fixed random subset beyond that: drawing 260k points
#: would take longer than the simulation and show no more).
MAX_SCATTER_POINTS = 8192


#: The explorer's hardware defaults where they differ from :class:`CrossbarConfig`'s (every
#: other hardware default is CrossbarConfig's, and so are every setting's name and type):
EXPLORER_DEFAULTS = {
    # CrossbarConfig's None means "the device model's own variation", 0.05 for the lognormal
    # model: the slider needs that number
    "var": DEFAULT_VAR,
    # the worst-case range leaves most ADC levels unused on random data, so every figure would
    # show ADC rounding first; calibrated (on a calibration batch), each slider's own effect
    # shows
    "adc_range": "calibrated",
}
#: The hardware settings, in :class:`CrossbarConfig`'s order (all of them are settings of the
#: explorer; its widgets set those a slider or a menu can, the others keep their value).
HARDWARE = tuple(f.name for f in fields(CrossbarConfig))


def _hardware_field(setting: Field):
    """A CrossbarConfig field as an explorer field: its name, type, default (or
    :data:`EXPLORER_DEFAULTS`') and metadata."""
    if setting.name in EXPLORER_DEFAULTS:
        return field(default=EXPLORER_DEFAULTS[setting.name], metadata=setting.metadata)
    return field(default=setting.default, default_factory=setting.default_factory,
                 metadata=setting.metadata)


@dataclass(frozen=True)
class _Format:
    """The operands' format, as the explorer's text boxes hold it."""

    fmt: str = "INT"
    x_slice: str = "1,1,2,4"
    w_slice: str = "1,1,2,4"
    bw_e: int = 8


_Hardware = make_dataclass(
    "_Hardware", [(f.name, f.type, _hardware_field(f)) for f in fields(CrossbarConfig)],
    frozen=True, namespace={"__module__": __name__})


# A dataclass's fields follow its bases in reverse order (_Format's, then _Hardware's), then its
# own: the order a run's name lists the changed settings in.
@dataclass(frozen=True)
class ExplorerSettings(_Hardware, _Format):
    """Everything one explorer update simulates.

    Fields, in this order: ``fmt``, ``x_slice``, ``w_slice`` (comma-separated widths),
    ``bw_e``; every :class:`~mpimpy.config.CrossbarConfig` setting (:data:`HARDWARE`) with its
    name, type, unit and range, and its default but for :data:`EXPLORER_DEFAULTS`;
    ``array_size`` (rows = cols of an array); ``m, k, n``: x is (m, k), W is (k, n); ``seed``.
    Checked at construction: the explorer's own limits (:data:`LIMITS`,
    :data:`CONVERTER_LEVELS`), then the hardware by CrossbarConfig, errors naming the field.
    """

    array_size: int = 64
    m: int = 128
    k: int = 256
    n: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.fmt not in ("INT", "FP"):
            raise ValueError(f"fmt must be 'INT' or 'FP', got {self.fmt!r}")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}] in the explorer, got {value}")
        for name in ("rdac", "radc"):
            levels = getattr(self, name)
            if levels is not None and levels not in CONVERTER_LEVELS:
                raise ValueError(f"{name} must be one of {CONVERTER_LEVELS} levels (2**1 .. "
                                 f"2**16) or None (ideal) in the explorer, got {levels!r}")
        CrossbarConfig(**self.hardware())

    def hardware(self) -> dict:
        """The :class:`CrossbarConfig` settings, by name."""
        return {name: getattr(self, name) for name in HARDWARE}

    def engine_kwargs(self) -> dict:
        """The :class:`~mpimpy.engine.DPETensor` arguments: the hardware and the seed."""
        return {**self.hardware(), "seed": self.seed}

    def changed(self) -> dict:
        """The settings that differ from the defaults, in field order (a run's name)."""
        defaults = ExplorerSettings()
        return {k: v for k, v in asdict(self).items() if getattr(defaults, k) != v}


@dataclass
class ExplorerResult:
    settings: ExplorerSettings
    y_sim: np.ndarray
    y_ideal: np.ndarray
    conductance: np.ndarray  # (rows, cols) siemens: the first programmed array
    metrics: dict
    sim_time_s: float
    engine: DPETensor
    x: SlicedData
    mat: SlicedData


def parse_slices(text: str, name: str) -> list[int]:
    """``"1,1,2,4"`` -> ``[1, 1, 2, 4]``, with the error naming the control."""
    try:
        widths = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers like 1,1,2,4, got "
                         f"{text!r}") from None
    # the sign-slice rule depends on the encodings: the engine checks it
    return list(parse_slice_method(widths, name, sign_slice=False))


def simulate(settings: ExplorerSettings) -> ExplorerResult:
    """One simulated product on standard-normal data drawn from ``settings.seed``: inputs
    scaled per vector; a frozen ADC range (``"calibrated"``) is calibrated first on another
    standard-normal batch of the same size, drawn from the same seed (never on ``x``)."""
    gen = torch.Generator().manual_seed(settings.seed)
    x_data = torch.randn(settings.m, settings.k, generator=gen)
    w_data = torch.randn(settings.k, settings.n, generator=gen)
    bw_e = settings.bw_e if settings.fmt == "FP" else None
    tile = (settings.array_size, settings.array_size)
    engine = DPETensor(**settings.engine_kwargs())

    def inputs(data):
        return SlicedData(parse_slices(settings.x_slice, "x_slice"), bw_e=bw_e, paral_size=tile,
                          quant_gran="per-vector").slice_data_imp(engine, data, transpose=True)

    mat = SlicedData(parse_slices(settings.w_slice, "w_slice"), bw_e=bw_e, paral_size=tile)
    start = time.perf_counter()
    x = inputs(x_data)
    mat.slice_data_imp(engine, w_data)
    if engine.config.radc is not None and engine.config.adc_range in FROZEN_ADC_RANGES:
        engine.calibrate(inputs(torch.randn(settings.m, settings.k, generator=gen)), mat)
    y = engine(x, mat)
    elapsed = time.perf_counter() - start
    y_ideal = (x_data @ w_data).numpy()
    conductance = engine.programmed(mat).positive[0, 0, 0].cpu().numpy()
    metrics = all_metrics(y_ideal, y.numpy())
    # what this product costs, priced with ISAAC's components (the runs it logs carry it too)
    metrics["energy_per_mac_pJ"] = tracking.simulation_cost(engine).energy_per_mac * 1e12
    return ExplorerResult(settings, y.numpy(), y_ideal, conductance, metrics, elapsed, engine,
                          x, mat)


def _scatter_points(result: ExplorerResult) -> tuple[np.ndarray, np.ndarray]:
    """(expected, measured) outputs, at most :data:`MAX_SCATTER_POINTS` (seeded subset)."""
    ideal, sim = result.y_ideal.ravel(), result.y_sim.ravel()
    if ideal.size > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).choice(ideal.size, MAX_SCATTER_POINTS, replace=False)
        ideal, sim = ideal[keep], sim[keep]
    return ideal, sim


class ExplorerFigures:
    """The explorer's three figures, made once and updated in place.

    ``scatter`` (measured vs expected output), ``histogram`` (output error) and
    ``conductance`` (the first programmed array) are bare :class:`matplotlib.figure.Figure`
    objects (no pyplot state). :meth:`update` changes their data, not their layout, and draws
    only the figures whose data changed; :meth:`png` renders one.
    """

    NAMES = ("scatter", "histogram", "conductance")

    def __init__(self, dpi: int = 80):
        from matplotlib.figure import Figure

        self.dpi = dpi
        self.figures = {name: Figure(figsize=(4.6, 3.9), dpi=dpi) for name in self.NAMES}
        for figure in self.figures.values():
            figure.subplots_adjust(left=0.2, right=0.95, bottom=0.15, top=0.9)
        self.figures["conductance"].subplots_adjust(left=0.16, right=0.98)
        ax = self.figures["scatter"].add_subplot()
        self._points = ax.scatter([], [], s=3, alpha=0.4, linewidths=0)
        (self._ideal_line,) = ax.plot([], [], color="black", lw=0.8, label="ideal (y = x)")
        ax.set(xlabel="expected output, exact x @ W (a.u.)",
               ylabel="measured output, simulated (a.u.)")
        ax.legend(loc="upper left", fontsize="small")
        ax = self.figures["histogram"].add_subplot()
        self._bars = ax.stairs([0.0], [0.0, 1.0], fill=True, color="tab:red", alpha=0.8)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set(xlabel="output error, measured - expected (a.u.)",
               ylabel="outputs (count)", title="output error")
        ax = self.figures["conductance"].add_subplot()
        self._image = ax.imshow(np.zeros((2, 2)), cmap="viridis", aspect="auto",
                                interpolation="nearest")
        ax.set(xlabel="bit line (column index)", ylabel="word line (row index)",
               title="conductance of array (0, 0), slice 0")
        self.figures["conductance"].colorbar(self._image, ax=ax, label="conductance (uS)")
        self._shown: ExplorerResult | None = None

    def update(self, result: ExplorerResult) -> set[str]:
        """Show ``result``; returns the names of the figures whose data changed."""
        changed = set()
        shown = self._shown
        if shown is None or not (np.array_equal(shown.y_sim, result.y_sim)
                                 and np.array_equal(shown.y_ideal, result.y_ideal)):
            self._update_scatter(result)
            self._update_histogram(result)
            changed |= {"scatter", "histogram"}
        if shown is None or not np.array_equal(shown.conductance, result.conductance):
            self._update_conductance(result)
            changed.add("conductance")
        self._shown = result
        return changed

    def _update_scatter(self, result: ExplorerResult) -> None:
        ideal, sim = _scatter_points(result)
        self._points.set_offsets(np.column_stack([ideal, sim]))
        low = float(min(ideal.min(), sim.min()))
        high = float(max(ideal.max(), sim.max()))
        pad = 0.05 * (high - low or 1.0)
        self._ideal_line.set_data([low, high], [low, high])
        ax = self._points.axes
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        m = result.metrics
        ax.set_title(f"RE = {m['RE']:.3g}, SNR = {m['SNR_dB']:.1f} dB")

    def _update_histogram(self, result: ExplorerResult) -> None:
        error = (result.y_sim - result.y_ideal).ravel()
        low, high = float(error.min()), float(error.max())
        if high - low < 1e-12 * max(1.0, abs(low)):  # an exact result: one narrow bin
            low, high = low - 0.5, high + 0.5
        counts, edges = np.histogram(error, bins=60, range=(low, high))
        self._bars.set_data(counts.astype(float), edges)
        ax = self._bars.axes
        ax.set_xlim(min(edges[0], 0.0), max(edges[-1], 0.0))
        ax.set_ylim(0, max(1, int(counts.max())) * 1.05)

    def _update_conductance(self, result: ExplorerResult) -> None:
        micro = result.conductance * 1e6
        self._image.set_data(micro)
        self._image.set_extent((-0.5, micro.shape[1] - 0.5, micro.shape[0] - 0.5, -0.5))
        self._image.set_clim(float(micro.min()), float(max(micro.max(), micro.min() + 1e-9)))

    def png(self, name: str) -> bytes:
        """One figure as PNG bytes (drawn now, fast zlib level)."""
        import io

        buffer = io.BytesIO()
        self.figures[name].savefig(buffer, format="png", dpi=self.dpi,
                                   pil_kwargs={"compress_level": 1})
        return buffer.getvalue()


def draw(result: ExplorerResult, figure=None):
    """Scatter, error histogram and conductance map of one result on one new figure (for
    logging); the widgets use :class:`ExplorerFigures` instead."""
    from matplotlib.figure import Figure

    figure = figure or Figure(figsize=(13, 3.8))
    figure.clear()
    scatter, histogram, gmap = figure.subplots(1, 3)
    ideal, sim = _scatter_points(result)
    scatter.scatter(ideal, sim, s=3, alpha=0.4)
    low, high = float(min(ideal.min(), sim.min())), float(max(ideal.max(), sim.max()))
    scatter.plot([low, high], [low, high], color="black", lw=0.8)
    scatter.set(xlabel="expected output, exact x @ W (a.u.)",
                ylabel="measured output, simulated (a.u.)", title="measured vs expected")
    histogram.hist((result.y_sim - result.y_ideal).ravel(), bins=60, color="tab:red")
    histogram.set(xlabel="output error, measured - expected (a.u.)", ylabel="outputs (count)",
                  title="output error")
    image = gmap.imshow(result.conductance * 1e6, cmap="viridis", aspect="auto")
    gmap.set(xlabel="bit line (column index)", ylabel="word line (row index)",
             title="conductance of array (0, 0), slice 0")
    figure.colorbar(image, ax=gmap, label="conductance (uS)")
    figure.tight_layout()
    return figure


def summary(result: ExplorerResult) -> str:
    m = result.metrics
    return (f"RE = {m['RE']:.4g}   SNR = {m['SNR_dB']:.2f} dB   ABSE = {m['ABSE']:.4g}   "
            f"energy = {m['energy_per_mac_pJ']:.3g} pJ/MAC (ISAAC 32 nm)   "
            f"simulated in {result.sim_time_s * 1e3:.0f} ms")


def _levels_options(name: str) -> list:
    """Dropdown options of a converter: ideal, then 2 .. 65536 levels with their bits."""
    return [(f"ideal {name}", None)] + [(f"{levels} ({levels.bit_length() - 1} bit)", levels)
                                        for levels in CONVERTER_LEVELS]


#: CSS of the explorer (an HTML widget carries it): out-of-date figures are faded.
_STYLE = ("<style>.mpimpy-explorer-stale img{opacity:0.3;filter:grayscale(1)}"
          ".mpimpy-explorer-banner{color:#b00;font-weight:bold}</style>")


class Explorer:
    """ipywidgets front end of :func:`simulate`.

    ``Explorer(debounce_s=0.2)``; display it with ``explorer.widget``. With ``debounce_s=0``
    every change re-simulates at once (what tests use). ``controls`` maps each setting it
    offers to its widget (the others keep the values of ``settings``); ``status`` holds the
    RE/SNR line, or the error while the settings are invalid (``error``; the figures are then
    marked out of date and logging is refused);
    ``log_button`` logs the current run. ``timings`` holds the last update's seconds:
    ``simulate``, ``draw`` (the figures whose data changed) and ``total``.
    """

    def __init__(self, settings: ExplorerSettings | None = None, debounce_s: float = 0.2,
                 experiment: str = "explorer"):
        import ipywidgets as w

        self.settings = settings or ExplorerSettings()
        self.debounce_s = debounce_s
        self.experiment = experiment
        self.result: ExplorerResult | None = None
        self.error: str | None = None
        self.updates = 0
        self.timings: dict[str, float] = {}
        self.redrawn: set[str] = set()
        self.logged_run_id: str | None = None
        self._pending = None
        s = self.settings
        style = {"description_width": "150px"}
        self.controls = {
            "fmt": w.ToggleButtons(options=["INT", "FP"], value=s.fmt, description="format"),
            "x_slice": w.Text(value=s.x_slice, description="x_slice (bits)"),
            "w_slice": w.Text(value=s.w_slice, description="w_slice (bits)"),
            "bw_e": w.IntSlider(value=s.bw_e, min=2, max=11, description="bw_e (bits, FP)"),
            "HGS": w.FloatLogSlider(value=s.HGS, base=10, min=-6, max=-3, description="HGS (S)"),
            "LGS": w.FloatLogSlider(value=s.LGS, base=10, min=-9, max=-5, description="LGS (S)"),
            "g_level": w.IntSlider(value=s.g_level, min=2, max=256,
                                   description="g_level (levels)"),
            "var": w.FloatSlider(value=s.var, min=0, max=0.5, step=0.01, description="var"),
            "read_noise": w.FloatSlider(value=s.read_noise, min=0, max=0.2, step=0.005,
                                        description="read_noise"),
            "vnoise": w.FloatSlider(value=s.vnoise, min=0, max=0.2, step=0.005,
                                    description="vnoise"),
            "stuck_fault_ratio": w.FloatSlider(value=s.stuck_fault_ratio, min=0, max=0.2,
                                               step=0.005, description="stuck_fault_ratio"),
            "stuck_fault_value": w.ToggleButtons(options=[("LGS", 0), ("HGS", 1)],
                                                 value=s.stuck_fault_value,
                                                 description="stuck at"),
            "rdac": w.Dropdown(options=_levels_options("DAC"), value=s.rdac,
                               description="rdac (levels)"),
            "radc": w.Dropdown(options=_levels_options("ADC"), value=s.radc,
                               description="radc (levels)"),
            "adc_range": w.Dropdown(options=list(ADC_RANGE_MODES), value=s.adc_range,
                                    description="adc_range"),
            "mapping": w.ToggleButtons(options=list(MAPPINGS), value=s.mapping,
                                       description="mapping"),
            "input_encoding": w.Dropdown(options=list(INPUT_ENCODINGS), value=s.input_encoding,
                                         description="input_encoding"),
            "wire_resistance": w.FloatSlider(value=s.wire_resistance, min=0, max=10, step=0.1,
                                             description="wire_resistance (ohm)"),
            "array_size": w.Dropdown(options=[16, 32, 64, 128, 256], value=s.array_size,
                                     description="array size (cells)"),
            "m": w.IntSlider(value=s.m, min=1, max=LIMITS["m"][1], description="m (vectors)"),
            "k": w.IntSlider(value=s.k, min=1, max=LIMITS["k"][1], description="k (rows of W)"),
            "n": w.IntSlider(value=s.n, min=1, max=LIMITS["n"][1], description="n (cols of W)"),
            "seed": w.IntText(value=s.seed, description="seed"),
        }
        for control in self.controls.values():
            control.style = style
            control.layout.width = "460px"
            control.continuous_update = False
            control.observe(self._changed, names="value")
        self.controls["bw_e"].disabled = s.fmt != "FP"
        self.status = w.HTML(value="", layout=w.Layout(min_height="1.5em"))
        self.status.add_class("mpimpy-explorer-status")
        self.log_button = w.Button(description="Log to MLflow", icon="upload")
        self.log_button.on_click(self._log_clicked)
        self.log_output = w.HTML(value="")
        self.log_output.add_class("mpimpy-explorer-log")
        # Each figure travels as PNG bytes in an Image widget: plain widget state, so a redraw
        # triggered from a (debounced) callback reaches the browser like any other change.
        self.figures = ExplorerFigures()
        self.images = {name: w.Image(format="png", layout=w.Layout(max_width="420px"))
                       for name in ExplorerFigures.NAMES}
        self.stale_banner = w.HTML(value="")
        self.stale_banner.add_class("mpimpy-explorer-banner")
        self.figure_box = w.HBox(list(self.images.values()))
        self.figure_box.add_class("mpimpy-explorer-figures")
        groups = [("format", ["fmt", "x_slice", "w_slice", "bw_e"]),
                  ("device", ["HGS", "LGS", "g_level", "var", "read_noise", "stuck_fault_ratio",
                              "stuck_fault_value"]),
                  ("peripherals", ["rdac", "radc", "adc_range", "vnoise", "input_encoding"]),
                  ("array", ["mapping", "wire_resistance", "array_size"]),
                  ("problem", ["m", "k", "n", "seed"])]
        tabs = w.Tab(children=[w.VBox([self.controls[n] for n in names]) for _, names in groups])
        for i, (title, _) in enumerate(groups):
            tabs.set_title(i, title)
        self.widget = w.VBox([w.HTML(_STYLE), tabs, w.HBox([self.log_button, self.log_output]),
                              self.status, self.stale_banner, self.figure_box])
        self.update()

    def current_settings(self) -> ExplorerSettings:
        values = {name: control.value for name, control in self.controls.items()}
        return replace(self.settings, **values)

    def _changed(self, change):
        if change.get("owner") is self.controls["fmt"]:
            self.controls["bw_e"].disabled = change["new"] != "FP"
        if self.debounce_s <= 0:
            self.update()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (plain Python): update now
            self.update()
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(self.debounce_s, self.update)

    def update(self):
        """Re-simulate with the controls' values and redraw the figures whose data changed.

        Invalid settings show their error in the status line, mark the figures (of the last
        valid settings) out of date and disable logging until fixed.
        """
        start = time.perf_counter()
        self._pending = None
        try:
            settings = self.current_settings()
            result = (self.result if self.result is not None and settings == self.settings
                      else simulate(settings))
        except (ValueError, TypeError) as error:
            self._mark_stale(str(error))
            return
        simulated = time.perf_counter()
        self.settings, self.result, self.error = settings, result, None
        self.updates += 1
        self.redrawn = self.figures.update(result)
        for name in self.redrawn:
            self.images[name].value = self.figures.png(name)
        self.figure_box.remove_class("mpimpy-explorer-stale")
        self.stale_banner.value = ""
        self.log_button.disabled = False
        end = time.perf_counter()
        self.timings = {"simulate": simulated - start, "draw": end - simulated,
                        "total": end - start}
        self.status.value = f"<b>{summary(result)}</b>"  # last: the update is complete

    def _mark_stale(self, message: str) -> None:
        import html

        self.error = message
        self.status.value = f"<b style='color:#b00'>{html.escape(message)}</b>"
        if self.result is not None:
            self.figure_box.add_class("mpimpy-explorer-stale")
            self.stale_banner.value = ("Out of date: the figures show the last valid settings; "
                                       "fix the input above to update them.")
        self.log_button.disabled = True

    def _log_clicked(self, _button):
        self.log()

    def log(self) -> str | None:
        """Log the current configuration, metrics and figure as an MLflow run named after the
        settings that differ from the defaults; returns its id, or ``None`` (with a message in
        ``log_output``) while the current settings are invalid."""
        import tempfile
        from pathlib import Path

        if self.error is not None or self.result is None:
            self.log_output.value = ("<b style='color:#b00'>Not logged: the current settings "
                                     f"are invalid ({self.error or 'no result yet'}).</b>")
            return None
        r = self.result
        changed = {k: parse_slices(v, k) if k in ("x_slice", "w_slice") else v
                   for k, v in r.settings.changed().items()}
        name = tracking.run_name(changed) or "defaults"  # x_slice=[1,3,4], as the studies
        tracking.ensure_experiment(self.experiment, description=(
            "Runs logged from the interactive explorer (notebooks/explorer.ipynb), one per "
            "click on Log to MLflow, named after the settings that differ from its defaults."),
            columns=["fmt", "x_slice", "w_slice", "var", "rdac", "radc", "mapping"])
        run = tracking.start_run(self.experiment, run_name=name, tags={
            "source": "explorer", tracking.NOTE_TAG: f"Explorer settings: {name}"})
        tracking.log_simulation(r.engine, r.x, r.mat, r.y_sim, r.y_ideal,
                                sim_time_s=r.sim_time_s, seed=r.settings.seed, run=run,
                                extra_params={k: getattr(r.settings, k)
                                              for k in ("fmt", "m", "k", "n")})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "explorer.png"
            draw(r).savefig(path, dpi=100)
            run.log_artifact(path, "plots")
        run.end()
        self.logged_run_id = run.run_id
        self.log_output.value = f"logged run <code>{run.run_id}</code> ({name})"
        return run.run_id
