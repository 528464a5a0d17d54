"""The ``mpimpy`` command: run parameter studies and look at their results.

::

    mpimpy study run studies/quickstart.yaml [--workers N] [--scheduler ADDRESS]
                                             [--dry-run] [--output-dir DIR] [--force]
    mpimpy study validate studies/*.yaml
    mpimpy study list
    mpimpy study show NAME [--storage URL]      # a search's Pareto front, a study's runs
    mpimpy ui [--port 5000] [--optuna [--storage URL]]

A study may be named by its file or, for the shipped ones, by name (``quickstart``). Exit
status: 0 when everything ran; 1 when a point failed, the run was interrupted or the experiment
store could not be written; 2 when nothing could start because the study file or the command
line is wrong (an invalid study, ``--workers 0``, a Dask scheduler that does not answer). The
command lives in the project's ``.venv/bin`` (``source .venv/bin/activate``, or
``python -m mpimpy``).

Heavy modules (torch, MLflow, papermill, Dask) are imported only by the commands that use them,
so ``mpimpy --help`` answers at once (``benchmarks/bench_cli.py`` measures each command).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path


def _studies_dir() -> Path:
    from mpimpy.tracking import project_root

    return project_root() / "studies"


def _study_path(name: str) -> Path:
    """A study given as a path, or as the name of a file in the project's ``studies/``."""
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    for suffix in (".yaml", ".yml"):
        shipped = _studies_dir() / f"{name}{suffix}"
        if shipped.is_file():
            return shipped
    return path


