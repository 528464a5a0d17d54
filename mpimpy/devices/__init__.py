"""Stage 3: program weight slices into memristor conductances.

A slice value ``v`` of width ``w`` becomes the level ``v * ((g_level - 1) // (2**w - 1))``
(``level_mapping="integer"``; the original mPimPy's ``"spread"`` rounds
``v / (2**w - 1) * (g_level - 1)``, see :func:`mpimpy.config.level_scale`) and the conductance
``G = LGS + level * (HGS - LGS) / (g_level - 1)`` (siemens). Non-idealities drawn
once, at programming time, and kept until the weights are programmed again:

* device-to-device variation: ``G *= exp(N(0, var))`` (a lognormal factor; var is its sigma);
* stuck-at faults: a ``stuck_fault_ratio`` of cells holds exactly LGS (``stuck_fault_value=0``)
  or HGS (``1``), whatever was written, at every time.

That variation is the default device model, ``lognormal``; the hardware setting
``device_model`` chooses another one (:mod:`mpimpy.devices.models`: ``pcm``, ``rram``,
``measured``), which maps levels to programmed conductances with its own programming noise and
also says what a read sees ``t`` seconds after programming (:func:`read_at`): drift,
relaxation, read noise that grows with time. Programming draws everything that belongs to the
cell once (:class:`DeviceState`); reading at a time never programs again.

With ``mapping="offset"`` every slice (the sign slice included) lives on one array; with
``mapping="diffpair"`` a signed slice value is written to a G+ array when positive and to a G-
array when negative, and the sign slice needs no array. With ``mapping="bias"`` every slice of
the offset-binary weight lives on one array, and with ``unit_column=True`` every array gets one
more column at the far end of its word lines holding the bias (the offset-binary value of a
zero weight), ISAAC's unit column.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch

from ..config import CrossbarConfig, TileShape, level_scale, validate_time
from ..slicing import bit_slices, slice_weights
from ..tiling import n_tiles, tile_weights
from .models import DEVICE_MODELS, DeviceModel, resolve_device_model

#: The conductance tensors of :class:`ProgrammedArrays`, in the order they are programmed and
#: read.
CELL_GROUPS = ("positive", "negative", "reference")


@dataclass
class DeviceState:
    """What a device model keeps per cell to read programmed arrays at a later time.

    Attributes:
        model: the device model that programmed the arrays.
        cells: for each conductance tensor of the arrays that holds devices (a name of
            :data:`CELL_GROUPS`), the model's per-cell tensors (e.g. the drift exponent
            ``"nu"``), plus ``"stuck"``: the cells held by a stuck-at fault, if any.
        noise_seed: seeds, with the time read, the noise a read at that time draws.
    """

    model: DeviceModel
    cells: dict[str, dict[str, torch.Tensor]]
    noise_seed: int


@dataclass
class ProgrammedArrays:
    """Conductances of all arrays holding one weight operand.

    Attributes:
        positive: conductances in siemens, float64 ``(n_arrays, Tk, Tn, rows, cols)``: the weight
            arrays (offset mapping) or the G+ arrays (differential pair).
        negative: the G- arrays, same shape, or ``None`` for the offset mapping, whose reference
            column holds LGS.
        slice_index: for each array, the index of the weight slice it holds.
        shape: (K, N) of the weight matrix.
        columns: the columns a read uses, as indices into the ``Tn * cols`` columns of one
            row-block of arrays side by side: the N weight columns in order, then the unit
            columns (one per column of arrays) if any. Padding columns are not read.
        unit_columns: how many of ``columns`` are unit columns (0, or Tn with
            ``unit_column=True``).
        reference_column: whether every array also has a reference column of LGS cells (the
            offset mapping), whose current is subtracted before the ADC.
        reference: the conductances of those reference cells, ``(n_arrays, Tk, Tn, rows, 1)``,
            when the device model programs them as level-0 devices (every model but
            ``lognormal``, so that they drift with the cells they are subtracted from; no
            stuck faults); ``None``: an exact LGS.
        device_state: what the device model needs to read the arrays at a later time
            (:func:`read_at`); ``None`` for models that do not change with time.
    """

    positive: torch.Tensor
    negative: torch.Tensor | None
    slice_index: tuple[int, ...]
    shape: tuple[int, int]
    columns: torch.Tensor
    unit_columns: int = 0
    reference_column: bool = False
    reference: torch.Tensor | None = None
    device_state: DeviceState | None = None

    @property
    def tile(self) -> TileShape:
        """The size of one physical array (its unit column included)."""
        return TileShape(self.positive.shape[-2], self.positive.shape[-1])

    @property
    def weight_columns_per_array(self) -> int:
        """Columns of one array that hold weights (the unit column excluded)."""
        return self.tile.cols - (1 if self.unit_columns else 0)


def check_widths(widths, g_level: int, name: str, skip_sign: bool = False) -> None:
    """A slice of width w needs 2**w distinct levels; the device offers g_level."""
    for i, w in enumerate(widths):
        if skip_sign and i == 0:
            continue
        if 2**w > g_level:
            raise ValueError(
                f"{name}: a {w}-bit slice needs {2**w} conductance levels but g_level={g_level}; "
                f"use slices of at most {g_level.bit_length() - 1} bits or raise g_level"
            )


def _conductance(levels: torch.Tensor, cfg: CrossbarConfig, generator, faults: bool = True):
    """Integer levels -> conductances in siemens (the device model's programming noise) with
    stuck-at faults, and the per-cell state a later read needs."""
    model = cfg.device_model
    g, state = model.program(levels, cfg, generator)
    if faults and cfg.stuck_fault_ratio > 0:
        stuck = torch.rand(g.shape, generator=generator, device=g.device, dtype=g.dtype)
        stuck_at = cfg.HGS if cfg.stuck_fault_value == 1 else cfg.LGS
        stuck = stuck < cfg.stuck_fault_ratio
        g = torch.where(stuck, torch.full_like(g, stuck_at), g)
        if model.time_dependent:
            state["stuck"] = stuck
    return g, state


def program(slices: torch.Tensor, widths, cfg: CrossbarConfig, tile: TileShape,
            generator: torch.Generator) -> ProgrammedArrays:
    """Write weight slices into arrays.

    Args:
        slices: integers ``(n_slices, K, N)``, the weight matrix cut with the mapping's encoding
            (:attr:`CrossbarConfig.weight_encoding`): two's complement (offset), sign-magnitude
            (differential pair) or offset binary (bias).
        widths: the slice widths.
        cfg: hardware settings.
        tile: array size (weight columns; a unit column comes on top).
        generator: random source for variation and faults (and, for a device model that
            changes with time, of the seed of its later reads).
    """
    mapping = cfg.weight_mapping
    check_widths(widths, cfg.g_level, "slice_method of the weights",
                 skip_sign=not mapping.sign_array)
    index = mapping.stored_slices(len(widths))
    scale = torch.tensor([level_scale(widths[i], cfg.g_level, cfg.level_mapping)
                          for i in index], dtype=torch.float64,
                         device=slices.device).view(-1, 1, 1)
    values = slices[list(index)].to(torch.float64)
    k, n = slices.shape[1:]
    columns = torch.arange(n, device=slices.device)
    unit_columns = 0
    if mapping.unit_column:
        # the bias is the offset-binary value of a zero weight, sliced like every weight
        bias = bit_slices(torch.zeros(1, 1, dtype=slices.dtype, device=slices.device), widths,
                          mapping.weight_encoding)[list(index)].to(torch.float64)  # (n_a, 1, 1)
        values, columns = _with_unit_columns(values, bias, tile)
        tile = TileShape(tile.rows, tile.cols + 1)
        unit_columns = n_tiles(n, tile.cols - 1)

    model, cells = cfg.device_model, {}
    values, partner = mapping.split(values)
    positive, cells["positive"] = _conductance(tile_weights(torch.round(values * scale), tile),
                                               cfg, generator)
    negative = None
    if partner is not None:
        negative, cells["negative"] = _conductance(
            tile_weights(torch.round(partner * scale), tile), cfg, generator)
    reference = None
    if mapping.reference_column and not model.exact_reference:
        reference, cells["reference"] = _conductance(
            torch.zeros_like(positive[..., :1]), cfg, generator, faults=False)
    device_state = None
    if model.time_dependent:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=slices.device))
        device_state = DeviceState(model, cells, seed)
    return ProgrammedArrays(positive, negative, index, (k, n), columns, unit_columns,
                            reference_column=mapping.reference_column, reference=reference,
                            device_state=device_state)


def level_weights(widths, arrays: ProgrammedArrays, cfg: CrossbarConfig) -> torch.Tensor:
    """Shift-add weight of each array per conductance level, float64 ``(n_a,)``: the power of
    two of the slice it holds (negative for a two's complement sign slice) times the value of
    one level in units of that slice."""
    weights = slice_weights(widths, cfg.weight_encoding)
    return torch.tensor([weights[i] / level_scale(widths[i], cfg.g_level, cfg.level_mapping)
                         for i in arrays.slice_index], dtype=torch.float64)


def read_at(arrays: ProgrammedArrays, cfg: CrossbarConfig, t: float) -> ProgrammedArrays:
    """The arrays as a read ``t`` seconds after their programming sees them.

    Returns ``arrays`` itself for a device model that does not change with time; otherwise a
    copy whose ``positive`` / ``negative`` conductances are the model's read conductances at
    ``t`` (:meth:`~mpimpy.devices.models.DeviceModel.read`; stuck cells keep their value). The
    noise of the read is drawn from a generator seeded by the arrays' ``noise_seed`` and ``t``:
    the same arrays read at the same time give bit-identical conductances, and the engine's
    generator is not touched.
    """
    t = validate_time(t)
    state = arrays.device_state
    if state is None:
        return arrays
    model = state.model
    generator = torch.Generator(device=arrays.positive.device).manual_seed(
        _time_seed(state.noise_seed, t))

    read = {}
    for name in CELL_GROUPS:  # one generator, a fixed order: reproducible
        cells = state.cells.get(name)
        if cells is None:
            continue
        programmed = getattr(arrays, name)
        g = model.read(programmed, cells, t, cfg, generator)
        read[name] = torch.where(cells["stuck"], programmed, g) if "stuck" in cells else g
    return dataclasses.replace(arrays, **read)


def _time_seed(noise_seed: int, t: float) -> int:
    """A seed for the reads at time ``t`` of the arrays whose noise seed is ``noise_seed``."""
    digest = hashlib.sha256(f"{noise_seed}:{float(t).hex()}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def _with_unit_columns(values: torch.Tensor, bias: torch.Tensor, tile: TileShape):
    """Weight slices ``(n_a, K, N)`` with one unit column after every ``tile.cols`` columns.

    Returns the slices ``(n_a, K, Tn * (cols + 1))`` (the last column of arrays zero-padded
    before its unit column, so the unit column always sits at the far end of its word lines) and
    the read columns: the N weight columns, then the Tn unit columns.
    """
    n_a, k, n = values.shape
    tn = n_tiles(n, tile.cols)
    padded = torch.nn.functional.pad(values, (0, tn * tile.cols - n)).view(n_a, k, tn, tile.cols)
    unit = bias.view(n_a, 1, 1, 1).expand(n_a, k, tn, 1)
    with_unit = torch.cat([padded, unit], dim=-1).reshape(n_a, k, tn * (tile.cols + 1))
    weight_index = torch.arange(n, device=values.device)
    weight_columns = weight_index // tile.cols * (tile.cols + 1) + weight_index % tile.cols
    unit_index = torch.arange(tn, device=values.device) * (tile.cols + 1) + tile.cols
    return with_unit, torch.cat([weight_columns, unit_index])


__all__ = ["CELL_GROUPS", "DEVICE_MODELS", "DeviceModel", "DeviceState", "ProgrammedArrays",
           "check_widths", "level_weights", "program", "read_at", "resolve_device_model"]
