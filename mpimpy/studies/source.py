"""Point sources: where the runner's points come from. The runner (:mod:`.runner`) does not care.

A source answers the runner's loop through :class:`PointSource`:

- :meth:`~PointSource.start`: reconcile with the store before anything runs (grid: which points
  FINISHED before; search: settle the trials other runners left) and make the result;
- :meth:`~PointSource.launch_next`: start the next point (claim or ask it, create its run and
  hand it to :meth:`mpimpy.studies.runner.StudyRun.launch`), or settle it at once (finished
  elsewhere, a duplicate, invalid settings); ``False`` when nothing can start now;
- :attr:`~PointSource.waiting`: whether points held by other runners are still awaited (the
  loop then keeps polling with :meth:`~PointSource.poll` even when nothing runs here);
- :meth:`~PointSource.ended` and :meth:`~PointSource.interrupted`: what to do when a run of
  this runner ends, or was KILLED by Ctrl-C;
- :meth:`~PointSource.finish`: what is left when the loop stops (points not started, counts).

:class:`GridSource` runs a study's listed points (grid x points x seeds), each claimed under a
lease so that any number of runners share them; :class:`mpimpy.studies.search.OptunaSource`
asks a search's trials from Optuna.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from mpimpy import tracking
from mpimpy.studies.lease import lease_state
from mpimpy.studies.results import STATUSES, PointResult, StudyResult
from mpimpy.studies.spec import Point, Study
from mpimpy.studies.store import (
    ERROR_TAG,
    claim,
    experiment_id,
    finished_hashes,
    runs_with_status,
    store_problem,
)

if TYPE_CHECKING:
    from mpimpy.studies.runner import StudyRun


class PointSource:
    """The interface between the runner's loop and where its points come from (see the module
    docstring). ``unit`` names a point in the progress bar, which advances for the statuses
    in ``progress`` (:mod:`mpimpy.studies.results`); ``total`` and ``initial`` size it;
    ``size`` is the most points this run may start (local workers are not started beyond it)."""

    unit = "point"
    progress: tuple[str, ...] = STATUSES
    total = 0
    initial = 0
    size = 0

    def __init__(self, study: Study):
        self.study = study
        self.client = self.uri = self.experiment_id = None

    def columns(self) -> list[str]:
        """The parameters the experiment's runs table shows by default."""
        raise NotImplementedError

    def dry_run(self, uri: str, output_dir: Path, echo) -> StudyResult:
        """What a run would do, read from the store only."""
        raise NotImplementedError

    def start(self, client, uri: str, experiment_id: str, output_dir: Path,
              echo) -> StudyResult:
        """Reconcile with the store and say what will run; keeps the store for later calls."""
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        return StudyResult(self.study, uri, experiment_id, output_dir)

    def reconcile(self, loop: StudyRun) -> None:
        """Settle, right before the loop starts, what other runners left behind."""

    def launch_next(self, loop: StudyRun) -> bool:
        """Start (or settle at once) the next point; ``False`` when none can start now."""
        raise NotImplementedError

    @property
    def waiting(self) -> bool:
        return False

    def poll(self, loop: StudyRun) -> None:
        """Look again at the points other runners hold."""

    def ended(self, loop: StudyRun, point: Point, run_id: str) -> None:
        """A run of this runner ended (its outcome is in ``loop.result``)."""

    def interrupted(self, loop: StudyRun, run_ids: list[str]) -> None:
        """The runs in flight were KILLED by Ctrl-C or SIGTERM."""

    def finish(self, loop: StudyRun | None, why: str) -> None:
        """The loop stopped (``why``: the store error or the interruption, else empty)."""


def plan(
    study: Study, *, uri: str | None = None, force: bool = False
) -> tuple[list[Point], list[Point]]:
    """Split the study's points into (to run, already finished), reading the store only."""
    uri = uri or tracking.tracking_uri()
    points = study.expand()
    found = experiment_id(study.experiment, uri)
    if force or found is None:
        return points, []
    finished = finished_hashes(tracking.get_client(uri), found, study.name)
    done = [p for p in points if p.params_hash in finished]
    return [p for p in points if p.params_hash not in finished], done


