"""Experiment tracking: one place that records a simulation in MLflow.

Where runs go
    By default a local store under the project's ``mlruns/`` folder: the tracking database
    ``mlruns/mlflow.db`` (SQLite) and artifacts under ``mlruns/artifacts/``. The folder can be
    moved with the ``MPIMPY_STORE`` environment variable, and ``MLFLOW_TRACKING_URI`` replaces
    the whole store (a team's tracking server, another SQLite file); everything else works the
    same there. MLflow's plain file store (``mlruns/0/meta.yaml``) is deprecated in MLflow 3 and
    is not used.

How a notebook logs
    A notebook calls :func:`log_simulation` (or :func:`log_result` for plain arrays) once per
    simulated product. Run by the study runner, the notebook's kernel gets the id of the run the
    runner created for its point (``MLFLOW_RUN_ID``, ``MPIMPY_RUN_MANAGED=1``) and logs into it;
    the runner then attaches the executed notebook and sets the run's final status. Run by hand,
    the first call starts a new run in the ``notebooks`` experiment (or the one given to
    :func:`start_run`), ended when the kernel exits or by :meth:`TrackedRun.end`.

How runs look in the MLflow UI
    Every experiment the project creates (:func:`ensure_experiment`) carries MLflow 3's
    experiment-kind tag (``mlflow.experimentKind = custom_model_development``: a model-training
    experiment, whose page is its runs table, not the GenAI trace overview), its description as
    MLflow's experiment note (``mlflow.note.content``) and the runs-table columns to show by
    default (:data:`COLUMNS_TAG`: the key metrics and a study's swept parameters), which
    ``mpimpy ui`` applies (:mod:`mpimpy.mlflow_ui`). Each setting is logged once, under one
    name: the simulator's own value (``var``, ``radc``, ``x_slice``), then whatever else the
    notebook or the study runner set (:func:`mpimpy.studies.store.log_point_params`). Executed
    notebooks are logged as ``.ipynb`` and rendered as ``.html`` (:func:`log_notebook`).

Infinite metrics
    An exact simulation has an SNR of +inf dB. MLflow's SQL store silently turns inf into the
    largest double (1.8e308), which wrecks every chart and comparison, and a REST server may
    refuse it. So ``SNR_dB = +inf`` is logged as :data:`SNR_CAP_DB` (400 dB, beyond what two
    different float64 results can reach, about 320 dB) with the tag ``SNR_dB_capped=true``; any
    other non-finite metric is not logged and the tag ``nonfinite.<metric>`` holds its value.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

ENV_STORE = "MPIMPY_STORE"
ENV_RUN_MANAGED = "MPIMPY_RUN_MANAGED"
ENV_STUDY = "MPIMPY_STUDY"
ENV_POINT_ID = "MPIMPY_POINT_ID"

#: Experiment used by notebooks run by hand when no experiment is named.
DEFAULT_EXPERIMENT = "notebooks"
#: Logged value of an infinite SNR (an exact result); see the module docstring.
SNR_CAP_DB = 400.0
#: MLflow limits a param value's length; longer values are cut with an ellipsis.
MAX_PARAM_LENGTH = 500
#: MLflow 3's experiment-kind tag and the kind of every mPimPy experiment: model training, so
#: that MLflow versions that read the tag open the experiment on its runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: MLflow's description of an experiment or a run (shown on its page, Markdown).
NOTE_TAG = "mlflow.note.content"
#: Experiment tag: JSON list of the runs-table columns ``mpimpy ui`` shows by default, such as
#: ``["metrics.RE", "params.var"]``.
COLUMNS_TAG = "mpimpy.runs_table_columns"
#: Metrics shown in every experiment's runs table (where its runs have them).
KEY_METRICS = ("RE", "SNR_dB", "accuracy", "energy_per_mac_pJ")

# --------------------------------------------------------------------------------------------
# The store


def project_root() -> Path:
    """The mPimPy checkout this package lives in (the folder with its pyproject.toml).

    Falls back to the current directory when the package is installed elsewhere.
    """
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "mpimpy"' in pyproject.read_text(errors="replace"):
            return folder
    return Path.cwd()


def store_dir() -> Path:
    """Folder of the local store: ``$MPIMPY_STORE``, else ``<project root>/mlruns``."""
    env = os.environ.get(ENV_STORE)
    return Path(env).expanduser().resolve() if env else project_root() / "mlruns"


def tracking_uri() -> str:
    """The tracking URI in force: ``$MLFLOW_TRACKING_URI`` or the local SQLite store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or ``None`` for any other kind of store."""
    if not uri.startswith("sqlite:"):
        return None
    path = unquote(urlparse(uri).path)
    # sqlite:////abs/path -> //abs/path; sqlite:///rel -> /rel (relative to cwd)
    if uri.startswith("sqlite:////"):
        return Path(path[1:] if path.startswith("//") else path)
    return Path.cwd() / path.lstrip("/")


def artifact_root(uri: str | None = None) -> str | None:
    """Where new experiments of a local SQLite store keep artifacts: ``<db folder>/artifacts``.

    ``None`` for other stores (a tracking server decides where its artifacts go).
    """
    db = sqlite_path(uri or tracking_uri())
    return (db.parent / "artifacts").resolve().as_uri() if db is not None else None


def get_client(uri: str | None = None):
    """An :class:`mlflow.MlflowClient` for the store (creating a local store's folder)."""
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        db.parent.mkdir(parents=True, exist_ok=True)
        _create_local_store(uri)
    return MlflowClient(tracking_uri=uri)


def _create_local_store(uri: str) -> None:
    """Create a SQLite store's tables with its artifacts root set to ``<db folder>/artifacts``.

    Left to MlflowClient, the store's Default experiment would keep its artifacts in
    ``./mlruns/0`` of whatever folder the first command ran in (stored as an absolute path).
    """
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:  # pragma: no cover - a future MLflow that moved it: keep its default
        return
    from mlflow.entities import ExperimentTag

    store = SqlAlchemyStore(uri, artifact_root(uri))
    for key, value in experiment_tags().items():  # the Default experiment opens on its runs too
        store.set_experiment_tag(store.DEFAULT_EXPERIMENT_ID, ExperimentTag(key, value))


def ensure_experiment(
    name: str,
    *,
    client=None,
    description: str | None = None,
    columns: Sequence[str] = (),
) -> str:
    """Id of the experiment ``name``, created if missing; safe against a concurrent creation.

    In a local store its artifacts go to ``<store>/artifacts/<name>`` (an absolute ``file://``
    location). Create experiments once, in one process, and hand the id to workers:
    ``mlflow.set_experiment`` called from several processes at once can file runs under the
    Default experiment.

    The experiment gets (or, if it exists, is brought up to date with) the tags that make it
    open on its runs table in the MLflow UI (see the module docstring): the experiment kind,
    ``description`` as its note, and :data:`COLUMNS_TAG` listing the :data:`KEY_METRICS` and
    ``columns`` (parameter names such as ``"var"``, or ``"metrics.X"``/``"tags.X"``).
    """
    from mlflow.exceptions import MlflowException

    client = client or get_client()
    tags = experiment_tags(description=description, columns=columns)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        root = artifact_root(client.tracking_uri)
        if root is not None:
            folder = Path(unquote(urlparse(root).path)) / _safe_name(name)
            if folder.exists():  # left over from a deleted experiment of the same name
                folder = folder.with_name(f"{folder.name}-{os.urandom(4).hex()}")
            location = folder.as_uri()
        try:
            return client.create_experiment(name, artifact_location=location, tags=tags)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # another process created it first
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if not columns and COLUMNS_TAG in experiment.tags:  # keep the columns a study chose
        del tags[COLUMNS_TAG]
    for key, value in tags.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def experiment_tags(*, description: str | None = None, columns: Sequence[str] = ()) -> dict:
    """The tags :func:`ensure_experiment` gives an experiment (see there)."""
    import json

    keys = [f"metrics.{m}" for m in KEY_METRICS]
    for column in columns:
        key = column if column.split(".", 1)[0] in ("metrics", "params", "tags") else (
            f"params.{column}")
        if key not in keys:
            keys.append(key)
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, COLUMNS_TAG: json.dumps(keys)}
    if description:
        tags[NOTE_TAG] = description
    return tags


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


