"""Run a study: execute its notebook once per point, each point an MLflow run.

How a study runs
    1. The study file is validated and expanded into points (:mod:`mpimpy.studies.spec`).
    2. The experiment is created once, here in the parent process, and its id handed on
       (``mlflow.set_experiment`` raced from several processes files runs under Default).
    3. Points already FINISHED in the store (same ``mpimpy.params_hash`` tag, same study) are
       skipped, so a study that was interrupted or had failures resumes where it stopped; old
       FAILED/KILLED runs stay as they are and the new attempt is a new run.
    4. The other points go to workers, at most as many at a time as there are workers: a local
       process pool (``workers=N``) or a Dask cluster (``scheduler=ADDRESS``). For each point the
       parent creates a run just before handing it out, so a run is RUNNING only while its
       point executes. The worker runs the notebook with papermill in a kernel of this Python,
       whose environment names the run (``MLFLOW_RUN_ID``), then logs the executed notebook as
       an artifact (also rendered as HTML), the point's parameters that the notebook did not
       log itself (one name per setting: :func:`mpimpy.tracking.log_point_params`) and sets
       the run FINISHED, or FAILED with the error message.
    5. A point that fails does not stop the others. On Ctrl-C (or SIGTERM) the workers are
       stopped and the runs in flight are set KILLED.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpimpy import tracking
from mpimpy.studies.spec import Point, Study, load_study

#: Tag with the hash of a point's notebook and parameters (:func:`.spec.params_hash`).
HASH_TAG = "mpimpy.params_hash"
STUDY_TAG = "study"
POINT_TAG = "point_id"
ERROR_TAG = "mpimpy.error"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class PointResult:
    """What became of one point."""

    point: Point
    status: str  # FINISHED, FAILED, KILLED, SKIPPED (finished before) or PENDING (dry run)
    run_id: str | None = None
    error: str | None = None
    output_path: str | None = None
    wall_s: float | None = None


@dataclass
class StudyResult:
    """Outcome of :func:`run_study`; ``ok`` is False if any point failed or the run was stopped."""

    study: Study
    tracking_uri: str
    experiment_id: str | None
    output_dir: Path
    results: list[PointResult] = field(default_factory=list)
    interrupted: bool = False
    dry_run: bool = False

    def with_status(self, status: str) -> list[PointResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        bad = self.with_status("FAILED") + self.with_status("KILLED")
        return not bad and not self.interrupted

    def summary(self) -> str:
        """A few lines for the terminal: counts, failures and where to look at results."""
        counts = {s: len(self.with_status(s)) for s in ("FINISHED", "SKIPPED", "FAILED", "KILLED")}
        lines = [
            f"Study {self.study.name!r}: {len(self.results)} points: "
            f"{counts['FINISHED']} finished, {counts['SKIPPED']} skipped (finished before), "
            f"{counts['FAILED']} failed"
            + (f", {counts['KILLED']} killed" if counts["KILLED"] else "")
        ]
        if self.dry_run:
            lines[0] = (
                f"Study {self.study.name!r} (dry run): {len(self.results)} points, "
                f"{len(self.with_status('PENDING'))} to run, {counts['SKIPPED']} finished before"
            )
        for r in self.with_status("FAILED"):
            lines.append(f"  FAILED {r.point.point_id}: {r.error} (run {r.run_id})")
        if self.interrupted:
            lines.append("Interrupted: run the same command again to finish the remaining points.")
        if not self.dry_run:
            lines.append(
                f"Results: experiment {self.study.experiment!r} (id {self.experiment_id}) in "
                f"{tracking.store_summary(self.tracking_uri)}"
            )
            lines.append(f"Executed notebooks: {self.output_dir}")
            if tracking.sqlite_path(self.tracking_uri) is not None:
                lines.append("Browse them with: mpimpy ui")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Store queries


def _search_all(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_with_status(client, experiment_id: str, study_name: str, status: str) -> list:
    """All runs of ``study_name`` in the experiment with the given status (exact match)."""
    return _search_all(
        client,
        experiment_id,
        f"tags.{STUDY_TAG} = '{study_name}' and attributes.status = '{status}'",
    )


def finished_hashes(client, experiment_id: str, study_name: str) -> set[str]:
    """Parameter hashes of the study's points that have a FINISHED run."""
    runs = runs_with_status(client, experiment_id, study_name, "FINISHED")
    return {r.data.tags[HASH_TAG] for r in runs if HASH_TAG in r.data.tags}


def _existing_experiment_id(uri: str, name: str) -> str | None:
    """Id of an existing experiment, without creating a local store that is not there yet."""
    db = tracking.sqlite_path(uri)
    if db is not None and not db.is_file():
        return None
    experiment = tracking.get_client(uri).get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        return None
    return experiment.experiment_id


