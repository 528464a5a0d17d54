"""Run a study: execute its notebook once per point, each point an MLflow run.

How a study runs
    1. The study file is validated and expanded into points (:mod:`mpimpy.studies.spec`); with
       a Dask scheduler, the scheduler must answer within ``connect_timeout_s``. Nothing is
       written to the store before both pass.
    2. The experiment is created once, here in the parent process, and its id handed on
       (``mlflow.set_experiment`` raced from several processes files runs under Default). A
       local SQLite store is created under a file lock, so runners started together do not
       race MLflow's schema migrations.
    3. Points already FINISHED in the store (same ``mpimpy.params_hash`` tag, same study) are
       skipped, so a study that was interrupted or had failures resumes where it stopped; old
       FAILED/KILLED runs stay as they are and the new attempt is a new run.
    4. The other points go to workers, at most as many at a time as there are workers: one
       local process per point (``workers=N`` at a time) or a Dask cluster
       (``scheduler=ADDRESS``). For each point the parent *claims* it just before handing it
       out (see "Leases"), so a run is RUNNING only while its point executes. The worker runs the
       notebook with papermill in a kernel of this Python, whose environment names the run
       (``MLFLOW_RUN_ID``), then logs the executed notebook as an artifact (also rendered as
       HTML), the point's parameters that the notebook did not log itself (one name per setting:
       :func:`mpimpy.tracking.log_point_params`) and sets the run FINISHED, or FAILED with the
       error message.
    5. A point that fails does not stop the others; a worker process that dies fails only its
       own point. On Ctrl-C (or SIGTERM) the workers and their kernels are stopped, queued Dask
       futures are cancelled and the runs in flight are set KILLED. When the store itself fails
       (full, read-only), the runs in flight are marked FAILED where the store still allows it,
       no new point is started, and the summary names the path.

Leases: one FINISHED run per point, however many runners
    Every run the runner creates carries a lease: the tag ``mpimpy.lease`` (the owner's host,
    pid, a token and the lease's time to live) and ``mpimpy.lease.heartbeat``, which the owner
    renews every quarter of the time to live. A lease is *stale* when it was not renewed within
    its time to live, or when its owner ran on this host and its process is gone. To claim a
    point, a runner creates its run and only then looks at the point's other runs: if one is
    FINISHED, or RUNNING under a live lease, it withdraws its own run (deleted) and leaves the
    point to the other (waiting for its outcome); RUNNING runs under stale leases are marked
    KILLED and the point is taken over. Since every claimant creates before it looks, of two
    claims made at once at least one sees the other, so a point never runs twice at a time; two
    claims that see each other both withdraw and try again after a random delay. This works the
    same on a local store, on a tracking server and with workers on other machines (clocks are
    assumed to agree to well within the time to live).

    A worker stops its kernel and does not finish its run when the run is no longer RUNNING
    under its lease (the runner was interrupted, another runner took the point over), when its
    runner's process is gone (same host) or when the lease was not renewed (runner elsewhere):
    a run marked KILLED never becomes FINISHED, and no orphan worker outlives its runner.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait as wait_connections
from pathlib import Path
from typing import Any

from mpimpy import tracking
from mpimpy.studies.spec import Point, Study, load_study

#: Tag with the hash of a point's notebook and parameters (:func:`.spec.params_hash`).
HASH_TAG = "mpimpy.params_hash"
STUDY_TAG = "study"
POINT_TAG = "point_id"
ERROR_TAG = "mpimpy.error"
#: Tags of a run's lease: its owner (JSON) and the time of the owner's last renewal.
LEASE_TAG = "mpimpy.lease"
HEARTBEAT_TAG = "mpimpy.lease.heartbeat"
#: A lease not renewed for this long is stale (its runner is taken to be dead).
DEFAULT_LEASE_TTL_S = 60.0
#: How long to wait for a Dask scheduler to answer before giving up.
CONNECT_TIMEOUT_S = 10.0
#: How often a worker looks at its run in the store (an interrupted or taken-over run stops).
STATUS_POLL_S = 5.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class RunnerError(RuntimeError):
    """The study cannot start: the store cannot be opened or written (the message names it)."""


class SchedulerError(RunnerError):
    """The Dask scheduler given to the runner does not answer."""


@dataclass
class PointResult:
    """What became of one point."""

    point: Point
    # FINISHED, FAILED, KILLED, SKIPPED (finished before, or by another runner), PENDING (dry
    # run, or not started because the run was stopped)
    status: str
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
    #: Why the runner stopped starting points: the store could not be written.
    store_error: str | None = None
    #: A search's trials by state after the run (``COMPLETE``, ``FAIL``, ``RUNNING``, ...),
    #: its Optuna storage, and whether it stopped asking after too many failures.
    search_counts: dict[str, int] | None = None
    optuna_storage: str | None = None
    gave_up: bool = False

    def with_status(self, status: str) -> list[PointResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        """Every point finished; for a search: ``n_trials`` trials are complete (a trial
        that failed was replaced by another)."""
        if self.interrupted or self.store_error is not None:
            return False
        if self.study.search is not None:
            if self.dry_run:
                return True
            complete = (self.search_counts or {}).get("COMPLETE", 0)
            return complete >= self.study.search.n_trials and not self.gave_up
        return not (self.with_status("FAILED") + self.with_status("KILLED"))

    def summary(self) -> str:
        """A few lines for the terminal: counts, failures and where to look at results."""
        if self.study.search is not None:
            return self._search_summary()
        counts = {
            s: len(self.with_status(s))
            for s in ("FINISHED", "SKIPPED", "FAILED", "KILLED", "PENDING")
        }
        lines = [
            f"Study {self.study.name!r}: {len(self.results)} points: "
            f"{counts['FINISHED']} finished, {counts['SKIPPED']} skipped (finished before), "
            f"{counts['FAILED']} failed"
            + (f", {counts['KILLED']} killed" if counts["KILLED"] else "")
            + (f", {counts['PENDING']} not started" if counts["PENDING"] else "")
        ]
        if self.dry_run:
            lines[0] = (
                f"Study {self.study.name!r} (dry run): {len(self.results)} points, "
                f"{counts['PENDING']} to run, {counts['SKIPPED']} finished before"
            )
        for r in self.with_status("FAILED") + self.with_status("KILLED"):
            lines.append(f"  {r.status} {r.point.point_id}: {r.error} (run {r.run_id})")
        if self.store_error:
            lines.append(
                f"Stopped: {self.store_error}. Fix the store, then run the same command again "
                "to run the remaining points."
            )
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

    def _search_summary(self) -> str:
        from mpimpy.studies.search import storage_summary

        search, counts = self.study.search, self.search_counts or {}
        mine = {s: len(self.with_status(s))
                for s in ("FINISHED", "DUPLICATE", "FAILED", "INVALID", "KILLED")}
        head = " (dry run)" if self.dry_run else ""
        lines = [
            f"Search {self.study.name!r}{head}: {counts.get('COMPLETE', 0)} of "
            f"{search.n_trials} trials complete, {counts.get('FAIL', 0)} failed"
            + (f", {counts['RUNNING']} running" if counts.get("RUNNING") else "")
            + (f", {counts['WAITING']} waiting" if counts.get("WAITING") else "")
        ]
        if not self.dry_run:
            lines.append(
                f"This run: {mine['FINISHED']} trials finished, {mine['DUPLICATE']} repeated a "
                f"completed configuration (not run again), {mine['FAILED']} failed, "
                f"{mine['INVALID']} had settings the simulator refuses"
                + (f", {mine['KILLED']} killed" if mine["KILLED"] else ""))
        for r in self.with_status("FAILED") + self.with_status("KILLED"):
            lines.append(f"  {r.status} {r.point.point_id}: {r.error} (run {r.run_id})")
        if self.gave_up:
            lines.append("Stopped asking: as many trials failed as n_trials; fix the notebook "
                         "or the space, then run the same command again.")
        if self.store_error:
            lines.append(f"Stopped: {self.store_error}. Fix it, then run the same command "
                         "again to continue the search.")
        if self.interrupted:
            lines.append("Interrupted: run the same command again to continue the search.")
        if self.optuna_storage:
            lines.append(f"Trials: Optuna study {self.study.name!r} in "
                         f"{storage_summary(self.optuna_storage)}")
        if not self.dry_run:
            lines.append(
                f"Runs: experiment {self.study.experiment!r} (id {self.experiment_id}) in "
                f"{tracking.store_summary(self.tracking_uri)}")
            lines.append(f"The front: mpimpy study show {self.study.path}")
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


def runs_of_point(client, experiment_id: str, study_name: str, params_hash: str) -> list:
    """Every (not deleted) run of one point of the study, whatever its status."""
    return _search_all(
        client,
        experiment_id,
        f"tags.{STUDY_TAG} = '{study_name}' and tags.`{HASH_TAG}` = '{params_hash}'",
    )


def _existing_experiment_id(uri: str, name: str) -> str | None:
    """Id of an existing experiment, without creating a local store that is not there yet."""
    db = tracking.sqlite_path(uri)
    if db is not None and not db.is_file():
        return None
    experiment = tracking.get_client(uri).get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        return None
    return experiment.experiment_id


def _problem(exc: BaseException) -> str:
    """An exception as one line (its type, its first line, the file it names)."""
    lines = _clean(str(exc)).splitlines() or [""]
    text = f"{type(exc).__name__}: {lines[0][:500]}"
    filename = getattr(exc, "filename", None)
    if filename and str(filename) not in text:
        text += f" ({filename})"
    return text


def _store_problem(exc: BaseException, uri: str) -> str:
    return f"cannot write to the experiment store ({tracking.store_summary(uri)}): {_problem(exc)}"


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock on ``path`` (created), held for the ``with`` block."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_store(uri: str, study: Study):
    """A client on the store and the study's experiment id, created if needed (with the study's
    description as its note and its swept parameters as the runs table's columns).

    A local SQLite store is created under a lock next to its database, so that runners started
    together do not both run MLflow's schema migrations (one would crash). Raises
    :class:`RunnerError` naming the store when it cannot be created, read or written.
    """
    db = tracking.sqlite_path(uri)
    try:
        lock = contextlib.nullcontext()
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            lock = _file_lock(db.with_name(db.name + ".lock"))
        with lock:
            client = tracking.get_client(uri)
            points = study.expand()
            return client, tracking.ensure_experiment(
                study.experiment, client=client, description=study.description,
                columns=list(study.search.space) if study.search is not None
                else list(points[0].varying) if points else [])
    except Exception as exc:
        raise RunnerError(
            f"cannot open the experiment store ({tracking.store_summary(uri)}): {_problem(exc)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Leases


@functools.cache
def node_id() -> str:
    """Where a process id names the same process: this host (its name and boot) and this PID
    namespace. A container sharing the host's name but not its processes has another id, so a
    runner there is never taken for dead because its pid is not visible here."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts)