class GridSource(PointSource):
    """A study's listed points: those not FINISHED before (all of them with ``force``), each
    claimed when it starts (:func:`mpimpy.studies.store.claim`); a point another runner holds
    is waited for, and claimed again if that runner lets it go."""

    def __init__(self, study: Study, *, force: bool = False):
        super().__init__(study)
        self.force = force
        self.pending: deque[Point] = deque()
        self.held: dict[str, tuple[Point, str]] = {}  # hash -> (point, holder's run id)
        self.ignore_finished: set[str] = set()

    def columns(self) -> list[str]:
        points = self.study.expand()
        return list(points[0].varying) if points else []

    def dry_run(self, uri: str, output_dir: Path, echo) -> StudyResult:
        to_run, done = plan(self.study, uri=uri, force=self.force)
        result = StudyResult(self.study, uri, experiment_id(self.study.experiment, uri),
                             output_dir, dry_run=True)
        result.results = [PointResult(p, "SKIPPED") for p in done]
        result.results += [PointResult(p, "PENDING") for p in to_run]
        result.results.sort(key=lambda r: r.point.index)
        for r in result.results:
            state = "skip (finished)" if r.status == "SKIPPED" else "run"
            echo(f"  {state:16} {r.point.point_id}")
        return result

    def start(self, client, uri, experiment_id, output_dir, echo) -> StudyResult:
        result = super().start(client, uri, experiment_id, output_dir, echo)
        to_run, done = plan(self.study, uri=uri, force=self.force)
        if self.force:  # the FINISHED runs there before do not make a point finished
            self.ignore_finished = {r.info.run_id for r in runs_with_status(
                client, experiment_id, self.study.name, "FINISHED")}
        result.results = [PointResult(p, "SKIPPED") for p in done]
        self.pending.extend(to_run)
        self.total = self.size = len(to_run)
        echo(f"Study {self.study.name!r}: {len(to_run)} points to run, {len(done)} finished "
             f"before; experiment {self.study.experiment!r} in {tracking.store_summary(uri)}")
        return result

    def launch_next(self, loop: StudyRun) -> bool:
        if not self.pending:
            return False
        point = self.pending.popleft()
        try:
            kind, value = claim(self.client, self.experiment_id, self.study, point, loop.lease,
                                self.ignore_finished)
        except Exception as exc:
            self.pending.appendleft(point)
            loop.stop_starting(store_problem(exc, self.uri))
            return False
        if kind == "finished":
            loop.add(point, "SKIPPED", value.info.run_id)
        elif kind == "held":
            self.held[point.params_hash] = (point, value.info.run_id)
            loop.bar.write(f"waiting for {point.point_id}: {lease_state(value)[1]}")
        else:
            loop.launch(point, value)
        return True

    @property
    def waiting(self) -> bool:
        return bool(self.pending or self.held)

    def poll(self, loop: StudyRun) -> None:
        """Points left to other runners: done when their run ended, claimed again when it
        was withdrawn, interrupted or its lease went stale."""
        for key, (point, holder) in list(self.held.items()):
            try:
                run = self.client.get_run(holder)
            except Exception:
                continue
            status = run.info.status
            if run.info.lifecycle_stage == "deleted" or status == "KILLED" or (
                status == "RUNNING" and not lease_state(run)[0]
            ):
                del self.held[key]
                self.pending.append(point)
            elif status == "FINISHED":
                del self.held[key]
                loop.add(point, "SKIPPED", holder)
            elif status == "FAILED":
                del self.held[key]
                error = run.data.tags.get(ERROR_TAG, "failed")
                loop.add(point, "FAILED", holder, f"failed in another runner's run: {error}")

    def finish(self, loop: StudyRun | None, why: str) -> None:
        if loop is None:
            return
        for point in list(self.pending) + [p for p, _ in self.held.values()]:
            loop.result.results.append(PointResult(point, "PENDING", error=f"not started: {why}"))
        self.pending.clear()
        self.held.clear()


__all__ = ["GridSource", "PointSource", "plan"]
