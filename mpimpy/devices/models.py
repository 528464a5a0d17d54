"""Device models: the conductance of a programmed cell, right after programming and later.

A device model has two steps, both in siemens, both vectorized over every cell of every array:

* :meth:`DeviceModel.program`: target levels -> programmed conductances (programming noise),
  plus whatever per-cell state the model needs later (a drift exponent, the level);
* :meth:`DeviceModel.read`: programmed conductances -> the conductances a read sees
  ``t`` seconds after programming (drift or relaxation, noise that grows with time).

Programming happens once per weight (:func:`mpimpy.devices.program`); reading at a time never
programs again: the programming noise and the per-cell state are kept, and only the
time-dependent part is computed for the time asked. The random part of a read at time ``t``
is drawn from a generator seeded by the arrays' own seed (drawn at programming) and ``t``, so
the same programming read at the same time gives bit-identical conductances, whatever was read
before; reads at two different times are two samples of the model's distribution at those
times (as aihwkit's ``drift_weights``), not one trajectory, except for what the model keeps per
cell (the programming error, the drift exponent).

The target conductance of level ``l`` is ``LGS + l * (HGS - LGS) / (g_level - 1)``
(:attr:`mpimpy.config.CrossbarConfig.level_step`). Conductances never go below
:data:`G_FLOOR` times HGS (a physical conductance is >= 0 S; the floor keeps circuits with
wire resistance solvable). Stuck-at faults are applied on top of every model (see
:func:`mpimpy.devices.program`): a stuck cell holds LGS or HGS at every time.

Models (:data:`DEVICE_MODELS`): :class:`LogNormal` (``"lognormal"``, the default),
:class:`PCM` (``"pcm"``), :class:`RRAM` (``"rram"``) and :class:`Measured` (``"measured"``).
"""

from __future__ import annotations

import abc
import hashlib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from ..validation import check_real
from .tables import EXAMPLE_TABLE, LevelTable, load_level_table

if TYPE_CHECKING:
    from ..config import CrossbarConfig

#: Lowest conductance any model produces, as a fraction of HGS (1e-14 S for HGS = 10 uS).
G_FLOOR = 1e-9


def _floor(g: torch.Tensor, cfg: CrossbarConfig) -> torch.Tensor:
    return g.clamp_(min=G_FLOOR * cfg.HGS)


