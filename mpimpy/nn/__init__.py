"""Deep-learning layers on simulated memristor crossbars.

::

    from mpimpy import DPETensor
    from mpimpy import nn as mnn

    engine = DPETensor(var=0.05, radc=2**8, adc_range="calibrated", seed=0)
    hw_model = mnn.convert(model, engine, xblk=[1, 1, 2, 4], mblk=[1, 1, 2, 4])
    mnn.calibrate(hw_model, calibration_images)  # the chip's ADC ranges, frozen
    hw_model.eval()(images)                  # inference on the simulated hardware
    mnn.layer_snr(hw_model, images)          # where the error comes from
    model_again = mnn.to_digital(hw_model)   # plain torch layers with the same weights

* :class:`MemLinear`, :class:`MemConv2d`: drop-in ``nn.Linear`` / ``nn.Conv2d`` whose products
  run on the engine (weights programmed once, inputs sliced per pass, bias digital).
* :func:`calibrate`: set every layer's ADC ranges once, on calibration data, and freeze them
  (saved in ``state_dict()``), so no answer depends on the rest of its batch.
* :func:`convert` / :func:`to_digital`: whole models, both ways; :func:`program` re-programs;
  :func:`set_time` reads the programmed model a time after programming (device drift).
* :func:`cost_report`: energy, latency and area of every layer and per inference
  (:mod:`mpimpy.cost`).
* Training: train a converted model as usual for noise-aware training (new variation each
  step, straight-through gradients back through the weights the arrays held);
  :mod:`mpimpy.nn.training` has the loops and :func:`accuracy_over_programs` evaluates a model
  on several programmings (chips).
"""

from .analysis import NetworkCost, cost_report, layer_snr
from .convert import (
    CONVERTIBLE,
    calibrate,
    convert,
    convertible_layers,
    mem_layers,
    program,
    set_time,
    to_digital,
)
from .layers import MEM_LAYERS, MemConv2d, MemLayerMixin, MemLinear, MemMatmul
from .models import MLP, SmallCNN, build_model
from .training import accuracy, accuracy_over_programs, confusion_matrix, predict, pretrained, train

__all__ = [
    "CONVERTIBLE",
    "MEM_LAYERS",
    "MLP",
    "MemConv2d",
    "MemLayerMixin",
    "MemLinear",
    "MemMatmul",
    "NetworkCost",
    "SmallCNN",
    "accuracy",
    "accuracy_over_programs",
    "build_model",
    "calibrate",
    "confusion_matrix",
    "convert",
    "convertible_layers",
    "cost_report",
    "layer_snr",
    "mem_layers",
    "predict",
    "pretrained",
    "program",
    "set_time",
    "to_digital",
    "train",
]
