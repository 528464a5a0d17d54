"""The original mPimPy's compatibility surface: what code written for it still calls.

Here, because they exist only for that code:

* :data:`ENGINE_ARGUMENTS`: ``DPETensor``'s positional argument order (the original's first
  twelve, ``HGS, LGS, g_level, var, vnoise, wire_resistance, rdac, radc, vread,
  stuck_fault_ratio, stuck_fault_value, read_noise``, then the settings added since, in the
  order they were added), from which :func:`engine_signature` builds its signature; the
  settings themselves (defaults, units, ranges) are declared once, in
  :class:`mpimpy.config.CrossbarConfig` and :class:`mpimpy.config.EngineOptions`;
* :class:`OriginalEngineAttributes`: hardware settings read as engine attributes
  (``engine.HGS``, ``engine.radc``), the original's only way to read them.

Elsewhere, because they are the API itself, not a second way to it:

* ``DPETensor.MapReduceDot`` (:mod:`mpimpy.engine`): the product, under the original's name
  (``engine(x, mat)`` calls it);
* ``SlicedData.slice_data_imp`` and the ``slice_method``, ``bw_e``, ``paral_size``,
  ``quant_gran`` arguments (:mod:`mpimpy.slicing`): slicing an operand, under the original's
  names; the original's read-outs of a sliced operand (``sliced_data``, ``max_data``,
  ``size()``, ``len()``, the unused ``input_en``) and ``dot_high_dim`` stay in
  :mod:`mpimpy.slicing`, in the section "what code written for the original mPimPy reads",
  because they are computed from the quantization's blocks, which that module owns;
* ``RE``, ``SNR``, ``ABSE`` (:mod:`mpimpy.metrics`): the original's metric names.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

from .config import CrossbarConfig, EngineOptions

#: ``DPETensor``'s arguments in their positional order (see the module docstring).
ENGINE_ARGUMENTS = (
    "HGS", "LGS", "g_level", "var", "vnoise", "wire_resistance", "rdac", "radc", "vread",
    "stuck_fault_ratio", "stuck_fault_value", "read_noise", "mapping", "adc_range", "seed",
    "device", "chunk_elements", "calibration_elements", "unit_column", "level_mapping",
    "input_encoding", "technology", "device_model", "drift_compensation", "t_inference",
    "read_kernel", "compile",
)


def engine_signature() -> inspect.Signature:
    """``DPETensor.__init__``'s signature: ``self``, then every field of
    :class:`~mpimpy.config.CrossbarConfig` and :class:`~mpimpy.config.EngineOptions` in the
    order of :data:`ENGINE_ARGUMENTS`, with the fields' defaults."""
    defaults = {f.name: f.default for cls in (CrossbarConfig, EngineOptions)
                for f in fields(cls)}
    if set(defaults) != set(ENGINE_ARGUMENTS):  # a new setting must get its place here
        raise RuntimeError(f"ENGINE_ARGUMENTS and the settings differ: "
                           f"{sorted(set(defaults) ^ set(ENGINE_ARGUMENTS))}")
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("self", kind)] + [
        inspect.Parameter(name, kind, default=defaults[name]) for name in ENGINE_ARGUMENTS])


class OriginalEngineAttributes:
    """Hardware settings read as engine attributes, as in the original (``engine.HGS``): any
    field of the engine's ``config`` that the engine does not define itself."""

    def __getattr__(self, name):
        config = self.__dict__.get("config")
        if config is not None and name in config.__dataclass_fields__:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")


__all__ = ["ENGINE_ARGUMENTS", "OriginalEngineAttributes", "engine_signature"]