def _randn(like: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class DeviceModel(abc.ABC):
    """One interface for every device: target levels -> programmed -> read at time ``t``.

    Subclasses are frozen dataclasses whose fields are the model's parameters (units in their
    docstrings), validated at construction. ``name`` is the model's name in
    :data:`DEVICE_MODELS` (what ``DPETensor(device_model=...)`` accepts).
    """

    name: ClassVar[str] = ""
    #: Whether the reference column of the offset mapping stays an exact LGS current (else its
    #: cells are programmed and read as level-0 devices of this model).
    exact_reference: ClassVar[bool] = False

    @property
    def time_dependent(self) -> bool:
        """Whether the conductances a read sees change with the time since programming."""
        return True

    def check(self, cfg: CrossbarConfig) -> None:  # noqa: B027 - most models fit any hardware
        """Raise ``ValueError`` if the model cannot serve the hardware settings ``cfg``."""

    @abc.abstractmethod
    def program(self, levels: torch.Tensor, cfg: CrossbarConfig, generator: torch.Generator
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Program every cell to its target level.

        Args:
            levels: integer-valued float64 levels ``(...)`` (0 to ``g_level - 1``).
            cfg: the hardware settings (HGS, LGS, g_level, var).
            generator: the random source of the programming noise.

        Returns:
            The programmed conductances (siemens, float64, the shape of ``levels``) and a dict of
            per-cell tensors of the same shape that :meth:`read` needs (empty if none).
        """

    @abc.abstractmethod
    def read(self, programmed: torch.Tensor, state: dict[str, torch.Tensor], t: float,
             cfg: CrossbarConfig, generator: torch.Generator) -> torch.Tensor:
        """The conductances (siemens, float64) a read sees ``t`` seconds after programming.

        ``programmed`` and ``state`` are what :meth:`program` returned (not modified);
        ``t`` is finite and >= 0; ``generator`` draws the time-dependent noise.
        """

    def settings(self) -> dict:
        """The model's parameters as keyword arguments (``type(model)(**settings)`` rebuilds
        it)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def as_dict(self) -> dict:
        """``{"name": ..., **settings}``: what ``DPETensor(device_model=...)`` accepts back."""
        return {"name": self.name, **self.settings()}

    def log_params(self) -> dict:
        """Flat parameters for MLflow: ``device_model`` (the name) and ``device_model.<param>``."""
        params = {"device_model": self.name}
        params.update({f"device_model.{k}": v for k, v in self.settings().items()})
        return params

    def __str__(self) -> str:
        changed = {k: v for k, v in self.settings().items()
                   if v != type(self).__dataclass_fields__[k].default}
        if not changed:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


@dataclass(frozen=True)
class LogNormal(DeviceModel):
    """Device-to-device variation as a lognormal factor, drawn once; nothing changes with time.

    ``G = (LGS + level * step) * exp(N(0, var))`` with ``var`` the hardware setting
    :attr:`mpimpy.config.CrossbarConfig.var` (the sigma of ln G; 0.05 is about 5 %), the
    original mPimPy's model. A read at any time sees the programmed conductances. The
    reference column of the offset mapping is an exact LGS current, as in the original.
    """

    name: ClassVar[str] = "lognormal"
    exact_reference: ClassVar[bool] = True

    @property
    def time_dependent(self) -> bool:
        return False

    def program(self, levels, cfg, generator):
        g = cfg.LGS + levels * cfg.level_step
        if cfg.var > 0:
            noise = torch.randn(g.shape, generator=generator, device=g.device, dtype=g.dtype)
            g = g * torch.exp(noise * cfg.var)
        return g, {}

    def read(self, programmed, state, t, cfg, generator):
        return programmed


#: Drift exponent of aihwkit's ``PCMLikeNoiseModel.generate_drift_coefficients``:
#: mean ``clamp(a * ln(g / g_max) + b, low, high)`` and spread ``clamp(c * ln(g / g_max) + d,
#: low, high)`` (dimensionless), with ``g / g_max`` clamped at 1e-7 first.
PCM_DRIFT_MEAN = (-0.0155, 0.0244, 0.049, 0.1)
PCM_DRIFT_SPREAD = (-0.0125, -0.0059, 0.008, 0.045)
#: 1/f read noise of aihwkit's ``apply_drift_noise_to_conductance``:
#: ``Q_s = min(0.2, a / max(1e-3, (g_prog / g_max) ** b))`` with ``(a, b)`` below.
PCM_READ_NOISE = (0.0088, 0.65)
PCM_G_RELATIVE_MIN = 1e-7


@dataclass(frozen=True)
class PCM(DeviceModel):
    """The phase-change memory model of IBM aihwkit's ``PCMLikeNoiseModel``.

    The statistical model fitted on measured doped-Ge2Sb2Te5 PCM devices (Nandakumar et al.,
    ICECS 2019, https://ieeexplore.ieee.org/abstract/document/8964852; used in Joshi et al.,
    Nat. Commun. 11, 2473, 2020), with the formulas and coefficients of aihwkit
    (``src/aihwkit/inference/noise/pcm.py``, MIT licence), written anew here. ``g_max`` is HGS
    and ``g_T`` the target conductance of a cell's level; ``t`` is :attr:`t_inference`, the
    seconds after programming, and ``T = t + t0``:

    * programming noise: ``G_prog = g_T + prog_noise_scale * sigma_prog * N(0, 1)`` with
      ``sigma_prog = (c0 + c1 r + c2 r^2) * g_max / g_ref`` and ``r = g_T / g_max``: the
      polynomial ``prog_coeff = (c0, c1, c2)`` gives uS for ``g_max = g_ref`` =
      ``prog_coeff_g_max_reference`` uS and scales with ``g_max`` (1.05 % of g_max at r = 0,
      4.2 % at r = 1);
    * drift exponent, one per cell, drawn at programming: ``nu = drift_scale *
      |mu_nu + sigma_nu N(0, 1)|`` (a folded normal) with ``mu_nu = clamp(-0.0155 ln r +
      0.0244, 0.049, 0.1)`` and ``sigma_nu = clamp(-0.0125 ln r - 0.0059, 0.008, 0.045)``
      (:data:`PCM_DRIFT_MEAN`, :data:`PCM_DRIFT_SPREAD`);
    * drift: ``G_drift = G_prog (T / t0) ** -nu``;
    * 1/f read noise accumulated since programming, drawn for each time read:
      ``G = G_drift + read_noise_scale * |G_drift| * Q_s * sqrt(ln((T + t_read) /
      (2 t_read))) * N(0, 1)`` with ``Q_s = min(0.2, 0.0088 / max(1e-3, (G_prog / g_max) **
      0.65))`` (:data:`PCM_READ_NOISE`): 3.7 % of G at g_max already at t = 0 (T = t0), 5.1 % at
      ten years.

    As in aihwkit, ``t = 0`` reads the cells at ``t0`` after programming (no drift yet, read
    noise already). Conductances are clamped at 0 (here :data:`G_FLOOR` * HGS) after
    programming and after reading, as aihwkit's ``clamp(min=0)``.

    Args:
        prog_coeff: ``(c0, c1, c2)`` in uS, aihwkit's ``[0.26348, 1.9650, -1.1731]``.
        prog_coeff_g_max_reference: the ``g_max`` (uS) the coefficients were fitted for, 25.
        t0: seconds after programming of the first read, the drift reference (20 s).
        t_read: the 1/f noise fit's read duration, seconds (250 ns).
        prog_noise_scale, read_noise_scale, drift_scale: multipliers (>= 0) of the
            programming noise, of the read noise and of the drift exponent (1: the model).
    """

    name: ClassVar[str] = "pcm"
    prog_coeff: tuple[float, ...] = (0.26348, 1.9650, -1.1731)
    prog_coeff_g_max_reference: float = 25.0
    t0: float = 20.0
    t_read: float = 250e-9
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    drift_scale: float = 1.0

    def __post_init__(self):
        coeff = tuple(self.prog_coeff) if isinstance(self.prog_coeff, (list, tuple)) else None
        if not coeff:
            raise TypeError(f"pcm prog_coeff must be a list of numbers (uS), got "
                            f"{self.prog_coeff!r}")
        for i, c in enumerate(coeff):
            check_real(f"pcm prog_coeff[{i}]", c)
        object.__setattr__(self, "prog_coeff", tuple(float(c) for c in coeff))
        check_real("pcm prog_coeff_g_max_reference (uS)", self.prog_coeff_g_max_reference,
                    low=0.0, low_open=True)
        check_real("pcm t0 (s)", self.t0, low=0.0, low_open=True)
        check_real("pcm t_read (s)", self.t_read, low=0.0, low_open=True)
        for name in ("prog_noise_scale", "read_noise_scale", "drift_scale"):
            check_real(f"pcm {name}", getattr(self, name), low=0.0)

    def programming_sigma(self, g_target: torch.Tensor, cfg: CrossbarConfig) -> torch.Tensor:
        """Standard deviation of the programming noise (siemens) at ``g_target``."""
        r = g_target / cfg.HGS
        sigma = torch.full_like(g_target, self.prog_coeff[0])
        power = torch.ones_like(g_target)
        for c in self.prog_coeff[1:]:
            power = power * r
            sigma = sigma + c * power
        return sigma * (cfg.HGS / self.prog_coeff_g_max_reference)

    @staticmethod
    def drift_statistics(g_target: torch.Tensor, cfg: CrossbarConfig):
        """Mean and spread of the drift exponent's normal (before folding) at ``g_target``."""
        log_r = torch.log((g_target.abs() / cfg.HGS).clamp(min=PCM_G_RELATIVE_MIN))
        a, b, low, high = PCM_DRIFT_MEAN
        mean = (a * log_r + b).clamp(low, high)
        a, b, low, high = PCM_DRIFT_SPREAD
        spread = (a * log_r + b).clamp(low, high)
        return mean, spread

    def read_noise_sigma(self, programmed: torch.Tensor, t: float, cfg: CrossbarConfig
                         ) -> torch.Tensor:
        """Relative standard deviation of the accumulated 1/f noise ``t`` s after
        programming."""
        a, b = PCM_READ_NOISE
        q_s = (a / ((programmed.abs() / cfg.HGS) ** b).clamp(min=1e-3)).clamp(max=0.2)
        big_t = t + self.t0
        return q_s * math.sqrt(math.log((big_t + self.t_read) / (2 * self.t_read)))

    def program(self, levels, cfg, generator):
        target = cfg.LGS + levels * cfg.level_step
        g = target
        if self.prog_noise_scale > 0:
            sigma = self.programming_sigma(target, cfg)
            g = target + self.prog_noise_scale * sigma * _randn(target, generator)
        g = _floor(g.clone() if g is target else g, cfg)
        mean, spread = self.drift_statistics(target, cfg)
        nu = (mean + spread * _randn(target, generator)).abs_() * self.drift_scale
        return g, {"nu": nu}

    def read(self, programmed, state, t, cfg, generator):
        g = programmed * ((t + self.t0) / self.t0) ** -state["nu"] if t > 0 else programmed
        if self.read_noise_scale > 0:
            sigma = self.read_noise_sigma(programmed, t, cfg)
            g = g + g.abs() * (self.read_noise_scale * sigma) * _randn(g, generator)
        return _floor(g.clone() if g is programmed else g, cfg)


@dataclass(frozen=True)
class RRAM(DeviceModel):
    """Filamentary RRAM after write-verify: conductance relaxation whose spread grows with log t.

    With ``L = log10(1 + t / t0)`` (decades of time since programming, about 0 for
    ``t << t0``), and ``g_T`` a cell's target conductance:

    * programming: ``G_prog = g_T + prog_sigma * HGS * N(0, 1)`` (the acceptance band of a
      write-verify loop: one absolute spread for every level);
    * relaxation, drawn for each time read: ``G(t) = G_prog * (1 + relax_shift * L) +
      relax_sigma * HGS * L * N(0, 1)``, a spread growing linearly in log time and an optional
      relative mean shift per decade, both independent of the level (the form aihwkit's
      ``ReRamCMONoiseModel`` fits to HfOx RRAM: mean and sd linear in log t).

    The defaults are illustrative, not a fit to one device: about 2 % of HGS after programming
    and 1 % more per decade, of the order of the spread that the fits to Wan et al., Nature 608,
    504 (2022) give (about 5 % of the 40 uS range at 1 s and 10 % after a day, see
    :data:`mpimpy.devices.tables.EXAMPLE_TABLE`). Fit them to your device.

    Args:
        prog_sigma: programming spread, fraction of HGS (>= 0).
        relax_sigma: growth of the relaxation spread per decade of time, fraction of HGS (>= 0).
        relax_shift: relative change of the mean per decade (e.g. -0.01: 1 % lower per decade;
            > -1).
        t0: time scale of the relaxation, seconds (> 0).
    """

    name: ClassVar[str] = "rram"
    prog_sigma: float = 0.02
    relax_sigma: float = 0.01
    relax_shift: float = 0.0
    t0: float = 1.0

    def __post_init__(self):
        check_real("rram prog_sigma (fraction of HGS)", self.prog_sigma, low=0.0)
        check_real("rram relax_sigma (fraction of HGS per decade)", self.relax_sigma, low=0.0)
        check_real("rram relax_shift (per decade)", self.relax_shift, low=-1.0, low_open=True)
        check_real("rram t0 (s)", self.t0, low=0.0, low_open=True)

    def decades(self, t: float) -> float:
        """``L = log10(1 + t / t0)``."""
        return math.log10(1.0 + t / self.t0)

    def program(self, levels, cfg, generator):
        g = cfg.LGS + levels * cfg.level_step
        if self.prog_sigma > 0:
            g = g + self.prog_sigma * cfg.HGS * _randn(g, generator)
        return _floor(g, cfg), {}

    def read(self, programmed, state, t, cfg, generator):
        decades = self.decades(t)
        g = programmed * (1.0 + self.relax_shift * decades)
        if self.relax_sigma > 0 and decades > 0:
            g = g + (self.relax_sigma * cfg.HGS * decades) * _randn(g, generator)
        return _floor(g, cfg)


@dataclass(frozen=True)
class Measured(DeviceModel):
    """Conductances from a measured per-level table (CSV; format in :mod:`mpimpy.devices.tables`).

    Programming draws each cell from a normal distribution with its level's mean and standard
    deviation at the table's first time. A read at time ``t`` sees the level's mean and sd at
    ``t`` (interpolated linearly in log t between table times; before the first time, the first
    time's): the cell keeps its programming deviation from the mean (scaled down if the sd
    shrinks) and, where the sd grows, an independent deviation drawn for that time makes up
    the difference, so the cells of a level have exactly the table's mean and sd at every time
    (up to the clamp at 0 S). Levels need not be evenly spaced: the engine still reads levels
    as ``LGS + l * step``, so uneven levels show up as the error they cause.

    After the table's last time a read is refused unless ``extrapolate``: then the last
    interval's trend in log t continues (sd clamped at 0). A table with one time (or no
    ``time_s`` column) holds at every time.

    Args:
        path: the CSV file (default: the shipped example table, 16 RRAM levels from Wan et al.
            2022 at 1 s, 1 day and 2 days, see :data:`mpimpy.devices.tables.EXAMPLE_TABLE`).
        extrapolate: allow reads after the table's last time.
    """

    name: ClassVar[str] = "measured"
    path: str = str(EXAMPLE_TABLE)
    extrapolate: bool = False
    table: LevelTable = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.path, (str, Path)):
            raise TypeError(f"measured path must be a CSV file path, got {self.path!r}")
        if not isinstance(self.extrapolate, bool):
            raise TypeError(f"measured extrapolate must be True or False, got "
                            f"{self.extrapolate!r}")
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "table", load_level_table(self.path))

    @property
    def time_dependent(self) -> bool:
        return len(self.table.times) > 1

    def hardware(self) -> dict:
        """The ``LGS``, ``HGS`` and ``g_level`` that match the table (its first time)."""
        mean = self.table.mean[0]
        return {"LGS": float(mean[0]), "HGS": float(mean[-1]), "g_level": self.table.levels}

    def check(self, cfg):
        table = self.table
        if cfg.g_level != table.levels:
            raise ValueError(f"device_model: the table {table.path} has {table.levels} levels "
                             f"but g_level={cfg.g_level}; set g_level={table.levels}")
        low, high = float(table.mean[0, 0]), float(table.mean[0, -1])
        if abs(low - cfg.LGS) > cfg.level_step / 2 or abs(high - cfg.HGS) > cfg.level_step / 2:
            raise ValueError(
                f"device_model: the table {table.path} programs level 0 to {low:.4g} S and level "
                f"{table.levels - 1} to {high:.4g} S, but LGS={cfg.LGS:.4g} S and "
                f"HGS={cfg.HGS:.4g} S; set LGS and HGS to the table's range "
                f"(Measured(...).hardware() gives them: LGS={low:.4g}, HGS={high:.4g})")

    def _per_level(self, values, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float64, device=like.device)

    def program(self, levels, cfg, generator):
        index = levels.long()
        mean = self._per_level(self.table.mean[0], levels)[index]
        sd = self._per_level(self.table.sd[0], levels)[index]
        g = mean + sd * _randn(mean, generator)
        return _floor(g, cfg), {"level": index.to(torch.int16)}

    def read(self, programmed, state, t, cfg, generator):
        index = state["level"].long()
        mean_t, sd_t = (self._per_level(v, programmed)[index]
                        for v in self.table.at(t, self.extrapolate))
        mean_0 = self._per_level(self.table.mean[0], programmed)[index]
        sd_0 = self._per_level(self.table.sd[0], programmed)[index]
        # keep the programming deviation (shrunk with the sd), add what the sd has grown by
        keep = torch.where(sd_0 > 0, (sd_t / sd_0.clamp(min=1e-300)).clamp(max=1.0),
                           torch.ones_like(sd_0))
        grown = (sd_t * sd_t - sd_0 * sd_0).clamp(min=0.0).sqrt_()
        g = mean_t + (programmed - mean_0) * keep + grown * _randn(programmed, generator)
        return _floor(g, cfg)

    def log_params(self) -> dict:
        params = super().log_params()
        digest = hashlib.sha256(Path(self.table.path).read_bytes()).hexdigest()
        params.update({"device_model.sha256": digest, "device_model.levels": self.table.levels,
                       "device_model.times_s": list(self.table.times)})
        return params


