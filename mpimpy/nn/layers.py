"""Memristive drop-in replacements for ``nn.Linear`` and ``nn.Conv2d``.

Each layer computes its matrix product on simulated crossbars (:class:`mpimpy.DPETensor`):

* the **weights** are quantized, sliced and *programmed* once; the programming variation and
  stuck faults drawn then are kept until the weights change (detected through the weight
  tensor's version counter and storage) or :meth:`MemLayerMixin.program` is called;
* the **inputs** are quantized and sliced on every forward pass, and drive the arrays through
  the DACs (voltage noise and read noise are drawn from ``engine.generator`` on each read);
* the **bias** is added digitally, in floating point.

Reproducible conductances
    Every layer has a buffer ``prog_seed`` (an int64 scalar, saved in ``state_dict()``). In eval
    mode the weights are programmed with a generator seeded from it, so the conductances are a
    function of (weights, ``prog_seed``, engine settings): a model saved and loaded evaluates
    bit for bit the same when the engine has no per-read noise (``vnoise = read_noise = 0``),
    and the same given the same ``engine.generator`` state otherwise. ``program()`` draws a new
    seed (from torch's global generator, so ``torch.manual_seed`` makes it repeatable) or takes
    one.

Calibrated ADC ranges
    With a frozen ``adc_range`` (``"calibrated"``, ``"calibrated-symmetric"``), calibrate a
    converted model once on calibration data (:func:`mpimpy.nn.calibrate`): every layer's ADC
    ranges are then frozen on its programmed arrays and saved in ``state_dict()`` (buffers
    ``adc_low`` and ``adc_high``, one range set per group; empty until calibrated), so a model
    loaded in eval mode reproduces its outputs. ``program()`` clears them (a new chip);
    calibrate again after changing the weights. Each layer reports the fraction of its last
    forward's conversions that saturated against them (``last_clipped_fraction``).

Training
    The forward pass sees the simulated hardware; the backward pass is a straight-through
    gradient computed digitally (see :class:`MemMatmul`): ``grad_W = grad^T @ x`` passes
    straight through quantization, slicing and the devices, and ``grad_x = grad @ W_prog`` goes
    back through the weights the programmed arrays hold (``backward_weights="programmed"``,
    the default) or through the float weights (``"ideal"``). In train mode the weights are
    re-programmed on every forward with fresh variation (a seed drawn from torch's global
    generator; ``prog_seed`` is left alone), so a model can be trained noise-aware. In eval mode
    the conductances are held fixed.

    Why ``"programmed"``: under strong variation the arrays' weights differ from the float ones
    by much more than a quantization step (at var 0.3 with the offset mapping, a negative INT8
    weight is off by about 0.35 of the block's largest weight), so the gradient that reaches
    earlier layers through the float weights belongs to a different network than the one that
    produced the loss. Measured on the small CNN on MNIST (offset mapping, var 0.3, 4 epochs of
    fine-tuning at lr 1e-3): the training loss rose from 0.25 to 0.44 with ``"ideal"`` and fell
    from 0.17 to 0.10 with ``"programmed"``.

"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..calibration import AdcRanges, CalibrationRule
from ..config import TileShape, resolve_device
from ..engine import DPETensor
from ..slicing import SlicedData, parse_slice_method

#: Default number of input-matrix elements (rows x K) one engine call may hold. Larger inputs
#: (big batches, im2col of big images) are cut into row chunks so memory stays bounded.
DEFAULT_CHUNK_ELEMENTS = 2**21

#: What the backward pass multiplies the output gradient by to reach the inputs.
BACKWARD_WEIGHTS = ("programmed", "ideal")


def _new_seed(generator: torch.Generator | None = None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def _take_parameters(target: nn.Module, source: nn.Module) -> nn.Module:
    """Copy ``source``'s weight, bias and train/eval mode into ``target``; returns ``target``."""
    if isinstance(source.weight, nn.parameter.UninitializedParameter):
        raise ValueError("the layer's weights are not initialized yet (a lazy module): run "
                         "a forward pass before converting it")
    with torch.no_grad():
        target.weight.copy_(source.weight)
        if source.bias is not None:
            target.bias.copy_(source.bias)
    return target.train(source.training)


