"""Parameter studies: a YAML file sweeps a notebook's parameters, each point an MLflow run.

``load_study`` reads and validates a study file, ``Study.expand`` lists its points and
``run_study`` executes them (locally or on a Dask cluster), skipping points that already
finished. The command line front end is ``mpimpy study run`` (:mod:`mpimpy.cli`); the file
format is described in ``docs/studies.md``.
"""

from mpimpy.studies.runner import PointResult, StudyResult, plan, run_study
from mpimpy.studies.spec import Point, Study, StudyError, expand_points, load_study

__all__ = [
    "Point",
    "PointResult",
    "Study",
    "StudyError",
    "StudyResult",
    "expand_points",
    "load_study",
    "plan",
    "run_study",
]
