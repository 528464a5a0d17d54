"""The Optuna point source: a search's points are trials asked from an Optuna study, one each.

A study file with a ``search:`` section (``docs/studies.md``) names objectives (metrics the
notebook logs, each to minimize or maximize), optional constraints on metrics, and a space of
notebook parameters. The runner (:func:`mpimpy.studies.run_study`, the same loop as for grids)
takes its points from :class:`OptunaSource`, which asks trials from an Optuna study kept in an
RDB storage next to the tracking store (``mlruns/optuna.db``, or ``--storage URL``), runs each
trial as a point through the same workers, papermill kernels and leases, and tells Optuna the
objective values the notebook logged to the trial's MLflow run.

Trials, runs and leases: one to one
    Every trial has exactly one MLflow run, created by the runner that asked the trial and
    tagged ``search`` (the study's name) and ``trial`` (its number); the trial keeps the run's
    id as its user attribute ``mpimpy.run_id``. The run carries the runner's lease
    (:class:`mpimpy.studies.lease.Lease`), renewed while it runs, and the worker's guard stops
    the kernel when the runner is gone, as for every point. A trial's state follows its run:

    - run FINISHED with every objective logged: trial COMPLETE with those values, the
      constraints' violations as ``mpimpy.constraints`` (Optuna's ``constraints_func``), the run
      tagged ``objective.<metric>`` and ``feasible``;
    - run FINISHED but an objective not logged (or NaN): the run is set FAILED saying which,
      and the trial FAIL;
    - run FAILED (the notebook raised, its worker died): trial FAIL, not retried (the sampler
      moves on);
    - run KILLED (Ctrl-C, a runner killed, a lease gone stale): trial FAIL and a *retry*, a new
      trial with the same parameters enqueued by whoever failed the trial (user attribute
      ``mpimpy.retry_of``); so no asked configuration is lost.

    The runner that ends a run settles its trial; a runner that starts settles every RUNNING
    trial it finds whose run has ended, or whose run's lease is stale (that run is marked
    KILLED first, as for points), or that has no run at all (its runner died between asking it
    and creating the run). Trials asked with the same parameters as a COMPLETE trial are not
    run again: their run copies the earlier run's metrics (tag ``duplicate_of``) and they
    count as trials, as Optuna's own guidance does.

    On a local SQLite storage every change to the Optuna study (count, ask and create the run;
    settle and retry) happens under a file lock beside the database
    (:func:`mpimpy.studies.store.lock_beside`), so runners started
    together never ask more than ``n_trials`` and never retry a trial twice; a database server
    (``--storage postgresql://...``) is for one runner per search (Dask spreads its trials).

Counting
    A search is done when ``n_trials`` trials are COMPLETE. Failed trials do not count;
    a run stops asking after as many failed trials of its own as ``n_trials`` (a broken notebook
    must not loop forever). ``grid``/``points`` beside ``search`` are reference configurations,
    enqueued as the first trials once, when the Optuna study is created.

Only Optuna's public API is used: ``Study.ask``/``tell``/``enqueue_trial``/``get_trials``, and
the :class:`optuna.storages.RDBStorage` this module creates, whose trials are reached by study
name and trial number (``get_study_id_from_name``, ``get_trial_id_from_study_id_trial_number``).
What a search found (its front, plots, summary run) is :mod:`mpimpy.studies.analysis`'s.
Importing this module does not import Optuna.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpimpy import tracking
from mpimpy.studies.lease import lease_state
from mpimpy.studies.results import StudyResult
from mpimpy.studies.settings import point_problems
from mpimpy.studies.source import PointSource
from mpimpy.studies.spec import Point, Search, Study, StudyError, reference_points, trial_point
from mpimpy.studies.store import (
    ERROR_TAG,
    RunnerError,
    create_run,
    experiment_id,
    expire,
    lock_beside,
    log_point_params,
    problem,
    record_failure,
    search_all,
)

if TYPE_CHECKING:
    from mpimpy.studies.runner import StudyRun

#: Run tags of a search's trials.
SEARCH_TAG = "search"
TRIAL_TAG = "trial"
FEASIBLE_TAG = "feasible"
OBJECTIVE_TAG = "objective."
DUPLICATE_TAG = "duplicate_of"
REFERENCE_TAG = "reference"
#: Optuna user attributes of a trial.
RUN_ATTR = "mpimpy.run_id"
HASH_ATTR = "mpimpy.params_hash"
RETRY_ATTR = "mpimpy.retry_of"
CONSTRAINTS_ATTR = "mpimpy.constraints"
FEASIBLE_ATTR = "mpimpy.feasible"
ERROR_ATTR = "mpimpy.error"
REFERENCE_ATTR = "mpimpy.reference"
#: Optuna user attribute of the study: the search's definition (everything but ``n_trials``).
DEFINITION_ATTR = "mpimpy.definition"
STORE_ATTR = "mpimpy.tracking_store"
#: Environment variable naming the Optuna storage (default: beside the tracking store).
ENV_STORAGE = "MPIMPY_OPTUNA_STORAGE"


# --------------------------------------------------------------------------------------------
# The Optuna storage and study


def default_storage(uri: str | None = None) -> str:
    """The Optuna storage of a tracking store: ``$MPIMPY_OPTUNA_STORAGE``, else the SQLite
    file ``optuna.db`` beside a local store's database, else in the local store folder."""
    if os.environ.get(ENV_STORAGE):
        return os.environ[ENV_STORAGE]
    db = tracking.sqlite_path(uri or tracking.tracking_uri())
    folder = db.parent if db is not None else tracking.store_dir()
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def storage_summary(storage: str) -> str:
    """A storage URL without its password, for messages and tags."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", storage)


def sqlite_file(storage: str) -> Path | None:
    """The database file of a local SQLite storage, else ``None`` (a database server)."""
    if storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///"):])
    return None


def storage_lock(storage: str):
    """The lock of a search's runners on a local SQLite storage: a file lock beside the database
    (:func:`mpimpy.studies.store.lock_beside`); nothing on a database server, whose row locks
    Optuna uses."""
    db = sqlite_file(storage)
    return lock_beside(db) if db is not None else contextlib.nullcontext()


def quiet_optuna():
    """Optuna, imported, saying only warnings."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def make_sampler(search: Search, n_existing: int):
    """The search's Optuna sampler, seeded with ``seed`` and the number of trials the study
    holds (so that a resumed search does not draw its first trials' values again)."""
    optuna = quiet_optuna()
    seed = (search.seed * 1_000_003 + n_existing) % 2**32
    # constraints reach the samplers as the trials' constraint values (Trial.set_constraint)
    if search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=search.nsga2_population(),
                                             seed=seed)
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    grid = {name: [d.encode(v) for v in d.values()] for name, d in search.space.items()}
    return optuna.samplers.GridSampler(grid, seed=seed)


