"""The worker: execute one point's notebook and close its MLflow run.

Papermill's own pipeline shape, run in a worker process (local or Dask): load the notebook,
parameterize it with the point's values, execute it in a kernel of this Python whose
environment names the run (``MLFLOW_RUN_ID``), raise the cell's error as the run's error, and
write the executed notebook (logged to the run as ``.ipynb`` and ``.html``), the point's
parameters the notebook did not log itself (:func:`mpimpy.studies.store.log_point_params`) and
the run's final status. A :class:`PointGuard` watches the run meanwhile and stops the kernel
when the run must not finish (see :mod:`mpimpy.studies.lease`).

:func:`point_task` builds what a worker gets (a plain dict, so that it travels to Dask);
:func:`execute_point` is the worker's job; :func:`worker_main` the body of a local worker
process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from mpimpy import tracking
from mpimpy.studies.lease import Lease, lease_state, node_id, process_gone
from mpimpy.studies.spec import Point, Study
from mpimpy.studies.store import (
    clean,
    log_point_params,
    problem,
    record_failure,
    store_problem,
)

#: How often a worker looks at its run in the store (an interrupted or taken-over run stops).
STATUS_POLL_S = 5.0


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


def kernel_manager_class(extra_env: dict[str, str], log_file=None, on_start=None,
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
def kernel_socket_dir():
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


def package_root() -> str:
    """The folder holding the ``mpimpy`` package, put on the kernel's PYTHONPATH."""
    return str(Path(tracking.__file__).resolve().parents[1])


class PointGuard:
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
        GUARDS.add(self)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._closed.set()
        self._thread.join()
        GUARDS.discard(self)

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
        return task.get("runner_node") == node_id() and process_gone(task["runner_pid"])

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
GUARDS: set[PointGuard] = set()


def execute_point(task: dict[str, Any]) -> dict[str, Any]:
    """Execute one point's notebook and close its MLflow run (runs in a worker process).

    ``task`` is a plain dict so that it travels to a Dask worker as well as to a local process.
    Errors inside the notebook are caught and recorded on the run (FAILED, tag
    ``mpimpy.error``, the traceback as the run's description and as ``error.txt``, the partly
    executed notebook as an artifact). A point stopped by its guard (:class:`PointGuard`) ends
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
    pythonpath = os.pathsep.join(p for p in (package_root(), os.environ.get("PYTHONPATH")) if p)
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
    with PointGuard(client, task) as guard:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            with open(kernel_log, "w") as log_file, kernel_socket_dir() as socket_dir:
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
                    kernel_manager_class=kernel_manager_class(
                        env, log_file, guard.kernel_started, socket_dir
                    ),
                )
        except PapermillExecutionError as exc:
            error = clean(f"{exc.ename}: {exc.evalue}")
            details = clean("\n".join(exc.traceback))
        except Exception as exc:  # kernel died, timeout, unreadable notebook, output folder ...
            error = clean(f"{type(exc).__name__}: {exc}")
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
                record_failure(client, run_id, why, None, status="KILLED")
        return {**outcome, "status": "KILLED", "error": why}

    try:
        tracked = tracking.TrackedRun(run_id, client=client, managed=True)
        if output.is_file():
            tracking.log_notebook(output, tracked)
        log_point_params(tracked, task["parameters"])
        client.log_metric(run_id, "notebook_wall_s", wall_s)
        if error is not None:
            if kernel_log.is_file() and kernel_log.stat().st_size:
                client.log_artifact(run_id, str(kernel_log))
            record_failure(client, run_id, error, details)
        else:
            client.set_terminated(run_id, "FINISHED")
    except Exception as exc:  # the store is full, read-only or gone
        problem = store_problem(exc, task["tracking_uri"])
        with contextlib.suppress(Exception):
            record_failure(client, run_id, problem, traceback.format_exc())
        return {**outcome, "status": "FAILED", "error": problem, "store_error": problem}
    return outcome


def worker_main(task: dict[str, Any], connection) -> None:
    """Body of a local worker process: run one point and send its outcome to the runner.

    Only the runner reacts to Ctrl-C (it stops the workers and marks their runs KILLED); a
    worker terminated by the runner kills its point's kernel first.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_sigterm(signum, frame):
        for guard in list(GUARDS):
            guard.stop("interrupted by the runner")
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        outcome = execute_point(task)
    except BaseException as exc:
        outcome = {"status": "FAILED", "error": problem(exc),
                   "details": traceback.format_exc(), "raised": True}
    with contextlib.suppress(OSError):  # the runner may be gone
        connection.send(outcome)
        connection.close()


__all__ = ["GUARDS", "STATUS_POLL_S", "PointGuard", "execute_point", "kernel_manager_class",
           "kernel_socket_dir", "package_root", "point_task", "worker_main"]