# --------------------------------------------------------------------------------------------
# Runs


class TrackedRun:
    """An MLflow run that mPimPy logs into, addressed by id (no global MLflow state).

    ``managed`` runs belong to the study runner: :meth:`end` leaves them open, the runner sets
    their status once the notebook has run. Other runs are ended by :meth:`end`, by leaving a
    ``with`` block (FAILED on an exception) or when the interpreter exits.
    """

    def __init__(self, run_id: str, *, client=None, managed: bool = False):
        self.client = client or get_client()
        self.run_id = run_id
        self.managed = managed
        self.experiment_id = self.client.get_run(run_id).info.experiment_id
        self.ended = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters (values turned into strings, cut to :data:`MAX_PARAM_LENGTH`)."""
        from mlflow.entities import Param

        items = [Param(str(k), _param_str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> dict[str, float]:
        """Log metrics, handling non-finite values as the module docstring says.

        Returns the values actually logged.
        """
        import time

        from mlflow.entities import Metric

        finite, tags = loggable_metrics(metrics)
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in finite.items()]
        self.client.log_batch(self.run_id, metrics=items)
        if tags:
            self.set_tags(tags)
        return finite

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        """Set the run's final status, unless the study runner owns it."""
        global _current
        if self.ended:
            return
        self.ended = True
        if not self.managed:
            self.client.set_terminated(self.run_id, status)
        if _current is self:
            _current = None

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.end("FAILED" if exc_type is not None else "FINISHED")

    def __repr__(self) -> str:
        return f"TrackedRun(run_id={self.run_id!r}, experiment_id={self.experiment_id!r})"