def storage_problem(exc: BaseException, storage: str) -> str:
    return f"cannot use the Optuna storage {storage_summary(storage)}: {problem(exc)}"


def rdb_storage(storage: str, lock):
    """An :class:`optuna.storages.RDBStorage` on ``storage``, made under ``lock`` (runners started
    together would race to create a new database's tables)."""
    with lock:
        db = sqlite_file(storage)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        return quiet_optuna().storages.RDBStorage(storage)


def open_search(study: Study, storage: str, lock, *, store: str, create: bool = True,
                rdb=None):
    """The Optuna study of a search (created, with its reference trials enqueued, if it is not
    there and ``create``), or ``None``; refuses one made with another definition or for
    another tracking store (:class:`StudyError`). ``storage``: its URL; ``lock``:
    :func:`storage_lock`'s; ``rdb``: an :class:`optuna.storages.RDBStorage` on it to use."""
    optuna = quiet_optuna()
    search = study.search
    definition = json.dumps(search.definition(study), sort_keys=True)
    with lock:
        if rdb is None:
            db = sqlite_file(storage)
            if not create and db is not None and not db.is_file():
                return None
            rdb = rdb_storage(storage, lock)
        names = {s.study_name for s in optuna.get_all_study_summaries(rdb)}
        if study.name not in names:
            if not create:
                return None
            created = optuna.create_study(
                storage=rdb, study_name=study.name,
                directions=[o.direction for o in search.objectives])
            created.set_user_attr(DEFINITION_ATTR, definition)
            created.set_user_attr(STORE_ATTR, store)
            for values in reference_points(study):
                created.enqueue_trial(
                    {k: search.space[k].encode(v) for k, v in values.items()},
                    user_attrs={REFERENCE_ATTR: True})
        n_existing = len(rdb.get_all_trials(
            rdb.get_study_id_from_name(study.name), deepcopy=False))
        loaded = optuna.load_study(study_name=study.name, storage=rdb,
                                   sampler=make_sampler(search, n_existing))
    _check_definition(study, storage, loaded, definition, store)
    return loaded