def _process_gone(pid: int) -> bool:
    """Whether the process ``pid`` of this host has exited (a zombie has)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Lease:
    """Who owns a run: a runner's host, pid and token, and how long its lease lives unrenewed.

    ``node`` is the runner's :func:`node_id`: only there can its pid be looked up.
    """

    host: str
    pid: int
    token: str
    ttl_s: float
    node: str = ""

    @classmethod
    def new(cls, ttl_s: float = DEFAULT_LEASE_TTL_S) -> Lease:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex, float(ttl_s), node_id())

    @classmethod
    def of(cls, run) -> Lease | None:
        """The lease of a run, or ``None`` (a run made by an older runner, or by hand)."""
        try:
            return cls(**json.loads(run.data.tags[LEASE_TAG]))
        except (KeyError, TypeError, ValueError):
            return None

    def tags(self) -> dict[str, str]:
        return {LEASE_TAG: json.dumps(asdict(self)), HEARTBEAT_TAG: f"{time.time():.3f}"}

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid}"


def lease_state(run, now: float | None = None) -> tuple[bool, str]:
    """``(live, why)`` for a RUNNING run's lease; see the module docstring."""
    lease = Lease.of(run)
    if lease is None:
        return False, "it has no lease (left by an older runner or made by hand)"
    if lease.node == node_id() and _process_gone(lease.pid):
        return False, f"its runner ({lease}) is gone"
    try:
        age = (now or time.time()) - float(run.data.tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        age = float("inf")
    if age > lease.ttl_s:
        return False, f"its runner ({lease}) has not renewed its lease for {age:.0f} s"
    return True, f"held by the runner {lease} (lease renewed {age:.0f} s ago)"


def _expire(client, run, why: str) -> None:
    """Mark a RUNNING run whose lease is stale KILLED: it will never finish."""
    _record_failure(
        client, run.info.run_id, f"interrupted: {why}; its point runs again", None, "KILLED"
    )


def _withdraw(client, run_id: str) -> None:
    """Take back a claim that lost: the run never executed, so it is ended and deleted."""
    client.set_terminated(run_id, "KILLED")
    client.delete_run(run_id)


def _claim(client, experiment_id: str, study: Study, point: Point, lease: Lease,
           ignore_finished: set[str]):
    """Claim a point: ``("run", run_id)`` to run it, ``("finished", run)`` when another runner
    finished it, ``("held", run)`` when a live lease holds it. See the module docstring."""
    run_id = _create_run(client, experiment_id, study, point, lease)
    others = [
        r
        for r in runs_of_point(client, experiment_id, study.name, point.params_hash)
        if r.info.run_id != run_id
    ]
    for run in others:
        if run.info.status == "FINISHED" and run.info.run_id not in ignore_finished:
            _withdraw(client, run_id)
            return "finished", run
    for run in others:
        if run.info.status == "RUNNING":
            live, why = lease_state(run)
            if live:
                _withdraw(client, run_id)
                return "held", run
            _expire(client, run, why)
    return "run", run_id


def _expire_stale_runs(client, experiment_id: str, study: Study) -> list:
    """Mark the study's RUNNING runs with stale leases KILLED; return the live ones."""
    live_runs = []
    for run in runs_with_status(client, experiment_id, study.name, "RUNNING"):
        if HASH_TAG not in run.data.tags:
            continue
        live, why = lease_state(run)
        if live:
            live_runs.append(run)
        else:
            _expire(client, run, why)
    return live_runs


# --------------------------------------------------------------------------------------------
# Worker side


def _kernel_manager_class(extra_env: dict[str, str], log_file=None, on_start=None,
                          socket_dir: str | None = None):
    """A kernel manager that starts this interpreter's ipykernel with ``extra_env`` set.

    The kernel process's own stdout/stderr (not the cells' outputs, which papermill records in
    the notebook) go to ``log_file`` when given, instead of the terminal. ``on_start(pid)`` is
    called with the kernel's process id once it started (the kernel leads its own process
    group).

    With ``socket_dir`` (a private, empty folder with a short path) the kernel talks over
    Unix-domain sockets in it instead of TCP ports. TCP is racy when workers start kernels at
    the same time: each manager picks five free ports and closes them, and another process can
    take one before the kernel binds it, which kills that kernel at start-up ("Kernel died
    before replying to kernel_info"; papermill issue #511). Socket files in a folder of one's
    own cannot collide.

    The kernelspec search is emptied so ``python3`` always resolves to ipykernel's built-in spec,
    which runs ``sys.executable`` (the venv's Python), whatever kernels the user has installed.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class PointKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="tcp" if socket_dir is None
                                    else "ipc", config=True)

        @default("ip")
        def _default_ip(self):
            return os.path.join(socket_dir, "kernel") if socket_dir else super()._ip_default()

        @default("kernel_spec_manager")
        def _default_kernel_spec_manager(self):
            return KernelSpecManager(parent=self, kernel_dirs=[])

        async def start_kernel(self, **kw):
            env = dict(kw.pop("env", None) or os.environ)
            env.update(extra_env)
            if log_file is not None:
                kw.setdefault("stdout", log_file)
                kw.setdefault("stderr", log_file)
            started = await super().start_kernel(env=env, **kw)
            pid = getattr(self.provisioner, "pid", None)
            if on_start is not None and pid is not None:
                on_start(pid)
            return started

    return PointKernelManager


@contextlib.contextmanager
def _kernel_socket_dir():
    """A private folder for a kernel's Unix-domain sockets (``None`` on Windows: TCP there).

    Under the system's temporary folder, not the output folder: a socket path must stay within
    the ~100 characters ``sockaddr_un`` allows.
    """
    if os.name == "nt":
        yield None
        return
    short_root = "/tmp" if os.path.isdir("/tmp") else None  # $TMPDIR may be a long path
    with tempfile.TemporaryDirectory(prefix="mpimpy-kernel-", dir=short_root,
                                     ignore_cleanup_errors=True) as folder:
        yield folder


def _package_root() -> str:
    """The folder holding the ``mpimpy`` package, put on the kernel's PYTHONPATH."""
    return str(Path(tracking.__file__).resolve().parents[1])


def _clean(text: str) -> str:
    return _ANSI.sub("", text).strip()


class _PointGuard:
    """Watches a point while its notebook runs and stops its kernel when the run must not
    finish: the runner's process is gone (same host), the run is no longer RUNNING under this
    task's lease (Ctrl-C in the runner, a takeover), or the lease was not renewed in time.

    A thread of the worker; ``reason`` says why the point was stopped (``None``: it was not).
    """

    def __init__(self, client, task: dict[str, Any]):
        self.client, self.task = client, task
        self.reason: str | None = None
        self.kernel_pid: int | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mpimpy-point-guard", daemon=True)

    def __enter__(self):
        _GUARDS.add(self)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._closed.set()
        self._thread.join()
        _GUARDS.discard(self)

    def kernel_started(self, pid: int) -> None:
        self.kernel_pid = pid
        if self.reason is not None:
            self._kill_kernel()

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._kill_kernel()

    def _kill_kernel(self) -> None:
        pid = self.kernel_pid
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # the kernel and whatever its cells started
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)

    def runner_gone(self) -> bool:
        task = self.task
        return task.get("runner_node") == node_id() and _process_gone(task["runner_pid"])

    def check_run(self) -> str | None:
        """Why the run may no longer finish, read from the store; ``None`` if it may."""
        run = self.client.get_run(self.task["run_id"])
        if run.info.status != "RUNNING":
            return f"its run was marked {run.info.status} meanwhile"
        lease = Lease.of(run)
        if lease is None or lease.token != self.task["lease_token"]:
            return "another runner took the point over"
        live, why = lease_state(run)
        return None if live else why

    def _watch(self) -> None:
        poll_s = self.task.get("status_poll_s") or STATUS_POLL_S
        next_check = time.monotonic() + poll_s
        while not self._closed.wait(0.5):
            if self.runner_gone():
                self.stop(f"its runner ({self.task['runner_host']} pid "
                          f"{self.task['runner_pid']}) is gone")
            elif time.monotonic() >= next_check:
                next_check = time.monotonic() + poll_s
                try:
                    why = self.check_run()
                except Exception:  # the store did not answer this time: ask again later
                    why = None
                if why is not None:
                    self.stop(why)


