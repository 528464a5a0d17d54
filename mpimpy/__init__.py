"""mPimPy: simulate matrix products on memristor crossbars as easily as ``np.dot``.

The public API::

    from mpimpy import DPETensor, SlicedData, dot, RE, SNR, ABSE

The names are imported on first use (PEP 562), so that ``import mpimpy.cli`` or
``mpimpy.tracking`` does not pay for torch: the ``mpimpy`` command answers ``--help`` at once.
"""

from importlib import import_module

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "dot": ".api",
    "CrossbarConfig": ".config",
    "TileShape": ".config",
    "DPETensor": ".engine",
    "ABSE": ".metrics",
    "RE": ".metrics",
    "SNR": ".metrics",
    "all_metrics": ".metrics",
    "max_abs_error": ".metrics",
    "SlicedData": ".slicing",
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "DPETensor",
    "SlicedData",
    "CrossbarConfig",
    "TileShape",
    "dot",
    "RE",
    "SNR",
    "ABSE",
    "max_abs_error",
    "all_metrics",
    "__version__",
]