def _check_definition(study: Study, storage: str, loaded, definition: str, store: str) -> None:
    old = loaded.user_attrs.get(DEFINITION_ATTR)
    where = f"the Optuna study {study.name!r} in {storage_summary(storage)}"
    if old is not None and old != definition:
        before, now = json.loads(old), json.loads(definition)
        changed = [k for k in now if before.get(k) != now.get(k)]
        raise StudyError(
            f"{study.path}: key 'search': {where} was started with another definition "
            f"(changed: {', '.join(changed)}); only n_trials may change when a search resumes. "
            "Give the study another name to start a new search.")
    old_store = loaded.user_attrs.get(STORE_ATTR)
    if old_store is not None and old_store != store:
        raise StudyError(
            f"{study.path}: key 'search': {where} holds the trials of the runs in {old_store}, "
            f"not of {store}; run it on that store, or give another --storage")


def experiment_store(uri: str) -> str:
    """How a search's Optuna study names its tracking store (a local store by its database)."""
    db = tracking.sqlite_path(uri)
    return str(db.resolve()) if db is not None else uri


# --------------------------------------------------------------------------------------------
# The result of a search


@dataclass
class SearchResult(StudyResult):
    """:func:`mpimpy.studies.run_study`'s result for a search: ``search_counts`` (the Optuna
    study's trials by state after the run: ``COMPLETE``, ``FAIL``, ``RUNNING``, ...), its
    Optuna storage, and whether it stopped asking after too many failures (``gave_up``)."""

    search_counts: dict[str, int] | None = None
    optuna_storage: str | None = None
    gave_up: bool = False

    @property
    def ok(self) -> bool:
        """``n_trials`` trials are complete (a trial that failed was replaced by another)."""
        if self.interrupted or self.store_error is not None:
            return False
        if self.dry_run:
            return True
        complete = (self.search_counts or {}).get("COMPLETE", 0)
        return complete >= self.study.search.n_trials and not self.gave_up

    def summary(self) -> str:
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
# Settling trials from their runs


def trial_values(search: Search, metrics: dict[str, float]):
    """``(values, violations, error)`` of a run's metrics: the objectives' values and the
    constraints' violations, or the error naming a metric the run lacks."""
    missing = [m for m in search.metrics if m not in metrics]
    if missing:
        return None, None, (f"the notebook did not log the search's metric {missing[0]!r} "
                            "(or logged NaN/inf: see the tag nonfinite." + missing[0] + ")")
    values = [float(metrics[o.metric]) for o in search.objectives]
    violations = [c.violation(float(metrics[c.metric])) for c in search.constraints]
    return values, violations, None