def _cmd_run(args) -> int:
    from mpimpy.studies import StudyError, load_study, run_study
    from mpimpy.studies.backends import SchedulerError
    from mpimpy.studies.store import RunnerError

    try:
        study = load_study(_study_path(args.study), allow_any_notebook=args.allow_any_notebook)
        result = run_study(
            study,
            workers=args.workers,
            scheduler=args.scheduler,
            output_dir=args.output_dir,
            dry_run=args.dry_run,
            force=args.force,
            progress=not args.no_progress,
            allow_any_notebook=args.allow_any_notebook,
            connect_timeout_s=args.connect_timeout,
            storage=args.storage,
        )
    except (StudyError, SchedulerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0 if result.ok or args.dry_run else 1


def _cmd_validate(args) -> int:
    from mpimpy.studies import StudyError, load_study

    status = 0
    for name in args.studies:
        try:
            study = load_study(_study_path(name), allow_any_notebook=args.allow_any_notebook)
        except StudyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        if study.search is not None:
            search = study.search
            invalid = (f"; {search.invalid_share:.0%} of the space's value combinations have "
                       "settings the simulator refuses (such trials fail at once, unrun)"
                       if search.invalid_share else "")
            print(f"ok: {study.path} (search: {search.sampler}, {search.n_trials} trials over "
                  f"{len(search.space)} parameters, notebook {study.notebook}{invalid})")
        else:
            print(f"ok: {study.path} ({len(study.expand())} points, notebook {study.notebook})")
    return status


def _cmd_list(args) -> int:
    from mpimpy import tracking
    from mpimpy.studies import StudyError, load_study

    folder = Path(args.dir) if args.dir else _studies_dir()
    files = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    print(f"Studies in {folder}:" if files else f"No study files in {folder}")
    for path in files:
        try:
            study = load_study(path, check_notebook=False)
        except StudyError as exc:
            print(f"  {path.name:24} INVALID: {exc}")
            continue
        line = study.description.splitlines()[0] if study.description else ""
        size = (f"{study.search.n_trials:4} trials" if study.search is not None
                else f"{len(study.expand()):4} points")
        print(f"  {study.name:24} {size}  {study.notebook_name:22} {line}")

    uri = tracking.tracking_uri()
    db = tracking.sqlite_path(uri)
    if db is not None and not db.is_file():
        print(f"\nNo experiment store yet at {db} (a study run creates it).")
        return 0
    print(f"\nExperiments in {tracking.store_summary(uri)}:", flush=True)
    # (the study files are on screen while MLflow's client loads: about 3 s of imports)
    for name, experiment_id, counts in experiment_runs(uri):
        detail = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no runs"
        total = sum(counts.values())
        print(f"  {name:24} id {experiment_id:>4}  {total:4} runs ({detail})")
    return 0


def experiment_runs(uri: str) -> list[tuple[str, str, Counter]]:
    """``(name, id, runs by status)`` of every active experiment of the store (runs that are
    not deleted), newest experiment first, as ``MlflowClient.search_experiments`` orders them.

    Two paged ``MlflowClient`` queries: the experiments, then the runs of all of them at once.
    """
    from mpimpy import tracking

    client = tracking.get_client(uri)
    experiments, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            break
    counts: dict[str, Counter] = {e.experiment_id: Counter() for e in experiments}
    token = None
    while counts:
        page = client.search_runs(list(counts), max_results=50_000, page_token=token)
        for run in page:
            counts[run.info.experiment_id][run.info.status] += 1
        token = page.token
        if not token:
            break
    return [(e.name, e.experiment_id, counts[e.experiment_id]) for e in experiments]


def _cmd_show(args) -> int:
    """A search's Pareto front (knee and cheapest feasible trial marked), or a study's runs."""
    from mpimpy import tracking
    from mpimpy.studies import StudyError, load_study

    try:
        study = load_study(_study_path(args.study), check_notebook=False)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uri = tracking.tracking_uri()
    if study.search is None:
        return _show_points(study, uri)
    from mpimpy.studies.analysis import search_results

    results = search_results(study, uri)
    trials = results.trials
    search = study.search
    if trials.empty:
        print(f"Search {study.name!r}: no trials in experiment {study.experiment!r} of "
              f"{tracking.store_summary(uri)} yet; run it: mpimpy study run {args.study}")
        return 0
    complete, feasible = int(trials["complete"].sum()), int(trials["feasible"].sum())
    repeated = int(trials["duplicate_of"].notna().sum())
    objectives = ", ".join(f"{o.direction} {o.metric}" for o in search.objectives)
    constraints = "; ".join(c.describe() for c in search.constraints) or "none"
    print(f"Search {study.name!r}: {complete} of {search.n_trials} trials complete "
          f"({len(trials) - complete} runs failed or unfinished), {feasible} feasible, "
          f"{repeated} repeated an earlier configuration; experiment {study.experiment!r} in "
          f"{tracking.store_summary(uri)}")
    print(f"Objectives: {objectives}. Constraints: {constraints}.")
    print(f"\nPareto front of the feasible trials ({len(results.front)}):")
    print(results.front_text())
    if results.cheapest is not None:
        print(f"\nCheapest feasible ({search.cost_objective.metric}): "
              f"{results.describe(results.cheapest)}")
        print(f"Knee: {results.describe(results.knee)}")
    return 0


def _show_points(study, uri: str) -> int:
    """A table of a study's points: status and key metrics of each point's latest run."""
    from mpimpy import tracking
    from mpimpy.studies.compare import load_runs, tidy_runs

    runs = tidy_runs(load_runs(study.experiment, uri, status=None))
    if not runs.empty and "study" in runs:
        runs = runs[runs["study"] == study.name]
    if runs.empty:
        print(f"Study {study.name!r}: no runs in {tracking.store_summary(uri)} yet")
        return 0
    metrics = [m for m in (*tracking.KEY_METRICS, *tracking.COST_METRICS) if m in runs]
    columns = ["point_id", "status", *metrics]
    print(f"Study {study.name!r}: {len(runs)} runs in experiment {study.experiment!r} of "
          f"{tracking.store_summary(uri)}")
    print(runs.sort_values("point_id")[columns].to_string(
        index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def dashboard_command(storage: str, port: int = 8080, host: str = "127.0.0.1") -> list[str]:
    """The ``optuna-dashboard`` command line on a search storage (the one beside the store)."""
    return [sys.executable, "-c", "from optuna_dashboard._cli import main; main()", storage,
            "--host", host, "--port", str(port)]


def ui_command(port: int = 5000, host: str = "127.0.0.1") -> list[str] | None:
    """The ``mlflow server`` command line that serves the local store, or ``None`` when the
    store is a tracking server (which has its own UI)."""
    from mpimpy import tracking

    uri = tracking.tracking_uri()
    db = tracking.sqlite_path(uri)
    if db is None:
        return None
    db.parent.mkdir(parents=True, exist_ok=True)
    artifacts = db.parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        artifacts.resolve().as_uri(),
        "--app-name",  # MLflow's app, opening experiments on their runs (mpimpy/mlflow_ui.py)
        "mpimpy",
        "--host",
        host,
        "--port",
        str(port),
    ]


def _cmd_ui(args) -> int:
    """Replace this process by ``mlflow server`` (so Ctrl-C and signals reach it directly).

    MLflow's background job runner (GenAI scorers, a pool of worker processes) is switched off
    unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is set: browsing runs does not need it.
    """
    from mpimpy import tracking

    if args.optuna:
        import importlib.util

        from mpimpy.studies.search import default_storage, storage_summary

        if importlib.util.find_spec("optuna_dashboard") is None:
            print("error: optuna-dashboard is not installed; install it with "
                  "`.venv/bin/pip install optuna-dashboard` (or `pip install -e '.[dashboard]'`)."
                  " The MLflow UI (`mpimpy ui`) shows the same trials as runs.", file=sys.stderr)
            return 1
        storage = args.storage or default_storage()
        port = args.port or 8080
        print(f"Optuna dashboard for {storage_summary(storage)} at http://{args.host}:{port} "
              "(Ctrl-C stops it)", flush=True)
        command = dashboard_command(storage, port, args.host)
        os.execv(command[0], command)
    command = ui_command(args.port or 5000, args.host)
    if command is None:
        print(f"The store is a tracking server; open {tracking.tracking_uri()} in a browser.")
        return 0
    url = f"http://{args.host}:{args.port or 5000}"
    print(f"MLflow UI for {tracking.store_summary()} at {url} (Ctrl-C stops it)", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execve(command[0], command, env)
    return 0  # not reached


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


_STORAGE_HELP = (
    "a search's Optuna storage (default: optuna.db beside the tracking store, or "
    "$MPIMPY_OPTUNA_STORAGE)"
)
_ANY_NOTEBOOK_HELP = (
    "allow a notebook outside the project's notebooks/ and the study file's folder"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mpimpy`` command."""
    parser = argparse.ArgumentParser(
        prog="mpimpy", description="mPimPy memristor crossbar simulator"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    study = commands.add_parser("study", help="run and list parameter studies")
    study_commands = study.add_subparsers(dest="study_command", required=True)

    run = study_commands.add_parser("run", help="run a study's points that have not finished yet")
    run.add_argument("study", help="study file (or the name of one in studies/)")
    run.add_argument(
        "--workers", type=_positive_int, default=1, help="parallel points (default 1)"
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler address (tcp://host:8786): run the points on that cluster",
    )
    run.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long the Dask scheduler has to answer (default 10)",
    )
    run.add_argument("--dry-run", action="store_true", help="validate and list points, run nothing")
    run.add_argument(
        "--output-dir", metavar="DIR", help="executed notebooks (default outputs/<study>)"
    )
    run.add_argument("--force", action="store_true", help="also rerun points that finished before")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--allow-any-notebook", action="store_true", help=_ANY_NOTEBOOK_HELP)
    run.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    run.set_defaults(func=_cmd_run)

    validate = study_commands.add_parser(
        "validate", help="check study files against their notebooks"
    )
    validate.add_argument("studies", nargs="+", help="study files (or names in studies/)")
    validate.add_argument("--allow-any-notebook", action="store_true", help=_ANY_NOTEBOOK_HELP)
    validate.set_defaults(func=_cmd_validate)

    listing = study_commands.add_parser("list", help="shipped studies and experiments in the store")
    listing.add_argument("--dir", help="folder of study files (default: the project's studies/)")
    listing.set_defaults(func=_cmd_list)

    show = study_commands.add_parser(
        "show", help="a search's Pareto front (knee, cheapest feasible), or a study's runs")
    show.add_argument("study", help="study file (or the name of one in studies/)")
    show.set_defaults(func=_cmd_show)

    ui = commands.add_parser("ui", help="start the MLflow UI on the experiment store")
    ui.add_argument("--port", type=int, default=None,
                    help="default 5000 (MLflow), 8080 (--optuna)")
    ui.add_argument("--optuna", action="store_true",
                    help="open optuna-dashboard on the searches' Optuna storage instead")
    ui.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
    ui.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    ui.set_defaults(func=_cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpimpy`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
