"""Turn a torch model into its memristive twin and back."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ..calibration import CalibrationRule, calibration_batches, check_calibration
from ..engine import DPETensor
from .layers import DEFAULT_CHUNK_ELEMENTS, MEM_LAYERS, MemConv2d, MemLinear

#: The layer types :func:`convert` replaces (exact types: subclasses such as the projection
#: inside ``nn.MultiheadAttention``, whose weights are used without calling ``forward``, are
#: left digital).
CONVERTIBLE = (nn.Linear, nn.Conv2d)


def convertible_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every plain ``nn.Linear`` / ``nn.Conv2d`` in ``model``, in
    ``named_modules()`` order (registration order, usually the order they run in)."""
    return [(name, m) for name, m in model.named_modules() if type(m) in CONVERTIBLE]


def _set_child(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, layer)


def convert(model: nn.Module, engine: DPETensor, *, xblk=(1, 1, 2, 4), mblk=(1, 1, 2, 4),
            bw_e=None, quant_gran=None, x_quant_gran=None, paral_size=(64, 64),
            layer_filter: Callable[[str, nn.Module], bool] | None = None,
            keep_first: bool = False, keep_last: bool = False, seed: int | None = None,
            chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, backward_weights: str = "programmed",
            inplace: bool = False) -> nn.Module:
    """Replace the model's ``nn.Linear`` and ``nn.Conv2d`` layers by memristive ones.

    Args:
        model: any ``nn.Module`` (a bare ``nn.Linear``/``nn.Conv2d`` is converted itself).
        engine: the :class:`mpimpy.DPETensor` all converted layers share; it must be on the
            model's device.
        xblk, mblk, bw_e, quant_gran, x_quant_gran, paral_size, chunk_elements,
            backward_weights: settings of every converted layer (see
            :class:`mpimpy.nn.layers.MemLayerMixin`).
        layer_filter: ``f(name, layer) -> bool`` choosing the layers to convert (default all).
        keep_first, keep_last: keep the first / last convertible layer (in ``named_modules``
            order) digital, as is common for the input and classifier layers.
        seed: derive the layers' programming seeds (``prog_seed``) from this int; default: drawn
            from torch's global generator.
        inplace: modify ``model`` itself; by default a deep copy is converted and ``model`` is
            left as it was.

    Returns:
        The converted model (weights copied, training/eval mode kept). Other layers are left
        as they are.

    Raises:
        ValueError: a selected layer cannot be simulated (e.g. ``padding_mode`` other than
            ``"zeros"``, uninitialized lazy weights), naming the layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(engine, DPETensor):
        raise TypeError(f"engine must be an mpimpy.DPETensor, got {type(engine).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    candidates = convertible_layers(model)
    selected = list(candidates)
    if keep_first and candidates:
        selected = [c for c in selected if c[1] is not candidates[0][1]]
    if keep_last and candidates:
        selected = [c for c in selected if c[1] is not candidates[-1][1]]
    if layer_filter is not None:
        selected = [(n, m) for n, m in selected if layer_filter(n, m)]
    seeds = torch.Generator().manual_seed(seed) if seed is not None else None
    settings = dict(xblk=xblk, mblk=mblk, bw_e=bw_e, quant_gran=quant_gran,
                    x_quant_gran=x_quant_gran, paral_size=paral_size,
                    chunk_elements=chunk_elements, backward_weights=backward_weights)
    for name, layer in selected:
        prog_seed = int(torch.randint(0, 2**62, (1,), generator=seeds).item())
        try:
            if isinstance(layer, nn.Conv2d):
                new = MemConv2d.from_conv(layer, engine, prog_seed=prog_seed, **settings)
            else:
                new = MemLinear.from_linear(layer, engine, prog_seed=prog_seed, **settings)
        except (ValueError, TypeError) as err:
            raise type(err)(f"cannot convert layer {name or '<model>'!r} "
                            f"({type(layer).__name__}): {err}") from err
        if name == "":
            return new
        _set_child(model, name, new)
    return model


def to_digital(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Replace every memristive layer by the plain torch layer with its weights.

    By default works on a deep copy; ``inplace=True`` modifies ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, MEM_LAYERS):
        return model.to_digital()
    if not inplace:
        model = copy.deepcopy(model)
    for name, layer in [(n, m) for n, m in model.named_modules() if isinstance(m, MEM_LAYERS)]:
        _set_child(model, name, layer.to_digital())
    return model


def mem_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every memristive layer in ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, MEM_LAYERS)]


def program(model: nn.Module, seed: int | None = None) -> None:
    """Re-program every memristive layer of ``model`` with new variation and faults.

    ``seed``: derive the layers' new ``prog_seed`` from it (default: torch's global generator).
    """
    seeds = torch.Generator().manual_seed(seed) if seed is not None else None
    for _, layer in mem_layers(model):
        layer.program(int(torch.randint(0, 2**62, (1,), generator=seeds).item()))


def set_time(model: nn.Module, t: float) -> nn.Module:
    """Read every memristive layer of ``model`` ``t`` seconds after its programming.

    Sets the read time of the engines the layers use (:meth:`mpimpy.DPETensor.at_time`; the
    layers of a converted model share one engine). Nothing is programmed again: the
    conductances drawn at programming are kept and the engine's device model ages them to
    ``t``. ``t`` is finite and >= 0. Returns ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = mem_layers(model)
    if not layers:
        raise ValueError("the model has no memristive layers: convert it first "
                         "(mpimpy.nn.convert)")
    engines = {id(layer.engine): layer.engine for _, layer in layers}
    for engine in engines.values():
        engine.at_time(t)
    return model


def calibrate(model: nn.Module, data, rule: str | CalibrationRule = "minmax",
              percentile: float | None = None) -> nn.Module:
    """Calibrate every memristive layer of ``model`` once, before inference: each layer's ADC
    ranges are set from calibration data by ``rule`` and frozen on its programmed arrays and
    in its ``state_dict()`` (:mod:`mpimpy.calibration`).

    Args:
        model: a converted model; put in eval mode (its programming is then held).
        data: the model's inputs: one batch (a tensor) or an iterable of batches.
        rule: ``"minmax"`` or ``"percentile"`` (with ``percentile`` in [50, 100]).

    The model runs forward on every batch; each layer reads its arrays with the inputs it
    receives (the earlier layers' ideal outputs: calibration converts nothing, one read pass
    over the data, counted as reads and conversions in the layers' schedules) and its ranges
    take every batch's currents. Layers whose engine has an ideal ADC (``radc=None``) have no
    range to set. Returns ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    rule = CalibrationRule.resolve(rule, percentile)
    layers = [layer for _, layer in mem_layers(model)]
    if not layers:
        raise ValueError("the model has no memristive layers: convert it first "
                         "(mpimpy.nn.convert)")
    batches = calibration_batches(data)
    for layer in layers:
        check_calibration(layer.engine.config, batches)
    model.eval()
    for layer in layers:  # a fresh calibration of the programming in force
        for mat in layer.programmed_operands:
            layer.engine.programmed_state(mat).adc_ranges = None
        layer.calibrating = rule
    try:
        with torch.no_grad():
            for batch in batches:
                model(torch.as_tensor(batch))
    finally:
        for layer in layers:
            layer.calibrating = None
    for layer in layers:
        layer.freeze_calibration()
    return model
