"""Where a converted model loses accuracy: per-layer output SNR against the digital layer."""

from __future__ import annotations

import math

import torch
from torch import nn

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
