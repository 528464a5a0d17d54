"""What became of a study's points: :class:`PointResult` per point, :class:`StudyResult` per run.

The statuses a point can end in (``PointResult.status``), all of them:

``FINISHED``
    its notebook ran to the end and its run is FINISHED.
``FAILED``
    its notebook raised, its worker died, it timed out, or the store refused to record it
    (the run is FAILED, its error in ``error`` and on the run); for a trial, also a notebook
    that did not log an objective.
``KILLED``
    stopped before it finished: Ctrl-C or SIGTERM, or its guard saw the run taken over or its
    runner gone (the run is KILLED; the point runs again next time).
``SKIPPED``
    not run: a FINISHED run of the same computation was there before, or another runner
    finished it meanwhile (``run_id`` names that run).
``PENDING``
    not started: a dry run, or the run was interrupted or stopped by a store error first.
``DUPLICATE``
    a search's trial with the configuration of a COMPLETE trial: not run again, its run copies
    the earlier run's metrics (tag ``duplicate_of``).
``INVALID``
    a search's trial whose settings the simulator refuses: never run, its run FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mpimpy import tracking
from mpimpy.studies.spec import Point, Study

#: Every status a point can end in (see the module docstring).
STATUSES = ("FINISHED", "FAILED", "KILLED", "SKIPPED", "PENDING", "DUPLICATE", "INVALID")


@dataclass
class PointResult:
    """What became of one point: its ``status`` (one of :data:`STATUSES`), its run, the error
    of a FAILED or KILLED point, the executed notebook and the notebook's wall time (s)."""

    point: Point
    status: str
    run_id: str | None = None
    error: str | None = None
    output_path: str | None = None
    wall_s: float | None = None


@dataclass
class StudyResult:
    """Outcome of :func:`mpimpy.studies.run_study` for a grid (a search's is
    :class:`mpimpy.studies.search.SearchResult`); ``ok`` is False if any point failed or the run
    was stopped."""

    study: Study
    tracking_uri: str
    experiment_id: str | None
    output_dir: Path
    results: list[PointResult] = field(default_factory=list)
    interrupted: bool = False
    dry_run: bool = False
    #: Why the runner stopped starting points: the store could not be written.
    store_error: str | None = None

    def with_status(self, status: str) -> list[PointResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        """Every point finished (none FAILED or KILLED), nothing interrupted or refused."""
        if self.interrupted or self.store_error is not None:
            return False
        return not (self.with_status("FAILED") + self.with_status("KILLED"))

    def summary(self) -> str:
        """A few lines for the terminal: counts, failures and where to look at results."""
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


__all__ = ["STATUSES", "PointResult", "StudyResult"]