#: The guards of the points this process is running (a local worker runs one, a Dask worker
#: one per thread), stopped when a local worker is terminated.
_GUARDS: set[_PointGuard] = set()


def execute_point(task: dict[str, Any]) -> dict[str, Any]:
    """Execute one point's notebook and close its MLflow run (runs in a worker process).

    ``task`` is a plain dict so that it travels to a Dask worker as well as to a local process.
    Errors inside the notebook are caught and recorded on the run (FAILED, tag
    ``mpimpy.error``, the traceback as the run's description and as ``error.txt``, the partly
    executed notebook as an artifact). A point stopped by its guard (:class:`_PointGuard`) ends
    KILLED and its run is never set FINISHED. Errors of the store are returned as
    ``store_error`` (the run marked FAILED where the store still allows it); this function
    raises only when it cannot reach the store at all.
    """
    import papermill
    from mlflow import MlflowClient
    from papermill.exceptions import PapermillExecutionError

    started = time.monotonic()
    client = MlflowClient(tracking_uri=task["tracking_uri"])
    run_id = task["run_id"]
    output = Path(task["output_path"])
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
    with _PointGuard(client, task) as guard:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            with open(kernel_log, "w") as log_file, _kernel_socket_dir() as socket_dir:
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
                    kernel_manager_class=_kernel_manager_class(
                        env, log_file, guard.kernel_started, socket_dir
                    ),
                )
        except PapermillExecutionError as exc:
            error = _clean(f"{exc.ename}: {exc.evalue}")
            details = _clean("\n".join(exc.traceback))
        except Exception as exc:  # kernel died, timeout, unreadable notebook, output folder ...
            error = _clean(f"{type(exc).__name__}: {exc}")
            details = traceback.format_exc()
        stopped = guard.reason
    wall_s = time.monotonic() - started
    outcome = {"status": "FAILED" if error else "FINISHED", "error": error,
               "output_path": str(output), "wall_s": wall_s}
    if stopped is None:
        try:  # the last look before finishing: was the run killed or taken over meanwhile?
            stopped = guard.check_run()
        except Exception:
            pass
    if stopped is not None:
        why = f"stopped: {stopped}"
        with contextlib.suppress(Exception):  # else the next runner finds the lease stale
            if client.get_run(run_id).info.status == "RUNNING":  # its runner is gone
                _record_failure(client, run_id, why, None, status="KILLED")
        return {**outcome, "status": "KILLED", "error": why}

    try:
        tracked = tracking.TrackedRun(run_id, client=client, managed=True)
        if output.is_file():
            tracking.log_notebook(output, tracked)
        tracking.log_point_params(tracked, task["parameters"])
        client.log_metric(run_id, "notebook_wall_s", wall_s)
        if error is not None:
            if kernel_log.is_file() and kernel_log.stat().st_size:
                client.log_artifact(run_id, str(kernel_log))
            _record_failure(client, run_id, error, details)
        else:
            client.set_terminated(run_id, "FINISHED")
    except Exception as exc:  # the store is full, read-only or gone
        problem = _store_problem(exc, task["tracking_uri"])
        with contextlib.suppress(Exception):
            _record_failure(client, run_id, problem, traceback.format_exc())
        return {**outcome, "status": "FAILED", "error": problem, "store_error": problem}
    return outcome