_current: TrackedRun | None = None


def current_run() -> TrackedRun | None:
    """The run :func:`start_run` opened last in this process, if it is still open."""
    return _current


def start_run(
    experiment: str | None = None,
    *,
    run_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> TrackedRun:
    """Resume the run a study runner created for this notebook, or start a new one.

    ``run_id`` (or ``$MLFLOW_RUN_ID``, which the runner sets in the kernel's environment)
    resumes an existing run; otherwise a new run starts in ``experiment`` (default
    ``$MLFLOW_EXPERIMENT_NAME`` or :data:`DEFAULT_EXPERIMENT`). The run becomes the one
    :func:`log_simulation` logs into when given no ``run``.
    """
    global _current
    client = get_client()
    run_id = run_id or os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        managed = os.environ.get(ENV_RUN_MANAGED) == "1" and run_id == os.environ.get(
            "MLFLOW_RUN_ID"
        )
        run = TrackedRun(run_id, client=client, managed=managed)
    else:
        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        experiment_id = ensure_experiment(name, client=client)
        created = client.create_run(experiment_id, run_name=run_name)
        run = TrackedRun(created.info.run_id, client=client, managed=False)
        atexit.register(run.end)
    if tags:
        run.set_tags(tags)
    _current = run
    return run


def resolve_run(run) -> TrackedRun:
    """The run to log into: the one given, else the open one, else MLflow's active run, else new."""
    if isinstance(run, TrackedRun):
        return run
    if isinstance(run, str):
        return TrackedRun(run)
    if run is not None:  # an mlflow ActiveRun / Run
        return TrackedRun(run.info.run_id)
    if _current is not None and not _current.ended:
        return _current
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        return TrackedRun(
            active.info.run_id, client=get_client(mlflow.get_tracking_uri()), managed=True
        )
    return start_run()


# --------------------------------------------------------------------------------------------
# What gets logged


def _param_str(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def loggable_metrics(metrics: Mapping[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """Split metrics into what MLflow can store and tags that explain what was left out.

    ``SNR_dB = +inf`` becomes :data:`SNR_CAP_DB` plus the tag ``SNR_dB_capped=true``; any other
    NaN or infinite value is dropped and recorded as the tag ``nonfinite.<name>``.
    """
    finite: dict[str, float] = {}
    tags: dict[str, str] = {}
    for name, value in metrics.items():
        value = float(value)
        if math.isfinite(value):
            finite[name] = value
        elif name == "SNR_dB" and value > 0:
            finite[name] = SNR_CAP_DB
            tags["SNR_dB_capped"] = "true"
        else:
            tags[f"nonfinite.{name}"] = str(value)
    return finite, tags


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` for uncommitted changes), or ``None``."""
    root = project_root()
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def _version(module_name: str) -> str:
    try:
        module = __import__(module_name)
    except Exception:
        return "not installed"
    version = getattr(module, "__version__", None)
    if version is None:
        from importlib import metadata

        try:
            version = metadata.version(module_name)
        except metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


def environment_info() -> dict[str, str]:
    """Versions of mpimpy, torch, numpy, mlflow and Python, and the git commit if any."""
    info = {
        "mpimpy_version": _version("mpimpy"),
        "torch_version": _version("torch"),
        "numpy_version": _version("numpy"),
        "mlflow_version": _version("mlflow"),
        "python_version": platform.python_version(),
    }
    commit = git_commit()
    if commit:
        info["git_commit"] = commit
    return info


def _shape(value) -> list[int] | None:
    shape = getattr(value, "shape", None)
    return [int(s) for s in shape] if shape is not None else None


def _plain(value: Any) -> Any:
    """A loggable form of a setting: tensors and tuples as lists, a TileShape as [rows, cols]."""
    if hasattr(value, "rows") and hasattr(value, "cols"):
        return [int(value.rows), int(value.cols)]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


#: Logged names of a :class:`mpimpy.SlicedData`'s settings (``x_slice`` as the notebooks and
#: studies call it; the array size is logged once, as ``array_rows`` and ``array_cols``).
_SLICED_NAMES = {"slice_method": "slice", "bw_e": "bw_e", "quant_gran": "quant_gran"}


def _sliced_params(prefix: str, data) -> dict[str, Any]:
    """Slicing settings of a :class:`mpimpy.SlicedData` (whatever of them it has)."""
    out: dict[str, Any] = {}
    for attr, name in _SLICED_NAMES.items():
        if hasattr(data, attr):
            out[f"{prefix}_{name}"] = _plain(getattr(data, attr))
    shape = _shape(data)
    if shape is not None:
        out[f"{prefix}_shape"] = shape
    return out


def simulation_params(engine, x, mat) -> dict[str, Any]:
    """Every hardware and slicing setting of one simulated product, as a flat dict.

    ``engine`` is a :class:`mpimpy.DPETensor`, ``x`` and ``mat`` the :class:`mpimpy.SlicedData`
    input and weights: ``x_slice``, ``x_bw_e``, ``x_quant_gran``, ``x_shape`` and the same
    ``w_*`` for the weights; the array size is the weights' ``paral_size`` (``array_rows`` x
    ``array_cols``); the device model is ``device_model`` (its name) with its parameters as
    ``device_model.<parameter>``, and the read time ``t_inference`` (seconds after
    programming).
    """
    params: dict[str, Any] = {}
    config = getattr(engine, "config", None)
    if config is not None and hasattr(config, "as_dict"):
        params.update(config.as_dict())
    model = getattr(config, "device_model", None)
    if hasattr(model, "log_params"):  # its name and every parameter, device_model.<name>
        params.update(model.log_params())
    if hasattr(engine, "t_inference"):
        params["t_inference"] = engine.t_inference
    params["engine_seed"] = getattr(engine, "seed", None)
    params["device"] = str(getattr(engine, "device", "cpu"))
    params.update(_sliced_params("x", x))
    params.update(_sliced_params("w", mat))
    paral = _plain(getattr(mat, "paral_size", None) or getattr(x, "paral_size", None))
    if isinstance(paral, list) and len(paral) == 2:
        params["array_rows"], params["array_cols"] = int(paral[0]), int(paral[1])
    return params


def number_format(params: Mapping[str, Any]) -> str:
    """``"FP"`` if the input or the weights have an exponent width (``bw_e``), else ``"INT"``."""
    fp = any(params.get(k) is not None for k in ("x_bw_e", "w_bw_e", "bw_e"))
    return "FP" if fp else "INT"


def log_result(
    y_sim,
    y_ideal,
    *,
    sim_time_s: float,
    seed: int | None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    notebook_path: str | Path | None = None,
    run=None,
    extra_metrics: Mapping[str, float] | None = None,
    plots: bool = True,
) -> dict[str, float]:
    """Log one simulated result, given as plain arrays and a dict of settings.

    Logs ``params`` plus the seed, the result's shape, dtype and the software versions; the
    metrics RE, SNR_dB, ABSE, max_abs_error and sim_time_s (plus ``extra_metrics``); the tags
    ``format`` (INT/FP, from ``params``), ``study`` and ``point_id`` (from the runner); a
    measured-vs-expected scatter plot and an error histogram (PNG, under ``plots/``) and the
    notebook at ``notebook_path`` (under ``notebook/``, also as HTML: :func:`log_notebook`).
    Returns the metrics as computed
    (before any capping), for the notebook to show.

    ``run``: a :class:`TrackedRun`, a run id or an MLflow run; default the open run (the study
    runner's run under papermill), else MLflow's active run, else a new run.
    """
    from mpimpy.metrics import all_metrics

    tracked = resolve_run(run)
    metrics = dict(all_metrics(y_ideal, y_sim))
    metrics["sim_time_s"] = float(sim_time_s)
    if extra_metrics:
        metrics.update({k: float(v) for k, v in extra_metrics.items()})

    all_params = dict(params or {})
    all_params["seed"] = seed
    all_params.setdefault("y_shape", _shape(y_sim))
    all_params.setdefault("dtype", str(getattr(y_sim, "dtype", type(y_sim).__name__)))
    all_params.update(environment_info())
    tracked.log_params(all_params)

    all_tags = {"format": number_format(all_params)}
    for env, tag in ((ENV_STUDY, "study"), (ENV_POINT_ID, "point_id")):
        if os.environ.get(env):
            all_tags[tag] = os.environ[env]
    if "git_commit" in all_params:
        all_tags["mlflow.source.git.commit"] = str(all_params["git_commit"]).removesuffix("-dirty")
    all_tags.update(tags or {})
    tracked.set_tags(all_tags)
    tracked.log_metrics(metrics)

    if plots:
        from mpimpy.plots import error_histogram, scatter_plot

        with tempfile.TemporaryDirectory() as tmp:
            scatter = scatter_plot(y_sim, y_ideal, Path(tmp) / "measured_vs_expected.png")
            histogram = error_histogram(y_sim, y_ideal, Path(tmp) / "error_histogram.png")
            tracked.log_artifact(scatter, "plots")
            tracked.log_artifact(histogram, "plots")
    if notebook_path is not None and Path(notebook_path).is_file():
        log_notebook(notebook_path, tracked)
    return metrics


def log_simulation(
    engine,
    x,
    mat,
    y_sim,
    y_ideal,
    *,
    sim_time_s: float,
    seed: int | None,
    tags: Mapping[str, Any] | None = None,
    notebook_path: str | Path | None = None,
    run=None,
    extra_params: Mapping[str, Any] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    plots: bool = True,
) -> dict[str, float]:
    """Log one simulated matrix product ``y_sim ~ x @ mat`` to MLflow.

    ``engine`` is the :class:`mpimpy.DPETensor` that computed ``y_sim``; ``x``/``mat`` its
    :class:`mpimpy.SlicedData` operands; ``y_ideal`` the exact product; ``sim_time_s`` the
    simulation's wall time; ``seed`` the seed the notebook used. Every hardware and slicing
    setting (:func:`simulation_params`) plus ``extra_params`` is logged; see :func:`log_result`
    for metrics, tags and artifacts (with frozen ADC ranges, ``adc_clipped_fraction``: the
    fraction of the product's conversions that saturated, ``engine.last_clipped_fraction``).
    The engine's last product is also priced (:func:`simulation_cost`: its own technology,
    else ISAAC's 32 nm components) and logged with :func:`log_cost`. Returns the computed
    metrics, cost metrics included.

    Typical notebook use (the runner's run is picked up by itself)::

        y = engine(x, mat)
        tracking.log_simulation(engine, x, mat, y, x_data @ mat_data, sim_time_s=dt, seed=seed)
    """
    params = simulation_params(engine, x, mat)
    params.update(extra_params or {})
    cost = simulation_cost(engine)
    clipped = getattr(engine, "last_clipped_fraction", None)
    if clipped is not None:  # the conversions saturated against frozen ADC ranges
        extra_metrics = {"adc_clipped_fraction": clipped, **(extra_metrics or {})}
    metrics = log_result(
        y_sim,
        y_ideal,
        sim_time_s=sim_time_s,
        seed=seed,
        params=params,
        tags=tags,
        notebook_path=notebook_path,
        run=run,
        extra_metrics=extra_metrics,
        plots=plots,
    )
    if cost is not None:
        metrics.update(log_cost(cost, run=run))
    return metrics


#: The cost metrics every logged simulation carries (see :func:`log_cost`).
COST_METRICS = ("energy_J", "energy_per_mac_pJ", "latency_s", "area_mm2", "tops_per_w")
#: The technology a run's costs are priced with when its engine has none.
DEFAULT_TECHNOLOGY = "isaac-32nm"


def simulation_cost(engine):
    """The cost of ``engine``'s last product: ``engine.last_cost`` when the engine has a
    technology, else its schedule priced with :data:`DEFAULT_TECHNOLOGY` (whose fixed energy
    per cell needs no power measurement); ``None`` if it has run no product."""
    if getattr(engine, "last_cost", None) is not None:
        return engine.last_cost
    schedule = getattr(engine, "last_schedule", None)
    if schedule is None:
        return None
    from mpimpy.cost import report

    return report(schedule, DEFAULT_TECHNOLOGY)


def log_cost(report, *, run=None, layers: Mapping[str, Any] | None = None,
             extra_metrics: Mapping[str, float] | None = None) -> dict[str, float]:
    """Log a :class:`mpimpy.cost.CostReport` (or a network's :class:`mpimpy.nn.NetworkCost`)
    to a run.

    Metrics :data:`COST_METRICS` (plus ``power_W``, ``throughput_mac_per_s``, ``adc_conversions``
    and ``energy_<component>_J`` for each component, and ``extra_metrics``), the tags
    ``cost.technology`` and ``cost.array_energy_model``, the breakdown as a table
    (``cost/breakdown.csv``) and as a stacked-bar figure (``plots/cost_breakdown.png``);
    ``layers`` (``{name: report}``) adds one bar per layer. A network's cost logs its total, one
    bar per layer, ``energy_per_inference_J`` and ``latency_per_inference_s``, and its layer
    table (``cost/layers.csv``). Returns the metrics logged.
    """
    network = report if hasattr(report, "layer_reports") else None
    if network is not None:
        report, layers = network.total, network.layer_reports
        extra_metrics = {"energy_per_inference_J": network.energy_per_inference,
                         "latency_per_inference_s": network.latency_per_inference,
                         **(extra_metrics or {})}
    from mpimpy.plots import cost_breakdown_plot

    tracked = resolve_run(run)
    values = report.as_dict()
    names = (*COST_METRICS, "power_W", "throughput_mac_per_s", "adc_conversions",
             *(k for k in values if k.startswith("energy_") and k.endswith("_J")
               and k != "energy_J"))
    metrics = {k: float(values[k]) for k in dict.fromkeys(names)}
    metrics.update({k: float(v) for k, v in (extra_metrics or {}).items()})
    logged = tracked.log_metrics(metrics)
    tracked.set_tags({"cost.technology": report.technology,
                      "cost.array_energy_model": report.array_energy_model})
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "breakdown.csv"
        report.breakdown_table().to_csv(table, index=False)
        tracked.log_artifact(table, "cost")
        if network is not None:
            network.layers.to_csv(Path(tmp) / "layers.csv", index=False)
            tracked.log_artifact(Path(tmp) / "layers.csv", "cost")
        figure = cost_breakdown_plot(dict(layers) if layers else report,
                                     Path(tmp) / "cost_breakdown.png")
        tracked.log_artifact(figure, "plots")
    return logged


def short_value(value: Any, digits: int | None = None) -> str:
    """A setting as run names show it: ``[1,3,4]``; floats to ``digits`` significant digits
    when given (``0.1235``), else as Python writes them."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(short_value(v, digits) for v in value) + "]"
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def run_name(values: Mapping[str, Any], digits: int | None = None) -> str:
    """A run's name from its settings, as the studies name their points:
    ``{"fmt": "INT", "x_slice": [1, 3, 4]}`` -> ``"fmt=INT,x_slice=[1,3,4]"`` (floats to
    ``digits`` significant digits when given, as a search names its trials)."""
    return ",".join(f"{k}={short_value(v, digits)}" for k, v in values.items())


def notebook_html(path: str | Path) -> str:
    """An executed notebook rendered as a standalone HTML page (nbconvert), outputs and
    images included, so that it opens readable in the MLflow UI's artifact view."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(path), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    return body


def log_notebook(path: str | Path, run, artifact_path: str = "notebook") -> None:
    """Log a notebook as ``<artifact_path>/<name>.ipynb`` and, rendered, ``<name>.html``.

    ``run``: a :class:`TrackedRun` or a run id. A notebook that cannot be rendered (not valid
    JSON, a partly written file) is still logged as ``.ipynb``.
    """
    tracked = run if isinstance(run, TrackedRun) else TrackedRun(run, managed=True)
    path = Path(path)
    tracked.log_artifact(path, artifact_path)
    try:
        html = notebook_html(path)
    except Exception as exc:  # the .ipynb is what matters; say why there is no HTML
        tracked.set_tags({"mpimpy.notebook_html_error": f"{type(exc).__name__}: {exc}"[:500]})
        return
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / f"{path.stem}.html"
        page.write_text(html, encoding="utf-8")
        tracked.log_artifact(page, artifact_path)


def store_summary(uri: str | None = None) -> str:
    """One line saying where the store is, for messages."""
    uri = uri or tracking_uri()
    db = sqlite_path(uri)
    if db is not None:
        return f"local store {db} (artifacts in {db.parent / 'artifacts'})"
    return f"tracking server {uri}"


__all__ = [
    "COLUMNS_TAG",
    "COST_METRICS",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_TECHNOLOGY",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "KEY_METRICS",
    "NOTE_TAG",
    "SNR_CAP_DB",
    "TrackedRun",
    "artifact_root",
    "current_run",
    "ensure_experiment",
    "environment_info",
    "experiment_tags",
    "get_client",
    "git_commit",
    "log_cost",
    "log_notebook",
    "log_result",
    "log_simulation",
    "loggable_metrics",
    "notebook_html",
    "number_format",
    "project_root",
    "resolve_run",
    "run_name",
    "short_value",
    "simulation_cost",
    "simulation_params",
    "sqlite_path",
    "start_run",
    "store_dir",
    "store_summary",
    "tracking_uri",
]
