"""mPimPy: simulate matrix products on memristor crossbars as easily as ``np.dot``.

The public API::

    from mpimpy import DPETensor, SlicedData, dot, CrossbarMatmul, RE, SNR, ABSE
    from mpimpy import cost       # energy, latency and area: cost.estimate(engine, x, mat)
    from mpimpy import release_buffers  # the working buffers a thread keeps between products

``dot`` programs its right operand anew on every call; :class:`CrossbarMatmul` programs a
matrix once and multiplies every input by the same arrays (``mpimpy.apps.CrossbarMatmul``).

Where the simulator lives (the engine's stages in the order a product calls them):

* ``config``: every hardware setting (:class:`CrossbarConfig`) and the engine's run-time
  options (``EngineOptions``), declared once with unit, default and range; ``validation``:
  the checks they share;
* ``engine``: :class:`DPETensor`, the product as the list of its stages: ``slicing``
  (quantize, slice), ``tiling`` (row-blocks), ``devices`` (program, device models, drift
  compensation) with ``mapping`` (offset, diffpair, bias: one class each), ``peripherals``
  (DAC drive; ADC ranges, conversion and shift-add), ``crossbar`` (reads, the wire solver);
* ``programmed``: the programmed state of a weight, owned by the engine; ``execution``: chunk
  plan, read kernel, buffer pool; ``jit``: compiled passes;
* ``schedule``: what a product did; ``cost``: what it costs; ``isaac``: ISAAC-CE as a workload;
* ``compat``: what exists only for code written for the original mPimPy (and where the rest
  of the original's names live); ``api``: ``dot``; ``nn``: layers; ``drift``: accuracy over time.

The names are imported on first use (PEP 562), so that ``import mpimpy.cli`` or
``mpimpy.tracking`` does not pay for torch: the ``mpimpy`` command answers ``--help`` at once.
"""

from importlib import import_module

__version__ = "0.1.0"

#: Public name -> the module that defines it (``None``: the name is a submodule).
_EXPORTS = {
    "dot": ".api",
    "CrossbarMatmul": ".apps.matmul",
    "CrossbarConfig": ".config",
    "TileShape": ".config",
    "DPETensor": ".engine",
    "release_buffers": ".execution",
    "ABSE": ".metrics",
    "RE": ".metrics",
    "SNR": ".metrics",
    "all_metrics": ".metrics",
    "max_abs_error": ".metrics",
    "SlicedData": ".slicing",
    "dot_high_dim": ".slicing",
    "cost": None,
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    value = import_module(f".{name}", __name__) if module is None else getattr(
        import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "DPETensor",
    "SlicedData",
    "CrossbarMatmul",
    "CrossbarConfig",
    "TileShape",
    "dot",
    "dot_high_dim",
    "RE",
    "SNR",
    "ABSE",
    "max_abs_error",
    "all_metrics",
    "cost",
    "release_buffers",
    "__version__",
]