#: The device models by name (``DPETensor(device_model=name)``).
DEVICE_MODELS: dict[str, type[DeviceModel]] = {
    cls.name: cls for cls in (LogNormal, PCM, RRAM, Measured)}


def resolve_device_model(value) -> DeviceModel:
    """A :class:`DeviceModel` from a name (:data:`DEVICE_MODELS`), a dict ``{"name": ...,
    **parameters}`` (what :meth:`DeviceModel.as_dict` gives) or a model; checked."""
    if isinstance(value, DeviceModel):
        return value
    if isinstance(value, str):
        name, settings = value, {}
    elif isinstance(value, dict):
        settings = dict(value)
        name = settings.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"device_model: a dict needs a 'name' among {sorted(DEVICE_MODELS)},"
                             f" got {value!r}")
    else:
        raise TypeError(f"device_model must be a name {sorted(DEVICE_MODELS)}, a dict with a "
                        f"'name' or a DeviceModel, got {value!r} ({type(value).__name__})")
    if name not in DEVICE_MODELS:
        raise ValueError(f"device_model must be one of {sorted(DEVICE_MODELS)}, got {name!r}")
    cls = DEVICE_MODELS[name]
    allowed = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"device_model {name!r} has no parameter {unknown[0]!r}; its parameters"
                         f" are {allowed}")
    return cls(**settings)


__all__ = ["DEVICE_MODELS", "G_FLOOR", "DeviceModel", "LogNormal", "Measured", "PCM", "RRAM",
           "resolve_device_model"]