# --------------------------------------------------------------------------------------------
# Worker side


def _kernel_manager_class(extra_env: dict[str, str], log_file=None):
    """A kernel manager that starts this interpreter's ipykernel with ``extra_env`` set.

    The kernel process's own stdout/stderr (not the cells' outputs, which papermill records in
    the notebook) go to ``log_file`` when given, instead of the terminal.

    The kernelspec search is emptied so ``python3`` always resolves to ipykernel's built-in spec,
    which runs ``sys.executable`` (the venv's Python), whatever kernels the user has installed.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class PointKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_kernel_spec_manager(self):
            return KernelSpecManager(parent=self, kernel_dirs=[])

        async def start_kernel(self, **kw):
            env = dict(kw.pop("env", None) or os.environ)
            env.update(extra_env)
            if log_file is not None:
                kw.setdefault("stdout", log_file)
                kw.setdefault("stderr", log_file)
            return await super().start_kernel(env=env, **kw)

    return PointKernelManager


def _package_root() -> str:
    """The folder holding the ``mpimpy`` package, put on the kernel's PYTHONPATH."""
    return str(Path(tracking.__file__).resolve().parents[1])


def _clean(text: str) -> str:
    return _ANSI.sub("", text).strip()


def execute_point(task: dict[str, Any]) -> dict[str, Any]:
    """Execute one point's notebook and close its MLflow run (runs in a worker process).

    ``task`` is a plain dict so that it travels to a Dask worker as well as to a local process.
    Errors inside the notebook are caught and recorded on the run (FAILED, tag
    ``mpimpy.error``, the traceback as the run's description and as ``error.txt``, the partly
    executed notebook as an artifact); only a failure to reach the store raises.
    """
    import papermill
    from mlflow import MlflowClient
    from papermill.exceptions import PapermillExecutionError

    started = time.monotonic()
    client = MlflowClient(tracking_uri=task["tracking_uri"])
    run_id = task["run_id"]
    output = Path(task["output_path"])
    output.parent.mkdir(parents=True, exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)
    env = {
        "MLFLOW_TRACKING_URI": task["tracking_uri"],
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_EXPERIMENT_ID": task["experiment_id"],
        tracking.ENV_RUN_MANAGED: "1",
        tracking.ENV_STUDY: task["study"],
        tracking.ENV_POINT_ID: task["point_id"],
        "PYTHONPATH": pythonpath,
    }
    if task.get("threads"):  # one BLAS/torch thread pool per core share, not one per core each
        env.update({var: str(task["threads"]) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    error = details = None
    kernel_log = output.with_suffix(".kernel.log")
    with open(kernel_log, "w") as log_file:
        try:
            papermill.execute_notebook(
                task["notebook"],
                str(output),
                parameters=task["parameters"],
                kernel_name="python3",
                cwd=task["cwd"],
                progress_bar=False,
                log_output=False,
                start_timeout=120,
                execution_timeout=task.get("timeout_s"),
                kernel_manager_class=_kernel_manager_class(env, log_file),
            )
        except PapermillExecutionError as exc:
            error = _clean(f"{exc.ename}: {exc.evalue}")
            details = _clean("\n".join(exc.traceback))
        except Exception as exc:  # kernel died, timeout, unreadable notebook ...
            error = _clean(f"{type(exc).__name__}: {exc}")
            details = traceback.format_exc()
    wall_s = time.monotonic() - started

    tracked = tracking.TrackedRun(run_id, client=client, managed=True)
    if output.is_file():
        tracking.log_notebook(output, tracked)
    tracking.log_point_params(tracked, task["parameters"])
    client.log_metric(run_id, "notebook_wall_s", wall_s)
    if error is not None:
        if kernel_log.stat().st_size:
            client.log_artifact(run_id, str(kernel_log))
        _record_failure(client, run_id, error, details)
    else:
        client.set_terminated(run_id, "FINISHED")
    return {
        "status": "FAILED" if error else "FINISHED",
        "error": error,
        "output_path": str(output),
        "wall_s": wall_s,
    }


def _record_failure(client, run_id: str, error: str, details: str | None, status: str = "FAILED"):
    """Mark a run failed (or killed) with its error as tag, description and ``error.txt``."""
    import tempfile

    client.set_tag(run_id, ERROR_TAG, error[:4000])
    client.set_tag(
        run_id,
        "mlflow.note.content",
        f"**{status}**: {error}\n\n```\n{(details or '')[:20000]}\n```",
    )
    if details:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "error.txt"
            path.write_text(f"{error}\n\n{details}\n")
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status)


def _init_worker() -> None:
    # Only the parent reacts to Ctrl-C; it stops the workers and marks their runs KILLED.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------
# Backends: where points execute


#: Modules the worker processes need, imported once by the fork server (see below).
_WORKER_MODULES = ["mpimpy.studies.runner", "papermill", "mlflow"]


def _worker_context():
    """The multiprocessing context for local workers.

    ``forkserver`` where available: a clean single-threaded server process imports the worker
    modules once (torch, MLflow and papermill take seconds) and forks each worker from it, which
    is as safe as ``spawn`` (nothing is inherited from this possibly multi-threaded process) and
    much cheaper per worker. ``spawn`` elsewhere.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_WORKER_MODULES)
        return context
    return multiprocessing.get_context("spawn")


class _LocalBackend:
    """A pool of ``workers`` local processes, each running one point at a time."""

    def __init__(self, workers: int):
        self.workers = workers
        self.capacity = workers
        self.aborted = False
        self._start()

    def _start(self):
        self.pool = cf.ProcessPoolExecutor(
            self.workers, mp_context=_worker_context(), initializer=_init_worker
        )

    def submit(self, fn, task):
        return self.pool.submit(fn, task)

    def wait(self, futures):
        return cf.wait(futures, return_when=cf.FIRST_COMPLETED).done

    def recover(self, exc: BaseException):
        """A worker died (killed, out of memory): start a fresh pool for the remaining points."""
        if isinstance(exc, cf.process.BrokenProcessPool):
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._start()

    def abort(self, futures):
        self.aborted = True
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            process.terminate()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def close(self):
        if not self.aborted:
            self.pool.shutdown(wait=True)


class _DaskBackend:
    """The same points on a Dask distributed cluster (``distributed.Client(address)``)."""

    def __init__(self, address: str, workers: int | None):
        from distributed import Client

        self.client = Client(address)
        threads = sum(self.client.nthreads().values()) or 1
        self.capacity = workers or threads

    def submit(self, fn, task):
        return self.client.submit(
            fn, task, pure=False, key=f"mpimpy-{task['point_id']}-{task['run_id']}"
        )

    def wait(self, futures):
        from distributed import wait

        return wait(futures, return_when="FIRST_COMPLETED").done

    def recover(self, exc: BaseException):
        pass

    def abort(self, futures):
        self.client.cancel(list(futures), force=True)

    def close(self):
        self.client.close()


# --------------------------------------------------------------------------------------------
# The runner


def plan(
    study: Study, *, uri: str | None = None, force: bool = False
) -> tuple[list[Point], list[Point]]:
    """Split the study's points into (to run, already finished), reading the store only."""
    uri = uri or tracking.tracking_uri()
    points = study.expand()
    experiment_id = _existing_experiment_id(uri, study.experiment)
    if force or experiment_id is None:
        return points, []
    finished = finished_hashes(tracking.get_client(uri), experiment_id, study.name)
    done = [p for p in points if p.params_hash in finished]
    return [p for p in points if p.params_hash not in finished], done


def _kill_stale_runs(client, experiment_id: str, study: Study) -> None:
    """Runs of the study left RUNNING by a runner that was killed outright are marked KILLED
    (they will never finish; their points run again). Hence: do not run one study twice at
    the same time."""
    for run in runs_with_status(client, experiment_id, study.name, "RUNNING"):
        if HASH_TAG in run.data.tags:
            _record_failure(
                client,
                run.info.run_id,
                "interrupted: still RUNNING when the study was run again",
                None,
                status="KILLED",
            )


def _create_run(client, experiment_id: str, study: Study, point: Point) -> str:
    tags = {
        STUDY_TAG: study.name,
        POINT_TAG: point.point_id,
        HASH_TAG: point.params_hash,
        "mpimpy.notebook": study.notebook_name,
        "mpimpy.study_file": str(study.path),
        "mlflow.source.name": str(study.notebook),
        "mlflow.source.type": "NOTEBOOK",
        tracking.NOTE_TAG: tracking.point_note(
            study.name, study.notebook_name, point.varying, study.parameters
        ),
    }
    run = client.create_run(experiment_id, run_name=point.run_name, tags=tags)
    return run.info.run_id


class _Interrupted(BaseException):
    pass


def run_study(
    study: Study | str | Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    output_dir: str | Path | None = None,
    dry_run: bool = False,
    force: bool = False,
    progress: bool = True,
    echo=print,
) -> StudyResult:
    """Run every point of a study that has not FINISHED yet; see the module docstring.

    ``study``: a :class:`~mpimpy.studies.spec.Study` or the path of a study file (validated
    first; :class:`~mpimpy.studies.spec.StudyError` if it is wrong). ``workers``: local worker
    processes, or with ``scheduler`` (a Dask scheduler address) the most points in flight
    (default: the cluster's thread count). ``output_dir``: where executed notebooks go (default
    ``<project>/outputs/<study name>``). ``dry_run``: only report what would run. ``force``:
    run finished points again too. Never raises for a failing point: see the result's ``ok``.
    """
    if not isinstance(study, Study):
        study = load_study(study)
    elif study.notebook_parameters is None:
        study = load_study(study.path)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    uri = tracking.tracking_uri()
    output_dir = (
        Path(output_dir) if output_dir else tracking.project_root() / "outputs" / study.name
    )
    output_dir = output_dir.resolve()
    to_run, done = plan(study, uri=uri, force=force)
    result = StudyResult(study, uri, None, output_dir, dry_run=dry_run)
    result.results = [PointResult(p, "SKIPPED") for p in done]

    if dry_run:
        result.experiment_id = _existing_experiment_id(uri, study.experiment)
        result.results += [PointResult(p, "PENDING") for p in to_run]
        result.results.sort(key=lambda r: r.point.index)
        for r in result.results:
            state = "skip (finished)" if r.status == "SKIPPED" else "run"
            echo(f"  {state:16} {r.point.point_id}")
        return result

    client = tracking.get_client(uri)
    experiment_id = tracking.ensure_experiment(
        study.experiment,
        client=client,
        description=study.description,
        columns=list((to_run or done)[0].varying),
    )
    result.experiment_id = experiment_id
    _kill_stale_runs(client, experiment_id, study)
    echo(
        f"Study {study.name!r}: {len(to_run)} points to run, {len(done)} finished before; "
        f"experiment {study.experiment!r} in {tracking.store_summary(uri)}"
    )
    if not to_run:
        return result

    if scheduler:
        backend = _DaskBackend(scheduler, workers if workers > 1 else None)
    else:
        backend = _LocalBackend(min(workers, len(to_run)))
    pending = deque(to_run)
    inflight: dict[Any, tuple[Point, str]] = {}
    old_sigterm = None
    if threading.current_thread() is threading.main_thread():

        def on_sigterm(signum, frame):
            raise _Interrupted()

        old_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(to_run), desc=study.name, unit="point", disable=not progress, file=sys.stderr
    )
    try:
        while pending or inflight:
            while pending and len(inflight) < backend.capacity:
                point = pending.popleft()
                run_id = _create_run(client, experiment_id, study, point)
                task = {
                    "tracking_uri": uri,
                    "experiment_id": experiment_id,
                    "run_id": run_id,
                    "study": study.name,
                    "point_id": point.point_id,
                    "notebook": str(study.notebook),
                    "cwd": str(study.notebook.parent),
                    "output_path": str(output_dir / f"{point.point_id}.ipynb"),
                    "parameters": point.parameters,
                    "timeout_s": study.timeout_s,
                    # local workers share this machine's cores; Dask workers size themselves
                    "threads": None if scheduler else max(1, (os.cpu_count() or 1) // workers),
                }
                inflight[backend.submit(execute_point, task)] = (point, run_id)
            for future in backend.wait(list(inflight)):
                point, run_id = inflight.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # the worker could not run or record the point
                    backend.recover(exc)
                    error = _clean(f"{type(exc).__name__}: {exc}")
                    tracking.log_point_params(run_id, point.parameters)
                    _record_failure(client, run_id, error, traceback.format_exc())
                    outcome = {"status": "FAILED", "error": error}
                point_result = PointResult(
                    point,
                    outcome["status"],
                    run_id,
                    outcome.get("error"),
                    outcome.get("output_path"),
                    outcome.get("wall_s"),
                )
                result.results.append(point_result)
                if point_result.status == "FAILED":
                    bar.write(f"FAILED {point.point_id}: {point_result.error}")
                bar.update(1)
    except (KeyboardInterrupt, _Interrupted):
        result.interrupted = True
        backend.abort(list(inflight))
        for point, run_id in inflight.values():
            tracking.log_point_params(run_id, point.parameters)
            _record_failure(client, run_id, "interrupted by the user", None, status="KILLED")
            result.results.append(PointResult(point, "KILLED", run_id, "interrupted"))
        inflight.clear()
    finally:
        bar.close()
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)
        backend.close()
    result.results.sort(key=lambda r: r.point.index)
    return result


__all__ = [
    "HASH_TAG",
    "PointResult",
    "StudyResult",
    "execute_point",
    "finished_hashes",
    "plan",
    "run_study",
    "runs_with_status",
]
