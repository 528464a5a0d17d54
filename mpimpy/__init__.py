"""mPimPy: simulate matrix products on memristor crossbars as easily as ``np.dot``.

The public API::

    from mpimpy import DPETensor, SlicedData, dot, CrossbarMatmul, RE, SNR, ABSE
    from mpimpy import cost       # energy, latency and area: cost.estimate(engine, x, mat)

``dot`` programs its right operand anew on every call; :class:`CrossbarMatmul` programs a
matrix once and multiplies every input by the same arrays (``mpimpy.apps.CrossbarMatmul``).
"""

from . import cost
from .api import dot
from .apps.matmul import CrossbarMatmul
from .config import CrossbarConfig, TileShape
from .engine import DPETensor
from .metrics import ABSE, RE, SNR, all_metrics, max_abs_error
from .slicing import SlicedData, dot_high_dim

__version__ = "0.1.0"

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
    "__version__",
]
