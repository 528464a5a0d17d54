"""Measured per-level conductance tables (CSV) for the ``measured`` device model.

File format
-----------
A CSV file (comma-separated, one header line). Lines starting with ``#`` and blank lines are
comments (cite the data's source there). Columns, in any order:

========== ======== ==========================================================================
column     unit     meaning
========== ======== ==========================================================================
``level``  integer  the target level, 0 (LGS) to ``g_level - 1`` (HGS)
``time_s`` seconds  optional: time after programming of the measurement (> 0)
``mean_S`` siemens  mean conductance of the cells programmed to that level, at that time (> 0)
``sd_S``   siemens  their standard deviation (>= 0)
========== ======== ==========================================================================

Every time must list every level ``0 .. n - 1`` once (the levels need not be evenly spaced in
conductance); rows are sorted by ``time_s`` (the levels of one time in any order). Without a
``time_s`` column (or with one time) the table describes the programmed cells at every time.
Errors name the file and the row (its line number in the file, counting comments and the
header)::

    # my device, 8 levels, 300 cells per level (Doe et al. 2024, Fig. 3)
    level,time_s,mean_S,sd_S
    0,1,1.02e-06,3.1e-08
    1,1,2.11e-06,4.4e-08
    ...

Time between table times
------------------------
Mean and sd are interpolated linearly in ``log(t)`` between the two table times around ``t``
(conductance relaxation and drift are close to linear in log time); before the first time they
are the first time's (the state programming left); after the last time a read is an error
unless the model extrapolates the last interval's trend in ``log(t)``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The shipped example: 16 levels of HfOx RRAM (Wan et al., Nature 608, 504, 2022) at 1 s, 1 day
#: and 2 days after programming; see ``mpimpy/devices/data/README.md``.
EXAMPLE_TABLE = Path(__file__).resolve().parent / "data" / "rram_wan2022.csv"

COLUMNS = ("level", "time_s", "mean_S", "sd_S")
REQUIRED = ("level", "mean_S", "sd_S")


@dataclass(frozen=True, eq=False)
class LevelTable:
    """A loaded table: ``mean`` and ``sd`` in siemens, ``(n_times, levels)`` float64 arrays, at
    ``times`` seconds after programming (increasing; ``()`` without a ``time_s`` column)."""

    path: str
    times: tuple[float, ...]
    mean: np.ndarray
    sd: np.ndarray

    @property
    def levels(self) -> int:
        return self.mean.shape[1]

    def at(self, t: float, extrapolate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd ``(levels,)`` at ``t`` seconds after programming (see the module)."""
        times = self.times
        if len(times) <= 1 or t <= times[0]:
            return self.mean[0], self.sd[0]
        if t > times[-1] and not extrapolate:
            raise ValueError(f"{self.path}: t = {t:g} s is after the table's last time "
                             f"{times[-1]:g} s; use extrapolate=True to continue the last "
                             f"interval's trend in log t, or read at most {times[-1]:g} s")
        i = min(int(np.searchsorted(times, t)) - 1, len(times) - 2)
        w = (math.log(t) - math.log(times[i])) / (math.log(times[i + 1]) - math.log(times[i]))
        mean = (1 - w) * self.mean[i] + w * self.mean[i + 1]
        sd = (1 - w) * self.sd[i] + w * self.sd[i + 1]
        return mean, np.maximum(sd, 0.0)


def _number(text: str, column: str, where: str, integer: bool = False):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {column} must be finite, got {text!r}")
    if integer:
        if value != int(value):
            raise ValueError(f"{where}: {column} must be an integer, got {text!r}")
        return int(value)
    return value


def load_level_table(path) -> LevelTable:
    """Read and check a table (format in the module docstring); errors name file and row."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"measured device table {str(path)!r} does not exist (a CSV file with "
                         f"columns {', '.join(COLUMNS)}; see mpimpy.devices.tables)")
    name = str(path)
    header, rows = None, []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, record in enumerate(csv.reader(handle), start=1):
            if not record or not "".join(record).strip() or record[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in record]
            if header is None:
                unknown = [c for c in cells if c not in COLUMNS]
                if unknown:
                    raise ValueError(f"{name}, row {line}: unknown column {unknown[0]!r}; the "
                                     f"columns are level, time_s (optional), mean_S, sd_S")
                missing = [c for c in REQUIRED if c not in cells]
                if missing:
                    raise ValueError(f"{name}, row {line}: the header has no {missing[0]!r} "
                                     f"column (columns: level, time_s (optional), mean_S, sd_S)")
                if len(set(cells)) != len(cells):
                    raise ValueError(f"{name}, row {line}: a column appears twice: {cells}")
                header = cells
                continue
            if len(cells) != len(header):
                raise ValueError(f"{name}, row {line}: {len(cells)} values for the "
                                 f"{len(header)} columns {header}")
            rows.append((line, dict(zip(header, cells, strict=True))))
    if header is None or not rows:
        raise ValueError(f"{name}: no table rows (expected a header with columns level, "
                         f"time_s (optional), mean_S, sd_S, then one row per level and time)")

    groups: list[tuple[float, list[tuple[int, int, float, float]]]] = []
    for line, row in rows:
        where = f"{name}, row {line}"
        level = _number(row["level"], "level", where, integer=True)
        if level < 0:
            raise ValueError(f"{where}: level must be >= 0, got {level}")
        time = _number(row["time_s"], "time_s", where) if "time_s" in row else 0.0
        if "time_s" in row and time <= 0:
            raise ValueError(f"{where}: time_s must be > 0 seconds after programming (times are "
                             f"interpolated in log t), got {row['time_s']}")
        mean = _number(row["mean_S"], "mean_S", where)
        if mean <= 0:
            raise ValueError(f"{where}: mean_S must be a conductance > 0 S, got {row['mean_S']}")
        sd = _number(row["sd_S"], "sd_S", where)
        if sd < 0:
            raise ValueError(f"{where}: sd_S must be >= 0 S, got {row['sd_S']}")
        if groups and time < groups[-1][0]:
            raise ValueError(f"{where}: time_s {time:g} comes after {groups[-1][0]:g}: the rows "
                             f"must be sorted by time_s")
        if not groups or time != groups[-1][0]:
            groups.append((time, []))
        for other_line, other_level, _, _ in groups[-1][1]:
            if other_level == level:
                raise ValueError(f"{where}: level {level} appears twice at time_s {time:g} "
                                 f"(also row {other_line})")
        groups[-1][1].append((line, level, mean, sd))

    n = max(level for _, group in groups for _, level, _, _ in group) + 1
    if n < 2:
        raise ValueError(f"{name}: a table needs at least 2 levels (0 and 1), got levels {{0}}")
    mean = np.zeros((len(groups), n))
    sd = np.zeros((len(groups), n))
    for g, (time, group) in enumerate(groups):
        present = {level for _, level, _, _ in group}
        absent = [level for level in range(n) if level not in present]
        if absent:
            first, last = group[0][0], group[-1][0]
            at = f" at time_s {time:g}" if "time_s" in header else ""
            raise ValueError(f"{name}, rows {first}-{last}: level {absent[0]} is missing{at}; "
                             f"every time needs each of the levels 0 to {n - 1}")
        for _, level, m, s in group:
            mean[g, level], sd[g, level] = m, s
    times = tuple(t for t, _ in groups) if "time_s" in header else ()
    return LevelTable(name, times, mean, sd)


__all__ = ["COLUMNS", "EXAMPLE_TABLE", "LevelTable", "load_level_table"]
