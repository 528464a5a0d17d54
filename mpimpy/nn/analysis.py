"""A converted model, layer by layer: where it loses accuracy (output SNR against the digital
layer) and what it costs (energy, latency and area of every layer's schedule)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..cost import CostReport, combine, measuring_power, report, resolve_technology
from .convert import mem_layers


@torch.no_grad()
def layer_snr(model: nn.Module, inputs: torch.Tensor, batch_size: int | None = None
              ) -> dict[str, float]:
    """Output SNR (dB) of every memristive layer of ``model`` on ``inputs``.

    The model runs on ``inputs`` once (in its current mode, no gradients); a forward hook on
    each memristive layer takes the inputs that layer received and the simulated output it
    produced, and compares that output with the ideal float layer on the same inputs
    (``layer.digital_forward``, the bias included). So each layer's SNR is its own error, not
    the error it inherited from the layers before it.

    Args:
        model: a model with :class:`~mpimpy.nn.MemLinear` / :class:`~mpimpy.nn.MemConv2d`
            layers (e.g. from :func:`~mpimpy.nn.convert`).
        inputs: a batch for the model.
        batch_size: run the inputs in batches of this size (default: all at once).

    Returns:
        ``{layer name: SNR in dB}`` in ``named_modules`` order; ``inf`` for an exact layer.
    """
    layers = mem_layers(model)
    if not layers:
        raise ValueError("the model has no memristive layers: convert it first "
                         "(mpimpy.nn.convert)")
    sums = {name: [0.0, 0.0] for name, _ in layers}  # signal energy, noise energy

    def hook(name):
        def record(layer, args, output):
            ideal = layer.digital_forward(args[0]).double()
            sums[name][0] += float((ideal**2).sum())
            sums[name][1] += float(((ideal - output.double()) ** 2).sum())
        return record

    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers]
    try:
        step = batch_size or len(inputs)
        for start in range(0, len(inputs), step):
            model(inputs[start:start + step])
    finally:
        for handle in handles:
            handle.remove()
    out = {}
    for name, (signal, noise) in sums.items():
        # same definition as mpimpy.metrics.SNR, accumulated over batches
        if noise == 0:
            out[name] = math.inf
        elif signal == 0:
            out[name] = -math.inf
        else:
            out[name] = 10.0 * math.log10(signal / noise)
    return out


@dataclass
class NetworkCost:
    """What a converted model costs on ``batch`` inputs (:func:`cost_report`).

    Attributes:
        layers: one row per memristive layer (pandas DataFrame): its name and type, MACs,
            energy (J), latency (s), area (mm^2), energy per MAC (pJ), ADC and DAC conversions,
            arrays and each energy component (``energy_<component>_J``).
        total: the whole forward pass as one :class:`~mpimpy.cost.CostReport`: layers run one
            after the other on their own arrays (no pipelining across layers), their IMAs
            packed into whole tiles.
        batch: how many inputs the forward pass ran.
        layer_reports: ``{layer name: CostReport}``.
        outputs: the model's outputs on the inputs (with ``keep_outputs=True``), so accuracy and
            cost come from the same simulated forward pass; else ``None``.
    """

    layers: Any
    total: CostReport
    batch: int
    layer_reports: dict[str, CostReport]
    outputs: torch.Tensor | None = None

    @property
    def energy_per_inference(self) -> float:
        """J per input."""
        return self.total.energy / self.batch

    @property
    def latency_per_inference(self) -> float:
        """s per input, when the batch streams through each layer's arrays."""
        return self.total.latency / self.batch

    def as_dict(self) -> dict[str, Any]:
        """Totals and per-inference figures as a flat dict (for logging)."""
        out = self.total.as_dict()
        out["energy_per_inference_J"] = self.energy_per_inference
        out["latency_per_inference_s"] = self.latency_per_inference
        out["batch"] = self.batch
        return out


@torch.no_grad()
def cost_report(model: nn.Module, inputs: torch.Tensor, technology="isaac-32nm",
                batch_size: int | None = None, keep_outputs: bool = False,
                **overrides) -> NetworkCost:
    """Energy, latency and area of a converted model's forward pass on ``inputs``.

    The model runs once, in eval mode (the programmed conductances held), with every layer's
    reads measured; each memristive layer's schedule (all its engine calls, its groups on
    their own arrays) is priced with ``technology`` (a preset name, a
    :class:`~mpimpy.cost.Technology`, a dict or a YAML/JSON file; ``overrides`` change
    fields). Digital layers (activations, pooling, the bias) are not costed.

    Args:
        model: a model with memristive layers (:func:`mpimpy.nn.convert`).
        inputs: a batch; its first dimension is the number of inputs.
        technology: see above; default ISAAC's 32 nm components.
        batch_size: run the inputs in batches of this size (default all at once); the batches
            run on the same arrays one after the other.
        keep_outputs: keep the model's outputs (``NetworkCost.outputs``), e.g. to score the
            accuracy of the very forward pass that was priced.

    Returns:
        A :class:`NetworkCost`: per-layer table, total, per-inference energy and latency.
    """
    tech = resolve_technology(technology, **overrides)
    layers = mem_layers(model)
    if not layers:
        raise ValueError("the model has no memristive layers: convert it first "
                         "(mpimpy.nn.convert)")
    if len(inputs) == 0:
        raise ValueError("inputs must hold at least one input")
    schedules: dict[str, list] = {name: [] for name, _ in layers}

    def hook(name):
        def record(layer, args, output):
            runs = schedules[name]
            if not runs:
                runs.extend(layer.last_schedules)
            else:  # the same arrays again (another batch): one after the other
                runs[:] = [a.merge(b) for a, b in zip(runs, layer.last_schedules, strict=True)]
        return record

    was_training = model.training
    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers]
    try:
        model.eval()
        with contextlib.ExitStack() as stack:
            for engine in {id(layer.engine): layer.engine for _, layer in layers}.values():
                stack.enter_context(measuring_power(engine))
            step = batch_size or len(inputs)
            outputs = [model(inputs[start:start + step]) for start in range(0, len(inputs), step)]

    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    import pandas as pd

    rows, per_layer = [], {}
    for name, layer in layers:
        reports = [report(s, tech) for s in schedules[name] if s is not None]
        layer_cost = combine(reports)
        per_layer[name] = layer_cost
        row = {"layer": name, "type": type(layer).__name__, "macs": layer_cost.macs,
               "energy_J": layer_cost.energy, "latency_s": layer_cost.latency,
               "area_mm2": layer_cost.area,
               "energy_per_mac_pJ": layer_cost.energy_per_mac * 1e12,
               "adc_conversions": layer_cost.adc_conversions,
               "dac_conversions": layer_cost.dac_conversions, "arrays": layer_cost.arrays}
        row.update({f"energy_{k}_J": v for k, v in layer_cost.energy_breakdown.items()})
        rows.append(row)
    return NetworkCost(pd.DataFrame(rows), combine(list(per_layer.values()), technology=tech),
                       len(inputs), per_layer, torch.cat(outputs) if keep_outputs else None)