class MemMatmul(torch.autograd.Function):
    """``y[g] = x[g] @ W[g]^T`` on the simulated crossbars, straight-through gradient.

    Args (of :meth:`apply`):
        x: ``(G, M, K)`` inputs (one matrix per group).
        weight: ``(G, N, K)`` weights, torch layout (``out x in``), the float values.
        layer: the :class:`MemLayerMixin` whose programmed arrays compute the forward.

    Backward (digital, from the un-quantized float inputs): ``grad_W = grad^T @ x``, and
    ``grad_x = grad @ W_prog`` where ``W_prog`` is the layer's ``backward_weights``: the
    weights the arrays held during the forward (:meth:`mpimpy.DPETensor.effective_weights`:
    quantized, with variation, faults and IR drop; ``"programmed"``) or the float weights
    (``"ideal"``, the gradient of the ideal product).
    """

    @staticmethod
    def forward(ctx, x, weight, layer):
        ctx.save_for_backward(x, weight)
        # the arrays of this forward: in train mode the next forward programs new ones
        ctx.engine, ctx.mats, ctx.backward_weights = layer.engine, layer._mats, \
            layer.backward_weights
        return layer._simulate(x)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.to(x.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            if ctx.backward_weights == "programmed":
                dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
                held = torch.stack([ctx.engine.effective_weights(mat, dtype)
                                    for mat in ctx.mats])  # (G, K, N)
                grad_x = torch.matmul(grad, held.transpose(1, 2).to(x.dtype))
            else:
                grad_x = torch.matmul(grad, weight.to(x.dtype))
        if ctx.needs_input_grad[1]:
            grad_w = torch.matmul(grad.transpose(1, 2), x).to(weight.dtype)
        return grad_x, grad_w, None


class MemLayerMixin:
    """What :class:`MemLinear` and :class:`MemConv2d` share: settings, programming, simulation.

    Settings (keyword arguments of both layers):
        engine: the :class:`mpimpy.DPETensor` (hardware settings, device, read-noise generator).
        xblk, mblk: slice widths of the inputs and of the weights, sign slice first
            (default INT8 ``(1, 1, 2, 4)``).
        bw_e: exponent bits (block floating point) of inputs and weights; ``None`` for INT.
        quant_gran: quantization blocks of the weights (see :class:`mpimpy.SlicedData`; strings
            name rows and columns of the ``K x N`` matrix). Default ``None``: one block per
            array tile.
        x_quant_gran: quantization blocks of the inputs (the ``M x K`` matrix of input vectors;
            a tuple is in array orientation). Default ``None``: one scale per input vector and
            array row-block, ``(paral_size[0], 1)``, so a sample's result does not depend on
            the other samples of its batch (except through a calibrated ADC range).
        paral_size: array size ``(rows, cols)``; default (64, 64).
        prog_seed: seed of the eval-mode programming; default drawn from torch's global
            generator.
        backward_weights: ``"programmed"`` (default) or ``"ideal"``: the weights the gradient
            goes back through to the inputs, see :class:`MemMatmul`.
        chunk_elements: at most this many input-matrix elements (rows x K) per engine call;
            larger inputs are cut into row chunks (each chunk is one product, so with
            ``adc_range="calibrated"`` each chunk calibrates its own range).
    """

    _mem_settings = ("xblk", "mblk", "bw_e", "quant_gran", "x_quant_gran", "paral_size",
                     "chunk_elements", "backward_weights")

    def _init_mem(self, engine, xblk, mblk, bw_e, quant_gran, x_quant_gran, paral_size,
                  prog_seed, chunk_elements, backward_weights):
        if not isinstance(engine, DPETensor):
            raise TypeError(f"engine must be an mpimpy.DPETensor, got {type(engine).__name__}")
        self.engine = engine
        self.xblk = parse_slice_method(xblk, "xblk")
        self.mblk = parse_slice_method(mblk, "mblk")
        engine.check_weight_widths(self.mblk, "mblk")
        self.bw_e = bw_e
        self.quant_gran = quant_gran
        tile = TileShape.parse(paral_size)
        self.paral_size = (tile.rows, tile.cols)
        self.x_quant_gran = (tile.rows, 1) if x_quant_gran is None else x_quant_gran
        # validate every setting now (SlicedData checks bw_e, paral_size and quant_gran)
        self._x_operand()
        self._w_operand()
        if isinstance(chunk_elements, bool) or not isinstance(chunk_elements, int) \
                or chunk_elements < 1:
            raise ValueError(f"chunk_elements must be a positive integer, got {chunk_elements!r}")
        self.chunk_elements = chunk_elements
        if backward_weights not in BACKWARD_WEIGHTS:
            raise ValueError(f"backward_weights must be one of {BACKWARD_WEIGHTS}, got "
                             f"{backward_weights!r}")
        self.backward_weights = backward_weights
        if prog_seed is None:
            prog_seed = _new_seed()
        if isinstance(prog_seed, bool) or not isinstance(prog_seed, int) or prog_seed < 0:
            raise ValueError(f"prog_seed must be a non-negative int or None, got {prog_seed!r}")
        self.register_buffer("prog_seed", torch.tensor(prog_seed, dtype=torch.int64,
                                                       device=self.weight.device))
        # the frozen ADC ranges, per group (empty: not calibrated)
        for name in ("adc_low", "adc_high"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.float64,
                                                   device=self.weight.device))
        #: the rule of a calibration in progress (:func:`mpimpy.nn.calibrate`), else ``None``
        self.calibrating: CalibrationRule | None = None
        #: the fraction of the last forward's conversions that saturated against frozen ADC
        #: ranges, or ``None`` (no frozen ranges)
        self.last_clipped_fraction: float | None = None
        self._mats = None  # one programmed SlicedData per group
        self._key = None  # what the programmed arrays were made from
        self._programmed_weight = None  # the weights the arrays hold, to detect .data edits
        #: the :class:`mpimpy.cost.Schedule` of the last forward pass, one per group (what
        #: :func:`mpimpy.nn.cost_report` prices)
        self.last_schedules = []

    # -- operands ----------------------------------------------------------------------------
    def _x_operand(self):
        return SlicedData(self.xblk, bw_e=self.bw_e, paral_size=self.paral_size,
                          quant_gran=self.x_quant_gran, device=self.engine.device)

    def _w_operand(self):
        return SlicedData(self.mblk, bw_e=self.bw_e, paral_size=self.paral_size,
                          quant_gran=self.quant_gran, device=self.engine.device, is_weight=True)

    def mem_settings(self) -> dict:
        """The layer's slicing settings, as keyword arguments (for copying a layer)."""
        return {name: getattr(self, name) for name in self._mem_settings}

    def _weight_groups(self) -> torch.Tensor:
        """The weights as ``(G, N, K)``: ``G`` groups of ``N`` outputs by ``K`` inputs."""
        raise NotImplementedError

    # -- programming -------------------------------------------------------------------------
    def _state_key(self):
        w = self.weight
        return (w._version, w.data_ptr(), w.dtype, w.device, tuple(w.shape),
                int(self.prog_seed), id(self.engine), self.mem_settings().__repr__())

    def program(self, seed: int | None = None) -> None:
        """Program the current weights now with new variation and faults.

        ``seed`` becomes the layer's ``prog_seed`` (saved in its state); by default a new one is
        drawn from torch's global generator. The conductances are then held (in eval mode) until
        the weights change or ``program`` is called again.
        """
        if seed is None:
            seed = _new_seed()
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.prog_seed.fill_(seed)
        self.adc_low, self.adc_high = (v.new_zeros(0) for v in (self.adc_low, self.adc_high))
        self._program(seed)

    def _program(self, seed: int) -> None:
        engine = self.engine
        weight = self._weight_groups().detach()
        if resolve_device(weight.device) != engine.device:
            raise ValueError(f"{type(self).__name__}: the weights are on {weight.device} but the "
                             f"engine runs on {engine.device}; move the model or make the "
                             f"engine with device={weight.device}")
        generator = torch.Generator(device=engine.device).manual_seed(seed)
        mats = []
        for w in weight:  # one set of arrays per group: (K, N) with K along the word lines
            mat = self._w_operand()
            mat.slice_data_imp(engine, w.t())
            engine.program(mat, generator=generator)
            mats.append(mat)
        self._mats = mats
        self._key = self._state_key()
        # what was programmed: edits through weight.data do not bump weight._version
        self._programmed_weight = self.weight.detach().clone()

    def _ensure_programmed(self) -> None:
        if self.training:
            # noise-aware training: new variation on every step, prog_seed left alone
            self._program(_new_seed())
            self._key = None  # re-program for eval
        elif (self._mats is None or self._key != self._state_key()
              or not all(self.engine.holds(mat) for mat in self._mats)
              or not torch.equal(self._programmed_weight, self.weight.detach())):
            self._program(int(self.prog_seed))
            if self.adc_low.numel():  # the ranges calibrated on this programming
                for mat, low, high in zip(self._mats, self.adc_low, self.adc_high, strict=True):
                    self.engine.programmed_state(mat).adc_ranges = AdcRanges(
                        low.to(self.engine.device), high.to(self.engine.device),
                        CalibrationRule(), 0)

    def freeze_calibration(self) -> None:
        """Keep the ADC ranges a calibration froze on the programmed arrays in the layer's
        buffers (``state_dict()``); called by :func:`mpimpy.nn.calibrate`."""
        ranges = [self.engine.programmed_state(mat).adc_ranges for mat in self._mats]
        if all(r is not None for r in ranges):
            device = self.adc_low.device
            self.adc_low = torch.stack([r.low for r in ranges]).to(device)
            self.adc_high = torch.stack([r.high for r in ranges]).to(device)

    @property
    def programmed_operands(self) -> list[SlicedData]:
        """The programmed weight operands (one per group), programming first if needed."""
        self._ensure_programmed()
        return list(self._mats)

    # -- the simulated product ---------------------------------------------------------------
    def _simulate(self, x: torch.Tensor) -> torch.Tensor:
        """``(G, M, K)`` inputs -> ``(G, M, N)`` simulated outputs on the programmed arrays."""
        engine = self.engine
        if resolve_device(x.device) != engine.device:
            raise ValueError(f"{type(self).__name__}: the input is on {x.device} but the engine "
                             f"runs on {engine.device}")
        groups, m, k = x.shape
        rows = max(1, self.chunk_elements // max(k, 1))
        if self.calibrating is not None:
            # calibration reads every group's arrays, then hands the next layer the ideal
            # product (its own calibration data): one read pass, no conversion
            for g, mat in enumerate(self._mats):
                for start in range(0, m, rows):
                    xs = self._x_operand()
                    xs.slice_data_imp(engine, x[g, start:start + rows], transpose=True)
                    engine.calibrate(xs, mat, self.calibrating, accumulate=True)
            return torch.matmul(x, self._weight_groups().detach().transpose(1, 2).to(x.dtype))
        outs, schedules, clipped = [], [], []
        for g, mat in enumerate(self._mats):
            parts, schedule = [], None
            for start in range(0, max(m, 1), rows):  # an empty batch still makes one (empty) call
                xs = self._x_operand()
                xs.slice_data_imp(engine, x[g, start:start + rows], transpose=True)
                parts.append(engine(xs, mat))
                if engine.last_clipped_fraction is not None:
                    clipped.append((engine.last_clipped_fraction, len(parts[-1])))
                # the chunks ran on the same arrays, one after the other (an empty one ran
                # nothing)
                if engine.last_schedule is not None:
                    schedule = engine.last_schedule if schedule is None else \
                        schedule.merge(engine.last_schedule)
            outs.append(parts[0] if len(parts) == 1 else torch.cat(parts))
            schedules.append(schedule)
        self.last_schedules = schedules
        # (a chunk's conversions are proportional to its vectors)
        self.last_clipped_fraction = sum(f * n for f, n in clipped) / max(
            sum(n for _, n in clipped), 1) if clipped else None
        y = torch.stack(outs)
        return y.to(x.device)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``(G, M, K)`` -> ``(G, M, N)`` through :class:`MemMatmul`."""
        self._ensure_programmed()
        return MemMatmul.apply(x, self._weight_groups(), self)

    def _mem_extra_repr(self) -> str:
        bw = "" if self.bw_e is None else f", bw_e={self.bw_e}"
        return (f"xblk={list(self.xblk)}, mblk={list(self.mblk)}{bw}, "
                f"paral_size={tuple(self.paral_size)}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A digital model's state (no prog_seed) loads too: the layer keeps its own seed.
        seed = state_dict.get(prefix + "prog_seed")
        if isinstance(seed, torch.Tensor) and (
                seed.numel() != 1 or seed.dtype.is_floating_point or seed.is_complex()
                or seed.dtype == torch.bool or int(seed) < 0):
            raise ValueError(f"{prefix}prog_seed in the state dict must be a non-negative "
                             f"integer scalar, got {seed!r}")
        # the ADC ranges take the saved shape (empty: not calibrated); a state without them
        # (saved before calibration was a stage) leaves the layer uncalibrated
        for name in ("adc_low", "adc_high"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, torch.Tensor):
                setattr(self, name, torch.empty_like(saved, dtype=torch.float64,
                                                     device=self.prog_seed.device))
            else:
                setattr(self, name, getattr(self, name).new_zeros(0))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._mats = None  # program again in eval, with the loaded seed and ranges
        for name in ("prog_seed", "adc_low", "adc_high"):
            if prefix + name in missing_keys:
                missing_keys.remove(prefix + name)


class MemLinear(MemLayerMixin, nn.Linear):
    """``nn.Linear`` whose product runs on simulated memristor crossbars.

    ``y = x @ W^T + b`` with ``W^T`` (``in_features x out_features``) programmed into arrays
    (K = in_features word lines, N = out_features bit lines) and ``b`` added digitally.
    Accepts inputs ``(*, in_features)`` like ``nn.Linear``. Settings: see
    :class:`MemLayerMixin`.
    """

    def __init__(self, in_features, out_features, bias=True, *, engine, xblk=(1, 1, 2, 4),
                 mblk=(1, 1, 2, 4), bw_e=None, quant_gran=None, x_quant_gran=None,
                 paral_size=(64, 64), prog_seed=None, chunk_elements=DEFAULT_CHUNK_ELEMENTS,
                 backward_weights="programmed", device=None, dtype=None):
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device,
                           dtype=dtype)
        self._init_mem(engine, xblk, mblk, bw_e, quant_gran, x_quant_gran, paral_size,
                       prog_seed, chunk_elements, backward_weights)

    @classmethod
    def from_linear(cls, linear: nn.Linear, engine, **settings) -> MemLinear:
        """A MemLinear with ``linear``'s weights (copied), on its device and dtype."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    engine=engine, device=linear.weight.device, dtype=linear.weight.dtype,
                    **settings)
        return _take_parameters(layer, linear)

    def to_digital(self) -> nn.Linear:
        """A plain ``nn.Linear`` with this layer's weights (copied)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        return _take_parameters(linear, self)

    def _weight_groups(self):
        return self.weight.unsqueeze(0)

    def digital_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ideal (float) output of this layer for ``x``."""
        return F.linear(x, self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MemLinear: expected inputs (*, {self.in_features}), got "
                             f"{tuple(x.shape)}")
        lead = x.shape[:-1]
        y = self._matmul(x.reshape(1, lead.numel(), self.in_features))[0]
        y = y.reshape(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._mem_extra_repr()}"


