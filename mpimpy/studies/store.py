"""The run store: a study's MLflow runs, read and written through ``MlflowClient``.

Every point's run is tagged ``study`` (the study's name), ``point_id`` and
``mpimpy.params_hash`` (:func:`mpimpy.studies.spec.params_hash`); a point is done when one of
its runs is FINISHED (:func:`finished_hashes`). Runs are created RUNNING under a lease
(:mod:`.lease`) and a point is *claimed* by creating its run and then looking at the point's
other runs (:func:`claim`; the lease module says why that is safe); a claim that lost is
*withdrawn* (ended and deleted) and a run whose lease went stale is *expired* (KILLED).

A local SQLite store is created under a file lock beside its database (:func:`lock_beside`,
also the lock of a search's Optuna storage), so runners started together do not race MLflow's
schema migrations. :class:`RunnerError` says why a store cannot be opened or written.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mpimpy import tracking
from mpimpy.studies.lease import Lease, lease_state
from mpimpy.studies.spec import Point, Study

#: Tags of a point's run.
HASH_TAG = "mpimpy.params_hash"
STUDY_TAG = "study"
POINT_TAG = "point_id"
ERROR_TAG = "mpimpy.error"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class RunnerError(RuntimeError):
    """The study cannot start: the store cannot be opened or written (the message names it)."""


def clean(text: str) -> str:
    """Text without terminal colour codes (tracebacks of a kernel carry them)."""
    return _ANSI.sub("", text).strip()


def problem(exc: BaseException) -> str:
    """An exception as one line (its type, its first line, the file it names)."""
    lines = clean(str(exc)).splitlines() or [""]
    text = f"{type(exc).__name__}: {lines[0][:500]}"
    filename = getattr(exc, "filename", None)
    if filename and str(filename) not in text:
        text += f" ({filename})"
    return text


def store_problem(exc: BaseException, uri: str) -> str:
    return f"cannot write to the experiment store ({tracking.store_summary(uri)}): {problem(exc)}"


def lock_beside(path: Path):
    """An exclusive inter-process lock on the file ``<path>.lock`` (a :class:`filelock.FileLock`,
    re-entrant within this process), for the ``with`` block that holds it."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(path.name + ".lock"))


def experiment_id(experiment: str, tracking_uri: str | None = None) -> str | None:
    """Id of an existing (not deleted) experiment, or ``None``; never creates a local store
    that is not there yet."""
    uri = tracking_uri or tracking.tracking_uri()
    db = tracking.sqlite_path(uri)
    if db is not None and not db.is_file():
        return None
    found = tracking.get_client(uri).get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        return None
    return found.experiment_id


