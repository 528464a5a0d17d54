"""Run a study: execute its notebook once per point, each point an MLflow run.

How a study runs
    1. The study file is validated (:mod:`mpimpy.studies.validate`) and its points' source
       made: a grid's listed points (:class:`~mpimpy.studies.source.GridSource`) or a
       search's trials (:class:`~mpimpy.studies.search.OptunaSource`); with
       a Dask scheduler, the scheduler must answer within ``connect_timeout_s``. Nothing is
       written to the store before both pass.
    2. The experiment is created once, here in the parent process, and its id handed on
       (``mlflow.set_experiment`` raced from several processes files runs under Default). A
       local SQLite store is created under a file lock, so runners started together do not
       race MLflow's schema migrations.
    3. The source reconciles with the store: a grid skips the points already FINISHED (same
       ``mpimpy.params_hash`` tag, same study), so a study that was interrupted or had failures
       resumes where it stopped (old FAILED/KILLED runs stay as they are and the new attempt is
       a new run); a search settles the trials other runners left.
    4. The loop (:class:`StudyRun`) takes the next point from the source while fewer points run
       than the backend holds (:mod:`mpimpy.studies.backends`: one local process per point,
       ``workers=N`` at a time, or a Dask cluster, ``scheduler=ADDRESS``). The source claims
       each point just before it is handed out (:mod:`mpimpy.studies.lease`), so a run is
       RUNNING only while its point executes; the loop renews the leases of its runs. The worker
       (:mod:`mpimpy.studies.worker`) runs the notebook with papermill in a kernel of this
       Python, whose environment names the run (``MLFLOW_RUN_ID``), then logs the executed
       notebook as an artifact (also rendered as HTML), the point's parameters that the notebook
       did not log itself (one name per setting: :func:`mpimpy.studies.store.log_point_params`)
       and sets the run FINISHED, or FAILED with the error message.
    5. A point that fails does not stop the others; a worker process that dies fails only its
       own point. On Ctrl-C (or SIGTERM) the workers and their kernels are stopped, queued Dask
       futures are cancelled and the runs in flight are set KILLED. When the store itself fails
       (full, read-only), the runs in flight are marked FAILED where the store still allows it,
       no new point is started, and the summary names the path. What became of each point:
       :mod:`mpimpy.studies.results`.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from mpimpy import tracking
from mpimpy.studies.backends import CONNECT_TIMEOUT_S, DaskBackend, LocalBackend, WorkerDied
from mpimpy.studies.lease import DEFAULT_LEASE_TTL_S, Lease, lease_state, renew
from mpimpy.studies.results import PointResult, StudyResult
from mpimpy.studies.search import OptunaSource
from mpimpy.studies.source import GridSource, PointSource
from mpimpy.studies.spec import Point, Study, StudyError
from mpimpy.studies.store import (
    POINT_TAG,
    RunnerError,
    expire_stale_runs,
    log_point_params,
    open_store,
    problem,
    record_failure,
    store_problem,
)
from mpimpy.studies.validate import load_study
from mpimpy.studies.worker import STATUS_POLL_S, point_task


class _Interrupted(BaseException):
    pass


class StudyRun:
    """The loop of one :func:`run_study` call: points from ``source`` to the backend while it
    has room, their outcomes collected, the leases of the runs in flight renewed, the points
    other runners hold polled, until the source has nothing left (see the module docstring)."""

    def __init__(self, source: PointSource, client, uri: str, experiment_id: str, backend,
                 output_dir: Path, result: StudyResult, *, lease: Lease, threads: int | None,
                 bar):
        self.source, self.study, self.client, self.uri = source, source.study, client, uri
        self.experiment_id, self.backend, self.output_dir = experiment_id, backend, output_dir
        self.result, self.lease, self.threads, self.bar = result, lease, threads, bar
        self.inflight: dict[Any, tuple[Point, str]] = {}  # handle -> (point, run id)
        self.renew_s = lease.ttl_s / 4
        self.poll_s = min(2.0, self.renew_s)

    # -- what the source calls ----------------------------------------------------------------
    def add(self, point: Point, status: str, run_id=None, error=None, output_path=None,
            wall_s=None) -> None:
        """Record what became of a point (:mod:`mpimpy.studies.results`)."""
        self.result.results.append(
            PointResult(point, status, run_id, error, output_path, wall_s))
        if status in ("FAILED", "KILLED", "INVALID"):
            self.bar.write(f"{status} {point.point_id}: {error}")
        if status in self.source.progress:
            self.bar.update(1)

    def launch(self, point: Point, run_id: str) -> None:
        """Hand a point whose run this runner holds to the backend."""
        task = point_task(self.study, point, run_id, uri=self.uri,
                          experiment_id=self.experiment_id, output_dir=self.output_dir,
                          lease=self.lease, threads=self.threads,
                          status_poll_s=min(STATUS_POLL_S, self.renew_s))
        self.inflight[self.backend.submit(task)] = (point, run_id)

    def stop_starting(self, problem_text: str) -> None:
        """Start no more points: the store (or a search's storage) cannot be written."""
        if self.result.store_error is None:
            self.result.store_error = problem_text
            self.bar.write(f"Stopping: {problem_text}")

    # -- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        while (len(self.inflight) < self.backend.capacity and self.result.store_error is None
               and self.source.launch_next(self)):
            pass

    def collect(self, handle) -> None:
        point, run_id = self.inflight.pop(handle)
        try:
            outcome = self.backend.outcome(handle)
        except Exception as exc:  # the worker died (or, on Dask, raised)
            outcome = {"status": "FAILED", "raised": True, "details": traceback.format_exc(),
                       "error": str(exc) if isinstance(exc, WorkerDied) else problem(exc)}
        if outcome.get("raised"):  # the worker could not record it: do it here
            try:
                log_point_params(tracking.TrackedRun(run_id, client=self.client, managed=True),
                                 point.parameters)
                record_failure(self.client, run_id, outcome["error"], outcome.get("details"))
            except Exception as store_exc:
                self.stop_starting(store_problem(store_exc, self.uri))
        if outcome.get("store_error"):
            self.stop_starting(outcome["store_error"])
        self.add(point, outcome["status"], run_id, outcome.get("error"),
                 outcome.get("output_path"), outcome.get("wall_s"))
        self.source.ended(self, point, run_id)

    def run(self) -> None:
        self.source.reconcile(self)
        now = time.monotonic()
        next_renew, next_poll = now + self.renew_s, now + self.poll_s
        while True:
            self.start()
            if not self.inflight and (self.result.store_error is not None
                                      or not self.source.waiting):
                break
            wake = min(next_renew, next_poll) if self.source.waiting else next_renew
            timeout = max(0.0, wake - time.monotonic())
            if self.inflight:
                for handle in self.backend.wait(list(self.inflight), timeout):
                    self.collect(handle)
            else:
                time.sleep(timeout)
            now = time.monotonic()
            if now >= next_renew:
                renew(self.client, [run_id for _, run_id in self.inflight.values()])
                next_renew = now + self.renew_s
            if self.source.waiting and now >= next_poll:
                self.source.poll(self)
                # a random phase, so that two runners withdrawing from one point do not
                # claim it again at the same moment forever
                next_poll = now + self.poll_s * random.uniform(0.5, 1.5)
        self.source.finish(self, self.result.store_error or "")

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: stop the workers, then mark the runs they left RUNNING KILLED."""
        self.result.interrupted = True
        self.backend.abort(list(self.inflight))
        for point, run_id in self.inflight.values():
            status, error = "KILLED", "interrupted by the user"
            try:
                current = self.client.get_run(run_id).info.status
                if current == "RUNNING":
                    log_point_params(
                        tracking.TrackedRun(run_id, client=self.client, managed=True),
                        point.parameters)
                    record_failure(self.client, run_id, error, None, status="KILLED")
                else:  # it ended just before the workers were stopped
                    status, error = current, None
            except Exception as exc:
                error = f"interrupted; the run could not be marked KILLED: {problem(exc)}"
            self.result.results.append(PointResult(point, status, run_id, error))
        run_ids = [run_id for _, run_id in self.inflight.values()]
        self.inflight.clear()
        self.source.interrupted(self, run_ids)
        self.source.finish(self, "interrupted")


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
    allow_any_notebook: bool = False,
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    storage: str | None = None,
) -> StudyResult:
    """Run every point of a study that has not FINISHED yet; see the module docstring.

    ``study``: a :class:`~mpimpy.studies.spec.Study` or the path of a study file (validated
    first; :class:`~mpimpy.studies.spec.StudyError` if it is wrong). ``workers``: local worker
    processes, or with ``scheduler`` (a Dask scheduler address) the most points in flight
    (default: the cluster's thread count). ``output_dir``: where executed notebooks go (default
    ``<project>/outputs/<study name>``). ``dry_run``: only report what would run. ``force``:
    run finished points again too. ``allow_any_notebook``: run a notebook outside the project's
    ``notebooks/`` and the study's folder. ``lease_ttl_s``: how long the runs' leases live
    unrenewed. ``connect_timeout_s``: how long the scheduler has to answer. ``storage``: a
    search's Optuna storage URL (default :func:`mpimpy.studies.search.default_storage`).

    A study with a ``search:`` section asks its trials from Optuna and runs them as points
    through the same loop and workers (:mod:`mpimpy.studies.search`) until ``n_trials`` are
    complete; its result is a :class:`mpimpy.studies.search.SearchResult`.

    Never raises for a failing point: see the result's ``ok``. Raises
    :class:`~mpimpy.studies.backends.SchedulerError` for a scheduler that does not answer and
    :class:`~mpimpy.studies.store.RunnerError` for a store that cannot be opened, both before
    anything is written.
    """
    if not isinstance(study, Study):
        study = load_study(study, allow_any_notebook=allow_any_notebook)
    elif study.notebook_parameters is None:
        study = load_study(study.path, allow_any_notebook=allow_any_notebook)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not lease_ttl_s > 0:
        raise ValueError(f"lease_ttl_s must be > 0 seconds, got {lease_ttl_s!r}")
    uri = tracking.tracking_uri()
    output_dir = (
        Path(output_dir) if output_dir else tracking.project_root() / "outputs" / study.name
    )
    output_dir = output_dir.resolve()
    source = (OptunaSource(study, storage=storage, force=force) if study.search is not None
              else GridSource(study, force=force))
    if dry_run:
        return source.dry_run(uri, output_dir, echo)

    # Everything that can refuse to start does so before the store is written.
    backend = None
    if scheduler:
        backend = DaskBackend(scheduler, workers if workers > 1 else None, connect_timeout_s)
    try:
        client, experiment_id = open_store(uri, study, source.columns())
        held = expire_stale_runs(client, experiment_id, study)
        result = source.start(client, uri, experiment_id, output_dir, echo)
    except BaseException as exc:
        if backend is not None:
            backend.close()
        if isinstance(exc, RunnerError | StudyError) or not isinstance(exc, Exception):
            raise
        raise RunnerError(store_problem(exc, uri)) from None
    for run in held:
        echo(f"  {run.data.tags.get(POINT_TAG, run.info.run_id)}: {lease_state(run)[1]}")
    if not source.size:
        if backend is not None:
            backend.close()
        source.finish(None, "")
        return result
    if backend is None:
        backend = LocalBackend(min(workers, source.size))
    _drive(source, client, uri, experiment_id, backend, output_dir, result,
           lease_ttl_s=lease_ttl_s, scheduler=scheduler, workers=workers, progress=progress)
    return result


def _drive(source, client, uri, experiment_id, backend, output_dir, result, *, lease_ttl_s,
           scheduler, workers, progress) -> None:
    """Run the loop of one :func:`run_study` call: the progress bar, SIGTERM as Ctrl-C, and
    the workers stopped and their runs KILLED when interrupted."""
    old_sigterm = None
    if threading.current_thread() is threading.main_thread():

        def on_sigterm(signum, frame):
            raise _Interrupted()

        old_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    from tqdm.auto import tqdm

    bar = tqdm(total=source.total, initial=source.initial, desc=source.study.name,
               unit=source.unit, disable=not progress, file=sys.stderr)
    loop = StudyRun(
        source, client, uri, experiment_id, backend, output_dir, result,
        lease=Lease.new(lease_ttl_s),
        # local workers share this machine's cores; Dask workers size themselves
        threads=None if scheduler else max(1, (os.cpu_count() or 1) // workers),
        bar=bar,
    )
    try:
        loop.run()
    except (KeyboardInterrupt, _Interrupted):
        loop.interrupt()
    finally:
        bar.close()
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)
        backend.close()
    result.results.sort(key=lambda r: r.point.index)


__all__ = ["StudyRun", "run_study"]
