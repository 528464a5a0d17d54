"""A stage's own torch function, fused into one kernel by ``torch.compile`` when asked.

The passes after a read (the ADC's rounding and clipping, a calibrated range's offset and step,
the shift-add's weighted sum over the slice pairs) each read and write a chunk's currents once
when they run one torch operation after another. Compiled, the same function becomes one loop
that reads every current once. A stage is written once, in plain torch; :class:`Compiled` runs
it either as it is or compiled, with the same operations: the numbers agree to float32
round-off (a fused sum may add its terms in another order than ``torch.matmul``).

Compiling needs a C++ compiler on the CPU (Triton on CUDA) and costs seconds per process
(about 4 s here with torch's on-disk cache warm, 12 s cold; a second or two more for each new
shape or variant), so the engine compiles only when
asked (``DPETensor(compile=True)``): worth it for long runs (DNN inference, many products).
Where compiling fails, the stage warns once, saying why, and runs as it is from then on on
that device type.
"""

from __future__ import annotations

import warnings

import torch

#: Variants of one stage's kernel compiled per process at most (each a few seconds, once)
RECOMPILE_LIMIT = 64


class Compiled:
    """``function`` (a pure function of tensors: no randomness, no side effects), callable as
    it is or compiled.

    ``compiled(*args, compile=True)`` runs the compiled kernel (compiling it on first use),
    ``compile=False`` the function itself. :meth:`runs_compiled` says whether a call with
    ``compile=True`` on a device type compiles.

    The kernel is compiled for any size of axis ``dynamic_dim`` of the first argument (the
    vectors of a chunk: the last chunk of a product has fewer) and for the exact sizes of the
    other axes, which stay fixed through a product; a call may name another axis
    (``dynamic_dim=``) where its first argument is laid out otherwise. (Compiled for any size
    of every axis, the shift-add's small product over the slice pairs is no longer fused:
    several times slower.)
    """

    def __init__(self, function, dynamic_dim: int):
        self.function = function
        self.dynamic_dim = dynamic_dim
        self.__doc__ = function.__doc__
        self._kernel = None
        self.failures: dict[str, str] = {}  # device type -> why compiling failed there

    def runs_compiled(self, device: torch.device) -> bool:
        return device.type not in self.failures

    def __call__(self, *args, compile: bool = False, dynamic_dim: int | None = None, **kwargs):
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        if not compile or not self.runs_compiled(device):
            return self.function(*args, **kwargs)
        if self._kernel is None:
            self._kernel = torch.compile(self.function)
        try:
            torch._dynamo.maybe_mark_dynamic(
                args[0], self.dynamic_dim if dynamic_dim is None else dynamic_dim)
            # One kernel per variant (ADC or none, calibrated or not, dtype, shapes): a study
            # may need more than torch's default 8 before it would run uncompiled. Only the
            # axis marked is compiled for any size.
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT,
                                            automatic_dynamic_shapes=False):
                return self._kernel(*args, **kwargs)
        except Exception as error:  # any failure of the compiler or of its toolchain
            # The function is pure, so running it as it is gives its result; a genuine error
            # in it raises here, and compiling is not blamed for it
            result = self.function(*args, **kwargs)
            first_line = (str(error).strip().splitlines() or [""])[0]
            reason = f"{type(error).__name__}: {first_line[:300]}"
            self.failures[device.type] = reason
            warnings.warn(f"{self.function.__name__} could not be compiled on "
                          f"{device.type} ({reason}); it runs uncompiled from now on",
                          RuntimeWarning, stacklevel=2)
            return result