def _record_failure(client, run_id: str, error: str, details: str | None, status: str = "FAILED"):
    """Mark a run failed (or killed) with its error as tag, description and ``error.txt``.

    The status is what matters: tags and the ``error.txt`` artifact are best effort (a full
    artifact store must not leave the run RUNNING); only ``set_terminated`` may raise.
    """
    with contextlib.suppress(Exception):
        client.set_tag(run_id, ERROR_TAG, error[:4000])
        client.set_tag(
            run_id,
            "mlflow.note.content",
            f"**{status}**: {error}\n\n```\n{(details or '')[:20000]}\n```",
        )
    if details:
        with contextlib.suppress(Exception), tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "error.txt"
            path.write_text(f"{error}\n\n{details}\n")
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status)


def _worker_main(task: dict[str, Any], connection) -> None:
    """Body of a local worker process: run one point and send its outcome to the runner.

    Only the runner reacts to Ctrl-C (it stops the workers and marks their runs KILLED); a
    worker terminated by the runner kills its point's kernel first.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_sigterm(signum, frame):
        for guard in list(_GUARDS):
            guard.stop("interrupted by the runner")
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        outcome = execute_point(task)
    except BaseException as exc:
        outcome = {"status": "FAILED", "error": _problem(exc),
                   "details": traceback.format_exc(), "raised": True}
    with contextlib.suppress(OSError):  # the runner may be gone
        connection.send(outcome)
        connection.close()


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


class WorkerDied(RuntimeError):
    """The process running a point exited without reporting (killed, out of memory)."""


class _LocalPoint:
    """One point running in its own local process; ``done()`` once it reported or exited."""

    def __init__(self, context, task: dict[str, Any]):
        self.point_id = task["point_id"]
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_worker_main, args=(task, send), name=f"mpimpy-point-{self.point_id}",
            daemon=True,
        )
        self.process.start()
        send.close()
        self._outcome: dict[str, Any] | None = None

    @property
    def waitables(self):
        return [self._receive, self.process.sentinel]

    def done(self) -> bool:
        if self._outcome is None and self._receive.poll():
            try:
                self._outcome = self._receive.recv()
            except (EOFError, OSError):
                pass
        return self._outcome is not None or not self.process.is_alive()

    def result(self) -> dict[str, Any]:
        self.done()
        self.process.join(10)
        if self._outcome is None:
            code = self.process.exitcode
            how = (
                f"killed by signal {signal.Signals(-code).name}"
                if code is not None and code < 0
                else f"exit code {code}"
            )
            raise WorkerDied(
                f"the worker process running point {self.point_id} died ({how}) before it "
                "reported; only this point is affected"
            )
        return self._outcome

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()


class _LocalBackend:
    """Local worker processes, one per point and at most ``workers`` at a time.

    A fresh process per point (forked from the fork server, cheap next to the kernel each point
    starts) means a worker that dies takes only its own point with it.
    """

    def __init__(self, workers: int):
        self.capacity = workers
        self.context = _worker_context()

    def submit(self, task):
        return _LocalPoint(self.context, task)

    def wait(self, handles, timeout: float | None):
        if not any(h.done() for h in handles):
            wait_connections([w for h in handles for w in h.waitables], timeout)
        return [h for h in handles if h.done()]

    @staticmethod
    def outcome(handle):
        return handle.result()

    def abort(self, handles):
        for handle in handles:
            handle.terminate()  # the worker kills its kernel, then exits
        for handle in handles:
            handle.process.join(10)

    def close(self):
        pass


class _DaskBackend:
    """The same points on a Dask distributed cluster (``distributed.Client(address)``)."""

    def __init__(self, address: str, workers: int | None, timeout_s: float = CONNECT_TIMEOUT_S):
        from distributed import Client

        try:
            self.client = Client(address, timeout=timeout_s)
        except Exception as exc:  # OSError, TimeoutError, a malformed address ...
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: "
                f"{_problem(exc)}"
            ) from None
        threads = sum(self.client.nthreads().values()) or 1
        self.capacity = workers or threads

    def submit(self, task):
        return self.client.submit(
            execute_point, task, pure=False, key=f"mpimpy-{task['point_id']}-{task['run_id']}"
        )

    def wait(self, futures, timeout: float | None):
        from distributed import wait

        try:
            return list(wait(futures, timeout=timeout, return_when="FIRST_COMPLETED").done)
        except TimeoutError:
            return []

    @staticmethod
    def outcome(future):
        return future.result()

    def abort(self, futures):
        # Queued futures never start; running ones stop at their guard's next look at the run.
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


def _create_run(client, experiment_id: str, study: Study, point: Point, lease: Lease, *,
                extra_tags: dict[str, str] | None = None) -> str:
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
        **lease.tags(),
        **(extra_tags or {}),
    }
    run = client.create_run(experiment_id, run_name=point.run_name, tags=tags)
    return run.info.run_id


def point_task(study: Study, point: Point, run_id: str, *, uri: str, experiment_id: str,
               output_dir: Path, lease: Lease, threads: int | None = None,
               status_poll_s: float = STATUS_POLL_S) -> dict[str, Any]:
    """What :func:`execute_point` needs to run one point, as a plain dict (it travels to Dask
    workers): the run, the notebook and its parameters, and the lease it runs under."""
    return {
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "study": study.name,
        "point_id": point.point_id,
        "notebook": str(study.notebook),
        "cwd": str(study.notebook.parent),
        "output_path": str(Path(output_dir) / f"{point.point_id}.ipynb"),
        "parameters": point.parameters,
        "timeout_s": study.timeout_s,
        "threads": threads,
        "runner_host": lease.host,
        "runner_node": lease.node,
        "runner_pid": lease.pid,
        "lease_token": lease.token,
        "status_poll_s": status_poll_s,
    }


class _Interrupted(BaseException):
    pass


class _StudyRun:
    """The state of one :func:`run_study` call while its points run (see the module
    docstring): points to claim, points waiting on another runner, points in flight."""

    def __init__(self, study, client, uri, experiment_id, backend, output_dir, result, *,
                 lease, threads, bar, ignore_finished=frozenset()):
        self.study, self.client, self.uri = study, client, uri
        self.experiment_id, self.backend, self.output_dir = experiment_id, backend, output_dir
        self.result, self.lease, self.ignore_finished = result, lease, ignore_finished
        self.threads, self.bar = threads, bar
        self.pending: deque[Point] = deque()
        self.waiting: dict[str, tuple[Point, str]] = {}  # hash -> (point, holder's run id)
        self.inflight: dict[Any, tuple[Point, str]] = {}  # handle -> (point, run id)
        self.renew_s = lease.ttl_s / 4
        self.poll_s = min(2.0, self.renew_s)

    def add(self, point: Point, status: str, run_id=None, error=None, output_path=None,
            wall_s=None) -> None:
        self.result.results.append(
            PointResult(point, status, run_id, error, output_path, wall_s)
        )
        if status in ("FAILED", "KILLED"):
            self.bar.write(f"{status} {point.point_id}: {error}")
        self.bar.update(1)

    def stop_starting(self, problem: str) -> None:
        if self.result.store_error is None:
            self.result.store_error = problem
            self.bar.write(f"Stopping: {problem}")

    # -- claiming and starting points -------------------------------------------------------
    def start_points(self) -> None:
        while (self.pending and len(self.inflight) < self.backend.capacity
               and self.result.store_error is None):
            point = self.pending.popleft()
            try:
                kind, value = _claim(self.client, self.experiment_id, self.study, point,
                                     self.lease, self.ignore_finished)
            except Exception as exc:
                self.pending.appendleft(point)
                self.stop_starting(_store_problem(exc, self.uri))
                return
            if kind == "finished":
                self.add(point, "SKIPPED", value.info.run_id)
            elif kind == "held":
                self.waiting[point.params_hash] = (point, value.info.run_id)
                self.bar.write(f"waiting for {point.point_id}: {lease_state(value)[1]}")
            else:
                self.inflight[self.backend.submit(self.task(point, value))] = (point, value)

    def task(self, point: Point, run_id: str) -> dict[str, Any]:
        return point_task(self.study, point, run_id, uri=self.uri,
                          experiment_id=self.experiment_id, output_dir=self.output_dir,
                          lease=self.lease, threads=self.threads,
                          status_poll_s=min(STATUS_POLL_S, self.renew_s))

    # -- outcomes ---------------------------------------------------------------------------
    def collect(self, handle) -> None:
        point, run_id = self.inflight.pop(handle)
        try:
            outcome = self.backend.outcome(handle)
        except Exception as exc:  # the worker died (or, on Dask, raised)
            outcome = {"status": "FAILED", "raised": True, "details": traceback.format_exc(),
                       "error": str(exc) if isinstance(exc, WorkerDied) else _problem(exc)}
        if outcome.get("raised"):  # the worker could not record it: do it here
            try:
                tracking.log_point_params(
                    tracking.TrackedRun(run_id, client=self.client, managed=True),
                    point.parameters)
                _record_failure(self.client, run_id, outcome["error"], outcome.get("details"))
            except Exception as store_exc:
                self.stop_starting(_store_problem(store_exc, self.uri))
        if outcome.get("store_error"):
            self.stop_starting(outcome["store_error"])
        self.add(point, outcome["status"], run_id, outcome.get("error"),
                 outcome.get("output_path"), outcome.get("wall_s"))

    def renew(self) -> None:
        """Renew the leases of the runs in flight (a failed renewal is tried again later)."""
        stamp = f"{time.time():.3f}"
        for _, run_id in list(self.inflight.values()):
            with contextlib.suppress(Exception):
                self.client.set_tag(run_id, HEARTBEAT_TAG, stamp)

    def poll_waiting(self) -> None:
        """Points left to other runners: done when their run ended, claimed again when it
        was withdrawn, interrupted or its lease went stale."""
        for key, (point, holder) in list(self.waiting.items()):
            try:
                run = self.client.get_run(holder)
            except Exception:
                continue
            status = run.info.status
            if run.info.lifecycle_stage == "deleted" or status == "KILLED" or (
                status == "RUNNING" and not lease_state(run)[0]
            ):
                del self.waiting[key]
                self.pending.append(point)
            elif status == "FINISHED":
                del self.waiting[key]
                self.add(point, "SKIPPED", holder)
            elif status == "FAILED":
                del self.waiting[key]
                error = run.data.tags.get(ERROR_TAG, "failed")
                self.add(point, "FAILED", holder, f"failed in another runner's run: {error}")

    # -- the loop ---------------------------------------------------------------------------
    def run(self, points: list[Point]) -> None:
        self.pending.extend(points)
        now = time.monotonic()
        next_renew, next_poll = now + self.renew_s, now + self.poll_s
        while self.inflight or (self.result.store_error is None and (
                self.pending or self.waiting)):
            self.start_points()
            wake = min(next_renew, next_poll) if self.waiting else next_renew
            timeout = max(0.0, wake - time.monotonic())
            if self.inflight:
                for handle in self.backend.wait(list(self.inflight), timeout):
                    self.collect(handle)
            elif self.waiting and not self.pending:
                time.sleep(timeout)
            now = time.monotonic()
            if now >= next_renew:
                self.renew()
                next_renew = now + self.renew_s
            if self.waiting and now >= next_poll:
                self.poll_waiting()
                # a random phase, so that two runners withdrawing from one point do not
                # claim it again at the same moment forever
                next_poll = now + self.poll_s * random.uniform(0.5, 1.5)
        self.not_started("not started: " + (self.result.store_error or ""))

    def not_started(self, why: str) -> None:
        for point in list(self.pending) + [p for p, _ in self.waiting.values()]:
            self.result.results.append(PointResult(point, "PENDING", error=why))
        self.pending.clear()
        self.waiting.clear()

    def interrupt(self) -> None:
        """Ctrl-C or SIGTERM: stop the workers, then mark the runs they left RUNNING KILLED."""
        self.result.interrupted = True
        self.backend.abort(list(self.inflight))
        for point, run_id in self.inflight.values():
            status, error = "KILLED", "interrupted by the user"
            try:
                current = self.client.get_run(run_id).info.status
                if current == "RUNNING":
                    tracking.log_point_params(
                        tracking.TrackedRun(run_id, client=self.client, managed=True),
                        point.parameters)
                    _record_failure(self.client, run_id, error, None, status="KILLED")
                else:  # it ended just before the workers were stopped
                    status, error = current, None
            except Exception as exc:
                error = f"interrupted; the run could not be marked KILLED: {_problem(exc)}"
            self.result.results.append(PointResult(point, status, run_id, error))
        self.inflight.clear()
        self.not_started("not started: interrupted")


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
    through the same workers (:mod:`mpimpy.studies.search`) until ``n_trials`` are complete.

    Never raises for a failing point: see the result's ``ok``. Raises
    :class:`SchedulerError` for a scheduler that does not answer and :class:`RunnerError` for
    a store that cannot be opened, both before anything is written.
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
    if study.search is not None:
        return _run_search(study, uri=uri, workers=workers, scheduler=scheduler,
                           output_dir=output_dir, dry_run=dry_run, force=force,
                           progress=progress, echo=echo, lease_ttl_s=lease_ttl_s,
                           connect_timeout_s=connect_timeout_s, storage=storage)

    if dry_run:
        to_run, done = plan(study, uri=uri, force=force)
        result = StudyResult(study, uri, None, output_dir, dry_run=True)
        result.experiment_id = _existing_experiment_id(uri, study.experiment)
        result.results = [PointResult(p, "SKIPPED") for p in done]
        result.results += [PointResult(p, "PENDING") for p in to_run]
        result.results.sort(key=lambda r: r.point.index)
        for r in result.results:
            state = "skip (finished)" if r.status == "SKIPPED" else "run"
            echo(f"  {state:16} {r.point.point_id}")
        return result

    # Everything that can refuse to start does so before the store is written.
    if scheduler:
        backend = _DaskBackend(scheduler, workers if workers > 1 else None, connect_timeout_s)
    try:
        client, experiment_id = _open_store(uri, study)
        to_run, done = plan(study, uri=uri, force=force)
        ignore_finished = {
            r.info.run_id for r in runs_with_status(
                client, experiment_id, study.name, "FINISHED")
        } if force else set()
        held = _expire_stale_runs(client, experiment_id, study)
    except Exception as exc:
        if scheduler:
            backend.close()
        if isinstance(exc, RunnerError):
            raise
        raise RunnerError(_store_problem(exc, uri)) from None
    result = StudyResult(study, uri, experiment_id, output_dir)
    result.results = [PointResult(p, "SKIPPED") for p in done]
    echo(
        f"Study {study.name!r}: {len(to_run)} points to run, {len(done)} finished before; "
        f"experiment {study.experiment!r} in {tracking.store_summary(uri)}"
    )
    for run in held:
        echo(f"  {run.data.tags.get(POINT_TAG, run.info.run_id)}: {lease_state(run)[1]}")
    if not to_run:
        if scheduler:
            backend.close()
        return result
    if not scheduler:
        backend = _LocalBackend(min(workers, len(to_run)))
    state_class = functools.partial(_StudyRun, ignore_finished=ignore_finished)
    _drive(state_class, study, client, uri, experiment_id, backend, output_dir, result,
           lease_ttl_s=lease_ttl_s, scheduler=scheduler, workers=workers, progress=progress,
           total=len(to_run), points=to_run)
    return result


def _drive(state_class, study, client, uri, experiment_id, backend, output_dir, result, *,
           lease_ttl_s, scheduler, workers, progress, total, points, initial=0):
    """Run the points (or a search's trials) of one :func:`run_study` call: the progress bar,
    SIGTERM as Ctrl-C, and the workers stopped and their runs KILLED when interrupted."""
    old_sigterm = None
    if threading.current_thread() is threading.main_thread():

        def on_sigterm(signum, frame):
            raise _Interrupted()

        old_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=total, initial=initial, desc=study.name,
        unit="trial" if study.search is not None else "point", disable=not progress,
        file=sys.stderr
    )
    state = state_class(
        study, client, uri, experiment_id, backend, output_dir, result,
        lease=Lease.new(lease_ttl_s),
        # local workers share this machine's cores; Dask workers size themselves
        threads=None if scheduler else max(1, (os.cpu_count() or 1) // workers),
        bar=bar,
    )
    try:
        state.run(points)
    except (KeyboardInterrupt, _Interrupted):
        state.interrupt()
    finally:
        bar.close()
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)
        backend.close()
    result.results.sort(key=lambda r: r.point.index)
    return state


def _run_search(study: Study, *, uri, workers, scheduler, output_dir, dry_run, force, progress,
                echo, lease_ttl_s, connect_timeout_s, storage) -> StudyResult:
    """:func:`run_study` for a study with a ``search:`` section."""
    from mpimpy.studies import search as searching
    from mpimpy.studies.spec import StudyError

    if force:
        raise StudyError(f"{study.path}: key 'search': --force reruns the finished points of a "
                         "grid; a search continues until n_trials trials are complete (raise "
                         "n_trials for more)")
    storage = storage or searching.default_storage(uri)
    lock = searching.StorageLock(storage)
    store = searching._experiment_store(uri)
    result = StudyResult(study, uri, None, output_dir, dry_run=dry_run, optuna_storage=storage)

    def counts(optuna_study) -> dict[str, int]:
        return searching.search_counts(optuna_study) if optuna_study is not None else {}

    if dry_run:
        result.experiment_id = _existing_experiment_id(uri, study.experiment)
        try:
            optuna_study = searching.open_search(study, storage, lock, store=store,
                                                 create=False)
        except StudyError:
            raise
        except Exception as exc:
            raise RunnerError(searching._storage_problem(exc, storage)) from None
        result.search_counts = counts(optuna_study)
        done = result.search_counts.get("COMPLETE", 0)
        echo(f"  search {study.name!r}: sampler {study.search.sampler}, {done} of "
             f"{study.search.n_trials} trials complete, up to "
             f"{max(0, study.search.n_trials - done)} to run")
        return result

    if scheduler:
        backend = _DaskBackend(scheduler, workers if workers > 1 else None, connect_timeout_s)
    try:
        client, experiment_id = _open_store(uri, study)
        held = _expire_stale_runs(client, experiment_id, study)
        try:
            optuna_study = searching.open_search(study, storage, lock, store=store)
        except StudyError:
            raise
        except Exception as exc:
            raise RunnerError(searching._storage_problem(exc, storage)) from None
    except BaseException as exc:
        if scheduler:
            backend.close()
        if isinstance(exc, RunnerError | StudyError):
            raise
        if not isinstance(exc, Exception):
            raise
        raise RunnerError(_store_problem(exc, uri)) from None
    result.experiment_id = experiment_id
    before = counts(optuna_study)
    complete = before.get("COMPLETE", 0)
    echo(f"Search {study.name!r}: {complete} of {study.search.n_trials} trials complete; "
         f"sampler {study.search.sampler}; Optuna study in "
         f"{searching.storage_summary(storage)}; experiment {study.experiment!r} in "
         f"{tracking.store_summary(uri)}")
    for run in held:
        echo(f"  {run.data.tags.get(POINT_TAG, run.info.run_id)}: {lease_state(run)[1]}")
    if not scheduler:
        backend = _LocalBackend(min(workers, study.search.n_trials))
    state_class = functools.partial(searching.SearchRun, optuna_study=optuna_study,
                                    storage=storage, lock=lock)
    state = _drive(state_class, study, client, uri, experiment_id, backend, output_dir, result,
                   lease_ttl_s=lease_ttl_s, scheduler=scheduler, workers=workers,
                   progress=progress, total=study.search.n_trials,
                   initial=min(complete, study.search.n_trials), points=[])
    result.gave_up = state.gave_up
    with contextlib.suppress(Exception):
        result.search_counts = counts(optuna_study)
    return result


__all__ = [
    "DEFAULT_LEASE_TTL_S",
    "HASH_TAG",
    "HEARTBEAT_TAG",
    "LEASE_TAG",
    "Lease",
    "PointResult",
    "RunnerError",
    "SchedulerError",
    "StudyResult",
    "WorkerDied",
    "execute_point",
    "finished_hashes",
    "point_task",
    "lease_state",
    "plan",
    "run_study",
    "runs_of_point",
    "runs_with_status",
]