class OptunaSource(PointSource):
    """A search's points: trials asked from its Optuna study while fewer than ``n_trials`` are
    complete or running, each settled from its run when it ends (see the module docstring)."""

    unit = "trial"
    progress = ("FINISHED", "DUPLICATE")

    def __init__(self, study: Study, *, storage: str | None = None, force: bool = False):
        if force:
            raise StudyError(
                f"{study.path}: key 'search': --force reruns the finished points of a grid; a "
                "search continues until n_trials trials are complete (raise n_trials for more)")
        super().__init__(study)
        self.search: Search = study.search
        self.url = storage or default_storage(tracking.tracking_uri())
        self.lock = storage_lock(self.url)
        self.exclusive = sqlite_file(self.url) is not None  # the lock excludes other runners
        self.size = self.total = self.search.n_trials
        self.optuna = self.rdb = self.study_id = self.result = None
        self.distributions: dict[str, Any] = {}
        self.trial_of: dict[str, int] = {}  # run id -> trial number, for the trials run here
        self.foreign: dict[int, str | None] = {}  # trial number -> run id, other runners'
        self.gave_up = False

    def columns(self) -> list[str]:
        return list(self.search.space)

    # -- opening --------------------------------------------------------------------------------
    def _open(self, uri: str, create: bool):
        try:
            rdb = None
            if create:
                rdb = rdb_storage(self.url, self.lock)
            opened = open_search(self.study, self.url, self.lock, store=experiment_store(uri),
                                 create=create, rdb=rdb)
        except StudyError:
            raise
        except Exception as exc:
            raise RunnerError(storage_problem(exc, self.url)) from None
        if opened is not None and rdb is not None:
            self.optuna, self.rdb = opened, rdb
            self.study_id = rdb.get_study_id_from_name(self.study.name)
        return opened

    def dry_run(self, uri: str, output_dir: Path, echo) -> StudyResult:
        result = SearchResult(self.study, uri, experiment_id(self.study.experiment, uri),
                              output_dir, dry_run=True, optuna_storage=self.url)
        opened = self._open(uri, create=False)
        result.search_counts = dict(Counter(
            t.state.name for t in opened.get_trials(deepcopy=False))) if opened else {}
        done = result.search_counts.get("COMPLETE", 0)
        echo(f"  search {self.study.name!r}: sampler {self.search.sampler}, {done} of "
             f"{self.search.n_trials} trials complete, up to "
             f"{max(0, self.search.n_trials - done)} to run")
        return result

    def start(self, client, uri, experiment_id, output_dir, echo) -> StudyResult:
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        self._open(uri, create=True)
        self.distributions = {k: d.distribution() for k, d in self.search.space.items()}
        self.result = SearchResult(self.study, uri, experiment_id, output_dir,
                                   optuna_storage=self.url)
        complete = self.counts().get("COMPLETE", 0)
        self.initial = min(complete, self.search.n_trials)
        echo(f"Search {self.study.name!r}: {complete} of {self.search.n_trials} trials "
             f"complete; sampler {self.search.sampler}; Optuna study in "
             f"{storage_summary(self.url)}; experiment {self.study.experiment!r} in "
             f"{tracking.store_summary(uri)}")
        return self.result

    # -- the Optuna study through its storage -------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Trials by state (``COMPLETE``, ``RUNNING``, ``FAIL``, ``WAITING``)."""
        trials = self.rdb.get_all_trials(self.study_id, deepcopy=False)
        return dict(Counter(t.state.name for t in trials))

    def trial_id(self, number: int) -> int:
        return self.rdb.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def tell(self, number: int, *, values=None, state=None, attrs=None,
             constraints=None) -> bool:
        """Finish a RUNNING trial (False when it was finished already: by another runner), with
        its user attributes and constraint values (<= 0: satisfied) set first."""
        from optuna.trial import Trial, TrialState

        trial_id = self.trial_id(number)
        if self.rdb.get_trial(trial_id).state.is_finished():
            return False
        for key, value in (attrs or {}).items():
            self.rdb.set_trial_user_attr(trial_id, key, value)
        if constraints:
            trial = Trial(self.optuna, trial_id)
            for key, value in constraints.items():
                trial.set_constraint(key, value)
        try:
            self.optuna.tell(number, values, state=state or (
                TrialState.COMPLETE if values is not None else TrialState.FAIL))
        except ValueError:  # finished meanwhile (a database server, without our lock)
            return False
        except RuntimeError:
            # the grid sampler calls Study.stop() once the grid is exhausted, which Optuna
            # allows only inside Study.optimize; the trial was stored before that
            if not self.rdb.get_trial(trial_id).state.is_finished():
                raise
        return True

    def settle(self, number: int, run) -> str:
        """Finish a trial from its ended run (see the module docstring); returns its state
        (``"COMPLETE"``, ``"FAIL"``, ``"RETRIED"``, or ``"SETTLED"`` if another runner did)."""
        search, client, status = self.search, self.client, run.info.status
        with self.lock:
            trial = self.rdb.get_trial(self.trial_id(number))
            if trial.state.is_finished():
                return "SETTLED"
            if status == "FINISHED":
                values, violations, error = trial_values(search, run.data.metrics)
                if error is None:
                    feasible = all(v <= 0 for v in violations)
                    tags = {f"{OBJECTIVE_TAG}{o.metric}": f"{v:.10g}"
                            for o, v in zip(search.objectives, values, strict=True)}
                    tags[FEASIBLE_TAG] = str(feasible).lower()
                    for key, value in tags.items():
                        client.set_tag(run.info.run_id, key, value)
                    done = self.tell(number, values=values,
                                     attrs={CONSTRAINTS_ATTR: violations,
                                            FEASIBLE_ATTR: feasible},
                                     constraints={c.metric: v for c, v in zip(
                                         search.constraints, violations, strict=True)})
                    return "COMPLETE" if done else "SETTLED"
                record_failure(client, run.info.run_id, error, None)
                done = self.tell(number, attrs={ERROR_ATTR: error})
                return "FAIL" if done else "SETTLED"
            error = run.data.tags.get(ERROR_TAG, status.lower())
            if status == "KILLED":
                return self.fail_and_retry(trial, error)
            done = self.tell(number, attrs={ERROR_ATTR: error[:2000]})
            return "FAIL" if done else "SETTLED"

    def fail_and_retry(self, trial, why: str) -> str:
        """Fail an interrupted trial (a :class:`optuna.trial.FrozenTrial`) and enqueue a new one
        with its parameters (the caller holds the lock); ``"SETTLED"`` if it was finished
        already."""
        if not self.tell(trial.number, attrs={ERROR_ATTR: f"interrupted: {why}"[:2000]}):
            return "SETTLED"
        attrs = {RETRY_ATTR: trial.number}
        if trial.user_attrs.get(REFERENCE_ATTR):
            attrs[REFERENCE_ATTR] = True
        self.optuna.enqueue_trial(dict(trial.params), user_attrs=attrs)
        return "RETRIED"

    def trial_run(self, trial) -> Any | None:
        """The (not deleted) run of a trial: by its user attribute, else by the run's tags."""
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id:
            with contextlib.suppress(Exception):
                run = self.client.get_run(run_id)
                if run.info.lifecycle_stage != "deleted":
                    return run
        found = search_all(self.client, self.experiment_id,
                           f"tags.{SEARCH_TAG} = '{self.study.name}' and tags.{TRIAL_TAG} = "
                           f"'{trial.number}'")
        return found[0] if found else None

    # -- asking -----------------------------------------------------------------------------
    def launch_next(self, loop: StudyRun) -> bool:
        from optuna.trial import TrialState

        if self.gave_up:
            return False
        try:
            with self.lock:
                trials = self.rdb.get_all_trials(self.study_id, deepcopy=False)
                complete = sum(t.state == TrialState.COMPLETE for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if complete + running >= self.search.n_trials:
                    if running > len(loop.inflight) and not self.foreign:
                        self.reconcile(loop)  # another runner's trials: wait for them
                    return False
                failures = len(loop.result.with_status("FAILED")) + len(
                    loop.result.with_status("INVALID"))
                if failures >= self.search.n_trials:
                    self.gave_up = True
                    loop.bar.write(f"Stopping: {failures} trials failed in this run (as many "
                                   "as n_trials); see their runs' errors")
                    return False
                self.launch(loop, self.optuna.ask(self.distributions), trials)
                return True
        except Exception as exc:
            loop.stop_starting(f"cannot run the search's next trial (Optuna storage "
                               f"{storage_summary(self.url)}, experiment store {self.uri}): "
                               f"{problem(exc)}")
            return False

    def _tags(self, trial) -> dict[str, str]:
        tags = {SEARCH_TAG: self.study.name, TRIAL_TAG: str(trial.number),
                "mpimpy.optuna_storage": storage_summary(self.url)}
        if trial.user_attrs.get(REFERENCE_ATTR):
            tags[REFERENCE_TAG] = "true"
        if RETRY_ATTR in trial.user_attrs:
            tags["retry_of"] = str(trial.user_attrs[RETRY_ATTR])
        return tags

    def launch(self, loop: StudyRun, trial, trials) -> None:
        """Run an asked trial (an :class:`optuna.trial.Trial`; the caller holds the lock): its
        run, then a worker; or, for settings the simulator refuses, a FAILED run; or, for a
        configuration that completed before, a copy of that run."""
        from optuna.trial import TrialState

        values = {k: self.search.space[k].decode(v) for k, v in trial.params.items()}
        point = trial_point(self.study, trial.number, values)
        client = self.client
        tags = self._tags(trial)
        problems = point_problems(point, self.study.notebook_parameters or {})
        earlier = next((t for t in trials if t.state == TrialState.COMPLETE
                        and t.user_attrs.get(HASH_ATTR) == point.params_hash
                        and t.user_attrs.get(RUN_ATTR)), None)
        if earlier is not None:
            tags.update({DUPLICATE_TAG: earlier.user_attrs[RUN_ATTR],
                         f"{DUPLICATE_TAG}_trial": str(earlier.number)})
        run_id = create_run(client, self.experiment_id, self.study, point, loop.lease,
                            extra_tags=tags)
        trial.set_user_attr(RUN_ATTR, run_id)
        trial.set_user_attr(HASH_ATTR, point.params_hash)
        tracked = tracking.TrackedRun(run_id, client=client, managed=True)
        if problems:
            error = "invalid settings, not run: " + "; ".join(m for _, m in problems)
            log_point_params(tracked, point.parameters)
            record_failure(client, run_id, error, None)
            self.tell(trial.number, attrs={ERROR_ATTR: error[:2000]})
            loop.add(point, "INVALID", run_id, error)
        elif earlier is not None:
            source = client.get_run(earlier.user_attrs[RUN_ATTR])
            tracked.log_params(source.data.params)
            tracked.log_metrics(source.data.metrics)
            client.set_terminated(run_id, "FINISHED")
            self.settle(trial.number, client.get_run(run_id))
            loop.add(point, "DUPLICATE", run_id)
        else:
            self.trial_of[run_id] = trial.number
            loop.launch(point, run_id)

    # -- settling ---------------------------------------------------------------------------
    def ended(self, loop: StudyRun, point: Point, run_id: str) -> None:
        number = self.trial_of.pop(run_id, None)
        if number is None:
            return
        try:
            run = self.client.get_run(run_id)
            state = self.settle(number, run)
        except Exception as exc:  # the next run settles it from the run
            loop.stop_starting(f"cannot tell the Optuna storage {storage_summary(self.url)} "
                               f"the outcome of run {run_id}: {problem(exc)}")
            return
        if state == "FAIL" and run.info.status == "FINISHED":
            error = trial_values(self.search, run.data.metrics)[2]
            for result in reversed(loop.result.results):
                if result.run_id == run_id:
                    if result.status == "FINISHED":
                        result.status, result.error = "FAILED", error
                        loop.bar.write(f"FAILED {result.point.point_id}: {error}")
                    return

    def interrupted(self, loop: StudyRun, run_ids: list[str]) -> None:
        """The runs in flight were KILLED (as for points): their trials are failed and
        retried, so that the next run runs them again."""
        for run_id in run_ids:
            with contextlib.suppress(Exception):
                self.ended(loop, None, run_id)

    def reconcile(self, loop: StudyRun) -> None:
        """Settle the RUNNING trials this runner does not run: ended runs are told, stale
        leases (and trials left without a run) are failed and retried, live ones waited for."""
        from optuna.trial import TrialState

        try:
            self._reconcile(loop, TrialState.RUNNING)
        except Exception as exc:
            loop.stop_starting(f"cannot read the search's trials: {problem(exc)}")
            self.foreign = {}

    def _reconcile(self, loop: StudyRun, running_state) -> None:
        ours = set(self.trial_of.values())
        still = {}
        with self.lock:
            running = self.rdb.get_all_trials(self.study_id, deepcopy=False,
                                              states=(running_state,))
            for trial in running:
                if trial.number in ours:
                    continue
                run = self.trial_run(trial)
                if run is None:
                    age = time.time() - trial.datetime_start.timestamp()
                    if self.exclusive or age > loop.lease.ttl_s:
                        if self.fail_and_retry(trial, "its runner stopped before it created "
                                               "the trial's run") == "RETRIED":
                            loop.bar.write(f"trial {trial.number}: left without a run; retried")
                    else:
                        still[trial.number] = None
                    continue
                if run.info.status == "RUNNING":
                    live, why = lease_state(run)
                    if live:
                        if trial.number not in self.foreign:
                            loop.bar.write(f"waiting for trial {trial.number}: {why}")
                        still[trial.number] = run.info.run_id
                        continue
                    expire(self.client, run, why)
                    run = self.client.get_run(run.info.run_id)
                state = self.settle(trial.number, run)
                if state == "RETRIED":
                    loop.bar.write(f"trial {trial.number}: its run {run.info.run_id} was "
                                   f"{run.info.status}; retried as a new trial")
                elif state in ("COMPLETE", "FAIL"):
                    loop.bar.write(f"trial {trial.number}: its run ended while no runner "
                                   f"watched it; told {state}")
        self.foreign = still

    @property
    def waiting(self) -> bool:
        return bool(self.foreign)

    def poll(self, loop: StudyRun) -> None:
        self.reconcile(loop)

    def finish(self, loop: StudyRun | None, why: str) -> None:
        self.result.gave_up = self.gave_up
        with contextlib.suppress(Exception):
            self.result.search_counts = self.counts()


__all__ = [
    "ENV_STORAGE",
    "OptunaSource",
    "SearchResult",
    "default_storage",
    "experiment_store",
    "make_sampler",
    "open_search",
    "rdb_storage",
    "storage_lock",
    "storage_problem",
    "storage_summary",
    "trial_values",
]
