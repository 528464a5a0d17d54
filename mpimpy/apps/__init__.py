"""Applications from the mPimPy references, run with the ideal or the simulated product.

Each algorithm takes a *matmul*, a callable ``matmul(x) -> x @ W`` for its fixed operator
``W`` (see :mod:`mpimpy.apps.matmul`): :class:`IdealMatmul` for the exact answer,
:class:`CrossbarMatmul` to run it on simulated crossbars with ``W`` programmed once.

* :mod:`~mpimpy.apps.dct`: 1-D DCT and 8x8 block-DCT image compression (Li et al., Nature
  Electronics 2018);
* :mod:`~mpimpy.apps.heat`: the 2-D heat equation by explicit finite differences (Zidan et al.,
  Nature Electronics 2018);
* :mod:`~mpimpy.apps.pagerank`: PageRank by power iteration;
* ``metrics``: :mod:`mpimpy.metrics`, the one metrics module (PSNR, Kendall's tau, top-k
  overlap, relative error ``RE``, ...; the reference first in every one);
* :mod:`~mpimpy.apps.track`: logging a run's answer, metric histories and figures.
"""

from mpimpy import metrics
from mpimpy.metrics import kendall_tau, psnr, relative_error, top_k_overlap

from . import dct, heat, pagerank, track
from .matmul import FORMATS, CrossbarMatmul, IdealMatmul, make_matmul

__all__ = [
    "FORMATS",
    "CrossbarMatmul",
    "IdealMatmul",
    "dct",
    "heat",
    "kendall_tau",
    "make_matmul",
    "metrics",
    "pagerank",
    "psnr",
    "relative_error",
    "top_k_overlap",
    "track",
]
