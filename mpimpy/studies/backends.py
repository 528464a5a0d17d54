"""Backends: where points execute. Each runs :func:`mpimpy.studies.worker.execute_point` for a
point's task and reports its outcome (a dict: ``status``, ``error``, ``output_path``,
``wall_s``, and ``store_error`` when the store failed).

A backend has a ``capacity`` (points in flight at most) and ``submit(task) -> handle``,
``wait(handles, timeout) -> done handles``, ``outcome(handle)`` (raises when the worker died),
``abort(handles)`` (stop them: their kernels are killed) and ``close()``.
:class:`LocalBackend`: one local process per point, forked from a fork server.
:class:`DaskBackend`: a Dask distributed cluster.
"""

from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.connection import wait as wait_connections
from typing import Any

from mpimpy.studies.store import RunnerError, problem
from mpimpy.studies.worker import execute_point, worker_main

#: How long to wait for a Dask scheduler to answer before giving up.
CONNECT_TIMEOUT_S = 10.0


class SchedulerError(RunnerError):
    """The Dask scheduler given to the runner does not answer."""


#: Modules the worker processes need, imported once by the fork server (see below).
WORKER_MODULES = ["mpimpy.studies.worker", "papermill", "mlflow"]


def worker_context():
    """The multiprocessing context for local workers.

    ``forkserver`` where available: a clean single-threaded server process imports the worker
    modules once (torch, MLflow and papermill take seconds) and forks each worker from it, which
    is as safe as ``spawn`` (nothing is inherited from this possibly multi-threaded process) and
    much cheaper per worker. ``spawn`` elsewhere.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(WORKER_MODULES)
        return context
    return multiprocessing.get_context("spawn")


class WorkerDied(RuntimeError):
    """The process running a point exited without reporting (killed, out of memory)."""


class LocalPoint:
    """One point running in its own local process; ``done()`` once it reported or exited."""

    def __init__(self, context, task: dict[str, Any]):
        self.point_id = task["point_id"]
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=worker_main, args=(task, send), name=f"mpimpy-point-{self.point_id}",
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


class LocalBackend:
    """Local worker processes, one per point and at most ``workers`` at a time.

    A fresh process per point (forked from the fork server, cheap next to the kernel each point
    starts) means a worker that dies takes only its own point with it.
    """

    def __init__(self, workers: int):
        self.capacity = workers
        self.context = worker_context()

    def submit(self, task):
        return LocalPoint(self.context, task)

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


class DaskBackend:
    """The same points on a Dask distributed cluster (``distributed.Client(address)``)."""

    def __init__(self, address: str, workers: int | None, timeout_s: float = CONNECT_TIMEOUT_S):
        from distributed import Client

        try:
            self.client = Client(address, timeout=timeout_s)
        except Exception as exc:  # OSError, TimeoutError, a malformed address ...
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: "
                f"{problem(exc)}"
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


__all__ = ["CONNECT_TIMEOUT_S", "DaskBackend", "LocalBackend", "LocalPoint", "SchedulerError",
           "WorkerDied", "worker_context"]
