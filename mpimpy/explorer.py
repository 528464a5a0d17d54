"""Interactive explorer: move a hardware slider, see the simulated product change.

Two layers, so the logic can be tested without a browser:

* :func:`simulate` takes plain settings (:class:`ExplorerSettings`), runs one simulated product
  on random data and returns the results and metrics: no widgets involved.
* :class:`Explorer` wraps it in ipywidgets for JupyterLab (``notebooks/explorer.ipynb``):
  controls for every setting, figures redrawn after each change (debounced, so dragging a
  slider does not queue dozens of runs) and a button that logs the current configuration and
  its figures to MLflow.

Sizes are capped (:data:`LIMITS`) so an update stays well under a second on a laptop CPU.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .engine import DPETensor
from .metrics import all_metrics
from .slicing import SlicedData, parse_slice_method

#: (min, max) of the problem and array sizes the explorer allows.
LIMITS = {"m": (1, 512), "k": (1, 1024), "n": (1, 512), "array_size": (4, 256)}


@dataclass(frozen=True)
class ExplorerSettings:
    """Everything one explorer update simulates. Units and ranges as in
    :class:`mpimpy.config.CrossbarConfig`; ``m, k, n``: x is (m, k), W is (k, n)."""

    fmt: str = "INT"
    x_slice: str = "1,1,2,4"
    w_slice: str = "1,1,2,4"
    bw_e: int = 8
    HGS: float = 1e-5
    LGS: float = 1e-7
    g_level: int = 16
    var: float = 0.05
    read_noise: float = 0.0
    vnoise: float = 0.0
    stuck_fault_ratio: float = 0.0
    stuck_fault_value: int = 0
    dac_bits: int = 4  # 0: ideal DAC
    adc_bits: int = 8  # 0: ideal ADC
    adc_range: str = "calibrated"
    mapping: str = "offset"
    wire_resistance: float = 0.0
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
        for name in ("dac_bits", "adc_bits"):
            if not 0 <= getattr(self, name) <= 16:
                raise ValueError(f"{name} must be in [0, 16] (0 = ideal), got "
                                 f"{getattr(self, name)}")

    def engine_kwargs(self) -> dict:
        return dict(HGS=self.HGS, LGS=self.LGS, g_level=self.g_level, var=self.var,
                    read_noise=self.read_noise, vnoise=self.vnoise,
                    stuck_fault_ratio=self.stuck_fault_ratio,
                    stuck_fault_value=self.stuck_fault_value,
                    rdac=2**self.dac_bits if self.dac_bits else None,
                    radc=2**self.adc_bits if self.adc_bits else None,
                    adc_range=self.adc_range, mapping=self.mapping,
                    wire_resistance=self.wire_resistance, seed=self.seed)


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
    return list(parse_slice_method(widths, name))


def simulate(settings: ExplorerSettings) -> ExplorerResult:
    """One simulated product on standard-normal data drawn from ``settings.seed``."""
    gen = torch.Generator().manual_seed(settings.seed)
    x_data = torch.randn(settings.m, settings.k, generator=gen)
    w_data = torch.randn(settings.k, settings.n, generator=gen)
    bw_e = settings.bw_e if settings.fmt == "FP" else None
    tile = (settings.array_size, settings.array_size)
    engine = DPETensor(**settings.engine_kwargs())
    x = SlicedData(parse_slices(settings.x_slice, "x_slice"), bw_e=bw_e, paral_size=tile)
    mat = SlicedData(parse_slices(settings.w_slice, "w_slice"), bw_e=bw_e, paral_size=tile)
    start = time.perf_counter()
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, w_data)
    y = engine(x, mat)
    elapsed = time.perf_counter() - start
    y_ideal = (x_data @ w_data).numpy()
    conductance = engine.programmed(mat).positive[0, 0, 0].cpu().numpy()
    return ExplorerResult(settings, y.numpy(), y_ideal, conductance,
                          all_metrics(y_ideal, y.numpy()), elapsed, engine, x, mat)


def draw(result: ExplorerResult, figure=None):
    """Scatter, error histogram and conductance map of one result on one figure."""
    import matplotlib.pyplot as plt

    if figure is None:
        figure = plt.figure(figsize=(13, 3.8))
    figure.clear()
    scatter, histogram, gmap = figure.subplots(1, 3)
    ideal, sim = result.y_ideal.ravel(), result.y_sim.ravel()
    scatter.scatter(ideal, sim, s=3, alpha=0.4)
    low, high = float(min(ideal.min(), sim.min())), float(max(ideal.max(), sim.max()))
    scatter.plot([low, high], [low, high], color="black", lw=0.8)
    scatter.set(xlabel="expected value of dot product", ylabel="measured value of dot product",
                title="measured vs expected")
    histogram.hist(sim - ideal, bins=60)
    histogram.set(xlabel="error (measured - expected)", ylabel="count", title="error histogram")
    image = gmap.imshow(result.conductance * 1e6, cmap="viridis", aspect="auto")
    gmap.set(xlabel="bit line (column)", ylabel="word line (row)",
             title="conductance of array (0, 0), slice 0")
    figure.colorbar(image, ax=gmap, label="conductance (uS)")
    figure.tight_layout()
    return figure


def summary(result: ExplorerResult) -> str:
    m = result.metrics
    return (f"RE = {m['RE']:.4g}   SNR = {m['SNR_dB']:.2f} dB   ABSE = {m['ABSE']:.4g}   "
            f"simulated in {result.sim_time_s * 1e3:.0f} ms")


class Explorer:
    """ipywidgets front end of :func:`simulate`.

    ``Explorer(debounce_s=0.3)``; display it with ``explorer.widget``. With ``debounce_s=0``
    every change re-simulates at once (what tests use). ``controls`` maps each setting name to
    its widget; ``status`` holds the RE/SNR line; ``log_button`` logs the current run.
    """

    def __init__(self, settings: ExplorerSettings | None = None, debounce_s: float = 0.3,
                 experiment: str = "explorer"):
        import ipywidgets as w

        self.settings = settings or ExplorerSettings()
        self.debounce_s = debounce_s
        self.experiment = experiment
        self.result: ExplorerResult | None = None
        self.updates = 0
        self.logged_run_id: str | None = None
        self._pending = None
        s = self.settings
        style = {"description_width": "110px"}
        self.controls = {
            "fmt": w.ToggleButtons(options=["INT", "FP"], value=s.fmt, description="format"),
            "x_slice": w.Text(value=s.x_slice, description="x slices"),
            "w_slice": w.Text(value=s.w_slice, description="W slices"),
            "bw_e": w.IntSlider(value=s.bw_e, min=2, max=11, description="bw_e (FP)"),
            "HGS": w.FloatLogSlider(value=s.HGS, base=10, min=-6, max=-3, description="HGS (S)"),
            "LGS": w.FloatLogSlider(value=s.LGS, base=10, min=-9, max=-5, description="LGS (S)"),
            "g_level": w.IntSlider(value=s.g_level, min=2, max=256, description="g_level"),
            "var": w.FloatSlider(value=s.var, min=0, max=0.5, step=0.01, description="var"),
            "read_noise": w.FloatSlider(value=s.read_noise, min=0, max=0.2, step=0.005,
                                        description="read noise"),
            "vnoise": w.FloatSlider(value=s.vnoise, min=0, max=0.2, step=0.005,
                                    description="vnoise"),
            "stuck_fault_ratio": w.FloatSlider(value=s.stuck_fault_ratio, min=0, max=0.2,
                                               step=0.005, description="stuck ratio"),
            "stuck_fault_value": w.ToggleButtons(options=[("LGS", 0), ("HGS", 1)],
                                                 value=s.stuck_fault_value,
                                                 description="stuck at"),
            "dac_bits": w.IntSlider(value=s.dac_bits, min=0, max=16,
                                    description="DAC bits (0=ideal)"),
            "adc_bits": w.IntSlider(value=s.adc_bits, min=0, max=16,
                                    description="ADC bits (0=ideal)"),
            "adc_range": w.Dropdown(options=["full", "calibrated"], value=s.adc_range,
                                    description="ADC range"),
            "mapping": w.ToggleButtons(options=["offset", "diffpair"], value=s.mapping,
                                       description="mapping"),
            "wire_resistance": w.FloatSlider(value=s.wire_resistance, min=0, max=10, step=0.1,
                                             description="wire r (ohm)"),
            "array_size": w.Dropdown(options=[16, 32, 64, 128, 256], value=s.array_size,
                                     description="array size"),
            "m": w.IntSlider(value=s.m, min=1, max=LIMITS["m"][1], description="m (vectors)"),
            "k": w.IntSlider(value=s.k, min=1, max=LIMITS["k"][1], description="k"),
            "n": w.IntSlider(value=s.n, min=1, max=LIMITS["n"][1], description="n"),
            "seed": w.IntText(value=s.seed, description="seed"),
        }
        for control in self.controls.values():
            control.style = style
            control.continuous_update = False
            control.observe(self._changed, names="value")
        self.status = w.HTML(value="", layout=w.Layout(min_height="1.5em"))
        self.status.add_class("mpimpy-explorer-status")
        self.log_button = w.Button(description="Log to MLflow", icon="upload")
        self.log_button.on_click(self._log_clicked)
        self.log_output = w.HTML(value="")
        # The figure travels as PNG bytes in an Image widget: plain widget state, so a redraw
        # triggered from a (debounced) callback reaches the browser like any other change.
        self.figure_image = w.Image(format="png", layout=w.Layout(max_width="1300px"))
        groups = [("format", ["fmt", "x_slice", "w_slice", "bw_e"]),
                  ("device", ["HGS", "LGS", "g_level", "var", "read_noise", "stuck_fault_ratio",
                              "stuck_fault_value"]),
                  ("peripherals", ["dac_bits", "adc_bits", "adc_range", "vnoise"]),
                  ("array", ["mapping", "wire_resistance", "array_size"]),
                  ("problem", ["m", "k", "n", "seed"])]
        tabs = w.Tab(children=[w.VBox([self.controls[n] for n in names]) for _, names in groups])
        for i, (title, _) in enumerate(groups):
            tabs.set_title(i, title)
        self.widget = w.VBox([tabs, w.HBox([self.log_button, self.log_output]), self.status,
                              self.figure_image])
        self.update()

    def current_settings(self) -> ExplorerSettings:
        values = {name: control.value for name, control in self.controls.items()}
        return replace(self.settings, **values)

    def _changed(self, _change):
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
        """Re-simulate with the controls' values and redraw; errors show in the status line."""
        import io

        import matplotlib.pyplot as plt

        self._pending = None
        try:
            settings = self.current_settings()
            self.result = simulate(settings)
        except (ValueError, TypeError) as error:
            self.status.value = f"<b style='color:#b00'>{error}</b>"
            return
        self.settings = settings
        self.updates += 1
        figure = draw(self.result)
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=90)
        plt.close(figure)
        self.figure_image.value = png.getvalue()
        self.status.value = f"<b>{summary(self.result)}</b>"  # last: the update is complete

    def _log_clicked(self, _button):
        self.log()

    def log(self) -> str:
        """Log the current configuration, metrics and figure as an MLflow run; returns its id."""
        import tempfile
        from pathlib import Path

        import matplotlib.pyplot as plt

        from . import tracking

        if self.result is None:
            raise RuntimeError("nothing to log: the last update failed")
        r = self.result
        run = tracking.start_run(self.experiment, run_name="explorer",
                                 tags={"source": "explorer"})
        tracking.log_simulation(r.engine, r.x, r.mat, r.y_sim, r.y_ideal,
                                sim_time_s=r.sim_time_s, seed=r.settings.seed, run=run,
                                extra_params={f"explorer.{k}": v
                                              for k, v in asdict(r.settings).items()})
        with tempfile.TemporaryDirectory() as tmp:
            figure = draw(r)
            path = Path(tmp) / "explorer.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            run.log_artifact(path, "plots")
        run.end()
        self.logged_run_id = run.run_id
        self.log_output.value = f"logged run <code>{run.run_id}</code>"
        return run.run_id
