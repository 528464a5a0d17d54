"""Parameter studies: a YAML file sweeps a notebook's parameters, each point an MLflow run.

``load_study`` reads and validates a study file, ``Study.expand`` lists its points and
``run_study`` executes them (locally or on a Dask cluster), skipping points that already
finished; a study with a ``search:`` section asks its points from Optuna instead. The command
line front end is ``mpimpy study run`` (:mod:`mpimpy.cli`); the file format is described in
``docs/studies.md``.

What lives where (imports go down this list, never up):

- ``spec``: the study's dataclasses (``Study``, ``Search``, ``Point``, ...) and its expansion
  into points; ``schema``: the YAML file's keys and values; ``notebook``: a notebook's
  parameters and declared metrics; ``settings``: a point's settings tried on the simulator;
  ``validate``: ``load_study``, the only place that checks a study against its notebook;
- ``lease``: who owns a running run; ``store``: the runs in MLflow (claim, withdraw, expire);
  ``worker``: executes one point; ``backends``: local processes and Dask; ``results``: what
  became of each point (every status);
- ``source``: the point-source interface and the grid's source; ``search``: the Optuna
  source; ``runner``: the one loop and ``run_study``;
- ``compare``, ``analysis``, ``pareto``, ``plots``, ``codesign``: analysis for the notebooks
  (runs loaded for comparison, a search's front and summary run), apart from running.
"""

from mpimpy.studies.results import PointResult, StudyResult
from mpimpy.studies.runner import run_study
from mpimpy.studies.source import plan
from mpimpy.studies.spec import Point, Study, StudyError, expand_points
from mpimpy.studies.validate import load_study

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