class MemConv2d(MemLayerMixin, nn.Conv2d):
    """``nn.Conv2d`` whose product runs on simulated memristor crossbars.

    The input is unfolded (im2col) into a matrix of ``K = in_channels/groups * kh * kw``
    columns and multiplied by the weights, programmed as ``K x N`` arrays with
    ``N = out_channels/groups``; stride, padding (ints, tuples, ``"same"``, ``"valid"``),
    dilation and bias behave as in ``nn.Conv2d``. Only ``padding_mode="zeros"``. Groups are
    programmed on separate arrays and run one engine call per group (a loop over groups, not
    over positions). Big batches are unfolded in chunks of images so that the unfolded matrix
    stays within ``chunk_elements`` (at least one image per chunk). Settings: see
    :class:`MemLayerMixin`.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, engine, xblk=(1, 1, 2, 4),
                 mblk=(1, 1, 2, 4), bw_e=None, quant_gran=None, x_quant_gran=None,
                 paral_size=(64, 64), prog_seed=None, chunk_elements=DEFAULT_CHUNK_ELEMENTS,
                 backward_weights="programmed", device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f"MemConv2d supports padding_mode='zeros' only, got "
                             f"{padding_mode!r}; pad the input with F.pad and use padding=0")
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, bias=bias,
                           padding_mode=padding_mode, device=device, dtype=dtype)
        self._init_mem(engine, xblk, mblk, bw_e, quant_gran, x_quant_gran, paral_size,
                       prog_seed, chunk_elements, backward_weights)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, engine, **settings) -> MemConv2d:
        """A MemConv2d with ``conv``'s settings and weights (copied), on its device and dtype."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv needs an nn.Conv2d, got {type(conv).__name__}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode, engine=engine,
                    device=conv.weight.device, dtype=conv.weight.dtype, **settings)
        return _take_parameters(layer, conv)

    def to_digital(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with this layer's settings and weights (copied)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                         stride=self.stride, padding=self.padding, dilation=self.dilation,
                         groups=self.groups, bias=self.bias is not None,
                         padding_mode=self.padding_mode, device=self.weight.device,
                         dtype=self.weight.dtype)
        return _take_parameters(conv, self)

    def _weight_groups(self):
        g = self.groups
        return self.weight.reshape(g, self.out_channels // g, -1)

    def digital_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ideal (float) output of this layer for ``x``."""
        return self._conv_forward(x, self.weight, self.bias)

    def _out_size(self, h, w, padding):
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ph, pw = padding
        return ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
                (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batched = x.dim() == 4
        if not batched:
            if x.dim() != 3:
                raise ValueError(f"MemConv2d: expected (N, C, H, W) or (C, H, W) inputs, got "
                                 f"{tuple(x.shape)}")
            x = x.unsqueeze(0)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"MemConv2d: expected {self.in_channels} input channels, got "
                             f"{x.shape[1]} (input {tuple(x.shape)})")
        if isinstance(self.padding, str):  # 'same' (possibly asymmetric) or 'valid'
            x = F.pad(x, self._reversed_padding_repeated_twice)
            padding = (0, 0)
        else:
            padding = tuple(self.padding)
        self._ensure_programmed()
        b, _, h, w = x.shape
        oh, ow = self._out_size(h, w, padding)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"MemConv2d: input {tuple(x.shape)} is smaller than the kernel")
        g = self.groups
        k = self.in_channels // g * math.prod(self.kernel_size)
        per_image = oh * ow * k * g
        step = max(1, self.chunk_elements // max(per_image, 1))
        outs = []
        for start in range(0, max(b, 1), step):  # an empty batch still makes one (empty) call
            xb = x[start:start + step]
            cols = F.unfold(xb, self.kernel_size, dilation=self.dilation, padding=padding,
                            stride=self.stride)  # (b', C*kh*kw, L), channel-major
            nb, _, length = cols.shape
            cols = cols.view(nb, g, k, length).permute(1, 0, 3, 2).reshape(g, nb * length, k)
            y = MemMatmul.apply(cols, self._weight_groups(), self)  # (g, b'*L, N)
            n = self.out_channels // g
            y = y.view(g, nb, oh, ow, n).permute(1, 0, 4, 2, 3).reshape(
                nb, self.out_channels, oh, ow)
            outs.append(y)
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view(1, -1, 1, 1)
        return y if batched else y[0]

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._mem_extra_repr()}"


MEM_LAYERS = (MemLinear, MemConv2d)