def open_store(uri: str, study: Study, columns: Sequence[str] = ()):
    """A client on the store and the study's experiment id, created if needed (with the study's
    description as its note and ``columns``, its swept parameters, as the runs table's).

    A local SQLite store is created under a lock next to its database, so that runners started
    together do not both run MLflow's schema migrations (one would crash). Raises
    :class:`RunnerError` naming the store when it cannot be created, read or written.
    """
    db = tracking.sqlite_path(uri)
    try:
        lock = contextlib.nullcontext()
        if db is not None:
            lock = lock_beside(db)
        with lock:
            client = tracking.get_client(uri)
            return client, tracking.ensure_experiment(
                study.experiment, client=client, description=study.description,
                columns=list(columns))
    except Exception as exc:
        raise RunnerError(
            f"cannot open the experiment store ({tracking.store_summary(uri)}): {problem(exc)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Queries


def search_all(client, experiment_id: str, filter_string: str) -> list:
    """Every run of the experiment that ``filter_string`` selects, page after page."""
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
    return search_all(
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
    return search_all(
        client,
        experiment_id,
        f"tags.{STUDY_TAG} = '{study_name}' and tags.`{HASH_TAG}` = '{params_hash}'",
    )


# --------------------------------------------------------------------------------------------
# Writing runs


def create_run(client, experiment_id: str, study: Study, point: Point, lease: Lease, *,
                extra_tags: dict[str, str] | None = None) -> str:
    """Create a point's RUNNING run under ``lease``, tagged with its study, point and hash
    (and ``extra_tags``); returns its id."""
    tags = {
        STUDY_TAG: study.name,
        POINT_TAG: point.point_id,
        HASH_TAG: point.params_hash,
        "mpimpy.notebook": study.notebook_name,
        "mpimpy.study_file": str(study.path),
        "mlflow.source.name": str(study.notebook),
        "mlflow.source.type": "NOTEBOOK",
        tracking.NOTE_TAG: point_note(
            study.name, study.notebook_name, point.varying, study.parameters
        ),
        **lease.tags(),
        **(extra_tags or {}),
    }
    run = client.create_run(experiment_id, run_name=point.run_name, tags=tags)
    return run.info.run_id


def point_note(study: str, notebook: str, varying: Mapping[str, Any],
               fixed: Mapping[str, Any] | None = None) -> str:
    """One line describing a study's point, for its run's description (MLflow's run note):
    ``"Study quickstart, point fmt=INT, var=0.05, seed=0 of quickstart.ipynb (m=128, ...)"``."""
    text = ", ".join(f"{k}={v}" for k, v in varying.items())
    line = f"Study {study}, point {text} of {notebook}"
    rest = {k: v for k, v in (fixed or {}).items() if k not in varying}
    if rest:
        line += " (" + ", ".join(f"{k}={v}" for k, v in rest.items()) + ")"
    return line


def log_point_params(run, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Log the notebook parameters of a study's point that the run does not hold yet.

    Called by the study runner after the notebook has run: the notebook logged the settings
    the simulator actually used (``radc = None`` for an ideal ADC a parameter wrote as 0), and
    the point's other parameters (``m``, ``sweep``, ...) join them under the same names, one
    name per setting. Returns what was logged. ``run``: a
    :class:`~mpimpy.tracking.TrackedRun` or a run id.
    """
    tracked = run if isinstance(run, tracking.TrackedRun) else tracking.TrackedRun(
        run, managed=True)
    held = tracked.client.get_run(tracked.run_id).data.params
    missing = {k: v for k, v in parameters.items() if str(k) not in held}
    tracked.log_params(missing)
    return missing


def record_failure(client, run_id: str, error: str, details: str | None, status: str = "FAILED"):
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


def expire(client, run, why: str) -> None:
    """Mark a RUNNING run whose lease is stale KILLED: it will never finish."""
    record_failure(
        client, run.info.run_id, f"interrupted: {why}; its point runs again", None, "KILLED"
    )


def withdraw(client, run_id: str) -> None:
    """Take back a claim that lost: the run never executed, so it is ended and deleted."""
    client.set_terminated(run_id, "KILLED")
    client.delete_run(run_id)


def claim(client, experiment_id: str, study: Study, point: Point, lease: Lease,
           ignore_finished: set[str]):
    """Claim a point: ``("run", run_id)`` to run it, ``("finished", run)`` when another runner
    finished it, ``("held", run)`` when a live lease holds it. See the module docstring."""
    run_id = create_run(client, experiment_id, study, point, lease)
    others = [
        r
        for r in runs_of_point(client, experiment_id, study.name, point.params_hash)
        if r.info.run_id != run_id
    ]
    for run in others:
        if run.info.status == "FINISHED" and run.info.run_id not in ignore_finished:
            withdraw(client, run_id)
            return "finished", run
    for run in others:
        if run.info.status == "RUNNING":
            live, why = lease_state(run)
            if live:
                withdraw(client, run_id)
                return "held", run
            expire(client, run, why)
    return "run", run_id


def expire_stale_runs(client, experiment_id: str, study: Study) -> list:
    """Mark the study's RUNNING runs with stale leases KILLED; return the live ones."""
    live_runs = []
    for run in runs_with_status(client, experiment_id, study.name, "RUNNING"):
        if HASH_TAG not in run.data.tags:
            continue
        live, why = lease_state(run)
        if live:
            live_runs.append(run)
        else:
            expire(client, run, why)
    return live_runs


__all__ = [
    "ERROR_TAG",
    "HASH_TAG",
    "POINT_TAG",
    "STUDY_TAG",
    "RunnerError",
    "claim",
    "clean",
    "create_run",
    "expire",
    "expire_stale_runs",
    "experiment_id",
    "finished_hashes",
    "lock_beside",
    "log_point_params",
    "open_store",
    "point_note",
    "problem",
    "record_failure",
    "runs_of_point",
    "runs_with_status",
    "search_all",
    "store_problem",
    "withdraw",
]
