"""The simulated product ``y = x @ W`` on memristor crossbars, one stage after another.

Follow one product through :meth:`DPETensor.MapReduceDot`, which calls the stages in order:

1. **quantize and slice** (:mod:`mpimpy.slicing`): both operands are quantized in blocks
   (``SlicedData.slice_data_imp``) and cut into bit slices here;
2. **tile** (:mod:`mpimpy.tiling`): K is split into array row-blocks of ``rows`` word lines;
3. **program** (:mod:`mpimpy.devices`): weight slices become conductances, once per weight
   (the device model's programming noise), stored as the weight's :mod:`mapping <mpimpy.mapping>`
   says; the engine keeps the programmed state (:mod:`mpimpy.programmed`); a read at
   ``t_inference`` seconds after programming sees the device model's conductances at that
   time (drift, relaxation);
4. **drive** (:mod:`mpimpy.peripherals`): input slices become DAC codes (word-line voltages);
5. **read** (:class:`mpimpy.crossbar.ChunkReader`): every input slice meets every weight slice
   on every array, ``I = V @ (G - G_ref)``, with read noise, chunk by chunk as
   :mod:`mpimpy.execution` plans (chunks, read kernel, buffers);
6. **convert** (:class:`mpimpy.peripherals.ChunkConverter`): each column current goes through
   the ADC, its range fixed or calibrated on the currents it converts (then, with
   ``drift_compensation="global"``, each array's output is scaled by its drift gain);
7. **shift-add and rescale** (the same): slice pairs are weighted by powers of two (sign slices
   negative), the mapping's bias is removed, row-blocks are summed with their block scales.
   The ADC and the weighted sum over the slice pairs are one function,
   :func:`mpimpy.peripherals.convert_shift_add`, which ``compile=True`` runs as one compiled
   pass over each chunk's currents (:mod:`mpimpy.jit`).

Every product also leaves its :class:`~mpimpy.schedule.Schedule` in ``engine.last_schedule``:
the arrays, reads, conversions and word lines it used, read off the same tensors, and (when
costs are estimated) the power its reads dissipated. :mod:`mpimpy.cost` turns that into energy,
latency and area; with ``technology=`` the engine does so after every product
(``engine.last_cost``).

Shapes at each stage (``n_x``/``n_a`` input slices / weight arrays, ``Tk`` row-blocks,
``rows`` word lines per array, ``N`` output columns)::

    input integers (M, K) -> DAC codes of its n_x slices (Tk, rows, M, n_x)
    weight integers (K, N) -> slices (n_w, K, N) -> conductances (n_a, Tk, Tn, rows, cols)
        -> read matrix (Tk, rows, n_a * N)
    currents per chunk (Tk', M', n_x, n_a, N) -> ADC codes -> shift-add (Tk', M', N)
        -> rescale and sum over row-blocks (M', N) -> y (M, N)

All analog quantities are kept in *code units*: currents are in units of
``vread / dac_full_scale * (HGS - LGS) / (g_level - 1)`` amperes, so a noise-free product of
integer DAC codes and integer conductance levels is computed exactly in floating point.
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch

from .calibration import (
    PER_ARRAY_ADC_RANGES,
    CalibrationRule,
    check_calibration,
    product_ranges,
)
from .compat import OriginalEngineAttributes, engine_signature
from .config import CrossbarConfig, EngineOptions, validate_time
from .cost import report, resolve_technology
from .crossbar import ChunkReader, exact_read
from .devices import ProgrammedArrays, check_widths, level_weights, program
from .execution import Workspace, plan_chunks, retained_buffer
from .peripherals import (
    ChunkConverter,
    adc_full_scale,
    bias_levels,
    convert_shift_add,
    drive,
    driven_shape,
    input_weights,
    operand_biases,
    shift_add_first,
)
from .programmed import ProgrammedWeight, Programs
from .schedule import Schedule, product_schedule
from .slicing import (
    SlicedData,
    bit_slices,
    check_operand,
    check_sign_slice,
    product_shape,
)
from .tiling import check_block_alignment

#: ``DPETensor(...)``'s arguments: every setting, in the original's positional order
_SIGNATURE = engine_signature()


class DPETensor(OriginalEngineAttributes):
    """A dot-product engine: memristor crossbars with their DACs and ADCs.

    ``DPETensor(...)(x, mat)`` computes the simulated ``x.data @ mat.data`` for two
    :class:`~mpimpy.slicing.SlicedData` operands. The right operand is programmed into arrays the
    first time this engine uses it and keeps its conductances (variation and faults included)
    until :meth:`program` is called again or it is sliced anew. Reads see them
    ``t_inference`` seconds after programming (:meth:`at_time`); changing the time never
    programs again.

    Args:
        HGS, LGS, g_level, var, vnoise, wire_resistance, rdac, radc, vread, stuck_fault_ratio,
        stuck_fault_value, read_noise, mapping, adc_range, unit_column, level_mapping,
        input_encoding, device_model, drift_compensation: hardware settings, documented with
            their units and ranges in :class:`~mpimpy.config.CrossbarConfig`.
        t_inference, seed, device, chunk_elements, calibration_elements, read_kernel, compile,
        technology: run-time options, documented in :class:`~mpimpy.config.EngineOptions`.

    The arguments' positional order is the original mPimPy's
    (:data:`mpimpy.compat.ENGINE_ARGUMENTS`); hardware settings read as attributes too
    (``engine.HGS``, :class:`~mpimpy.compat.OriginalEngineAttributes`).
    """

    def __init__(self, *args, **kwargs):
        try:
            settings = _SIGNATURE.bind(self, *args, **kwargs)
        except TypeError as error:  # as Python words it for an explicit signature
            raise TypeError(f"{type(self).__name__}(): {error}") from None
        settings.apply_defaults()
        values = settings.arguments
        self.config = CrossbarConfig(**{f.name: values[f.name] for f in fields(CrossbarConfig)})
        options = EngineOptions(**{f.name: values[f.name] for f in fields(EngineOptions)})
        self.t_inference, self.device = options.t_inference, options.device
        self.chunk_elements = options.chunk_elements
        self.calibration_elements = options.calibration_elements
        self.read_kernel, self.compile = options.read_kernel, options.compile
        self.technology = None if options.technology is None else \
            resolve_technology(options.technology)
        if isinstance(options.seed, torch.Generator):
            self.generator, self.seed = options.seed, options.seed.initial_seed()
        else:  # no seed: one from torch's global generator, so torch.manual_seed repeats runs
            self.seed = int(torch.randint(0, 2**62, (1,)).item()) if options.seed is None \
                else options.seed
            self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        #: measure the power of every read (``Schedule.array_power``) whatever the
        #: technology; :func:`mpimpy.cost.measuring_power` sets it for a block of products
        self.measure_power = False
        self.last_schedule: Schedule | None = None
        self.last_cost = None
        self.last_read_kernel: str | None = None
        self.last_convert_kernel: str | None = None
        #: the fraction of the last product's conversions whose current lay outside its
        #: frozen ADC range (saturated at an end code); ``None`` without frozen ranges
        self.last_clipped_fraction: float | None = None
        self._programs = Programs()  # the weight operands this engine has programmed

    __init__.__signature__ = _SIGNATURE

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.as_dict().items())
        tech = "" if self.technology is None else f", technology={self.technology.name!r}"
        tech += ", compile=True" if self.compile else ""
        return (f"DPETensor({fields}, t_inference={self.t_inference!r}, seed={self.seed}, "
                f"device='{self.device}'{tech})")

    def at_time(self, t: float) -> DPETensor:
        """Read the programmed arrays ``t`` seconds (finite, >= 0) after their programming from
        now on. Nothing is programmed again: the device model computes what a read sees at
        ``t`` from the conductances programming drew (for ``lognormal``, the same at every
        time); the same programming read at the same time gives bit-identical results. Returns
        the engine: ``engine.at_time(3600)(x, mat)`` reads one hour after programming."""
        self.t_inference = validate_time(t)
        return self

    def check_weight_widths(self, widths, name="slice_method"):
        """Weight slices must fit the devices' levels; two's complement and sign-magnitude
        weights start with the 1-bit sign slice (offset-binary ones, ``mapping="bias"``, don't).
        """
        mapping = self.config.weight_mapping
        if mapping.sign_slice:
            check_sign_slice(widths, name)
        check_widths(widths, self.config.g_level, name, skip_sign=not mapping.sign_array)

    def check_input_widths(self, widths, name="slice_method"):
        """Two's complement and sign-magnitude inputs start with the 1-bit sign slice
        (offset-binary ones don't)."""
        if self.config.input_encoding != "offset_binary":
            check_sign_slice(widths, name)

    # -- stage 3: program -------------------------------------------------------------------
    def program(self, mat: SlicedData, generator: torch.Generator | None = None
                ) -> ProgrammedArrays:
        """(Re)program ``mat`` into this engine's arrays, drawing new variation and faults.

        ``generator`` draws them instead of the engine's own generator (a layer that must
        reproduce its conductances from a seed of its own passes one).
        """
        self._check_weights(mat)
        q, _, _ = mat.role_matrix("weight", mat.paral_size.rows)
        slices = bit_slices(q, mat.slice_method, self.config.weight_encoding)
        arrays = program(slices, mat.slice_method, self.config, mat.paral_size,
                         generator if generator is not None else self.generator)
        self._programs.set(mat, ProgrammedWeight(mat.q, arrays, self.config))
        return arrays

    def holds(self, mat: SlicedData) -> bool:
        """Whether this engine's arrays hold ``mat`` (programmed here, not sliced anew since)."""
        return self._programs.get(mat) is not None

    def programmed_state(self, mat: SlicedData) -> ProgrammedWeight:
        """``mat``'s programmed state (arrays, frozen ADC ranges: :class:`ProgrammedWeight`),
        programming it first if this engine has not yet."""
        if not self.holds(mat):
            self.program(mat)
        return self._programs.get(mat)

    def programmed(self, mat: SlicedData) -> ProgrammedArrays:
        """The arrays holding ``mat``, programming it first if this engine has not yet."""
        return self.programmed_state(mat).arrays

    def read_arrays(self, mat: SlicedData) -> ProgrammedArrays:
        """``mat``'s arrays as a read at ``t_inference`` sees them (programming ``mat`` first if
        this engine has not yet): :func:`mpimpy.devices.read_at`."""
        return self.programmed_state(mat).at(self.t_inference).arrays

    def drift_gain(self, mat: SlicedData, dtype: torch.dtype = torch.float64):
        """The digital gain of every converted column of ``mat``'s arrays at ``t_inference``,
        ``(Tk, n_a * C)``, or ``None``: :meth:`mpimpy.programmed.ProgrammedWeight.drift_gain`."""
        return self.programmed_state(mat).drift_gain(self.t_inference, dtype)

    def effective_weights(self, mat: SlicedData, dtype: torch.dtype = torch.float64
                          ) -> torch.Tensor:
        """The weights ``mat``'s programmed conductances hold, in the units of ``mat.data``.

        The matrix an ideal read multiplies by (exact DACs and ADCs, no read noise):
        ``mat.quantized_data`` changed by programming variation, stuck-at faults, drift at
        ``t_inference`` (and its compensation's gains) and IR drop; programs ``mat`` first if
        needed. Returns ``(K, N)`` (``(K,)`` for a 1-D ``mat``) in ``dtype``, on the device.
        """
        self._check_weights(mat)
        state = self.programmed_state(mat)
        _, scale_w, _ = mat.role_matrix("weight", mat.paral_size.rows)  # (Tk, N)
        w_weight = level_weights(mat.slice_method, state.arrays, self.config)
        weights = state.effective_weights(self.t_inference, dtype, w_weight,
                                          bias_levels(self.config, mat.slice_method, w_weight),
                                          scale_w)
        return weights[:, 0] if mat.data.dim() == 1 else weights

    # -- calibration: the ADC ranges, frozen on the programmed weights -----------------------
    def calibrate(self, x, mat: SlicedData, rule: str | CalibrationRule = "minmax",
                  percentile: float | None = None, accumulate: bool = False):
        """Set ``mat``'s ADC ranges from the sliced input ``x`` (or an iterable of such
        batches) by ``rule`` (``"minmax"``, or ``"percentile"`` with ``percentile`` in
        [50, 100]) and freeze them on its programmed state (:mod:`mpimpy.calibration`);
        ``accumulate`` adds to the ranges of earlier calls. Each batch is read as a product is
        (its Schedule in ``last_schedule``: calibration costs its reads and conversions).
        Returns the :class:`~mpimpy.calibration.AdcRanges` (``None`` for ``radc=None``)."""
        rule = CalibrationRule.resolve(rule, percentile)
        batches = check_calibration(self.config, [x] if isinstance(x, SlicedData) else list(x))
        self._check_weights(mat)
        state = self.programmed_state(mat)
        if not accumulate:
            state.adc_ranges = None
        for batch in batches:
            self._product(batch, mat, rule)
        return state.adc_ranges

    # -- the whole pipeline -------------------------------------------------------------------
    def __call__(self, x: SlicedData, mat: SlicedData) -> torch.Tensor:
        return self.MapReduceDot(x, mat)

    def MapReduceDot(self, x: SlicedData, mat: SlicedData) -> torch.Tensor:
        """Simulated ``x.data @ mat.data``.

        Args:
            x: sliced left operand, ``(..., M, K)`` or ``(K,)``.
            mat: sliced right operand, ``(K, N)`` or ``(K,)``; programmed into arrays.

        Returns:
            ``(..., M, N)`` (or without the dims that were 1-D), in ``x.data``'s floating dtype
            (float64 for integer data), on the engine's device.
        """
        return self._product(x, mat)

    def _product(self, x: SlicedData, mat: SlicedData, rule: CalibrationRule | None = None):
        """The product, or with ``rule`` a calibration read of ``x`` (nothing converted)."""
        cfg, mapping = self.config, self.config.weight_mapping
        check_operand(x, "x", self.device)
        self.check_input_widths(x.slice_method, "x.slice_method")
        self._check_weights(mat)
        # stages 1-2: the quantized, sliced operands, K in row-blocks of the arrays' rows
        tile = mat.paral_size
        qx, scale_x, kblock_x = x.role_matrix("input", tile.rows)  # scales (M, Tk)
        q_w, scale_w, kblock_w = mat.role_matrix("weight", tile.rows)  # scales (Tk, N)
        if qx.shape[1] != q_w.shape[0]:
            raise ValueError(f"inner dimensions differ: x has K={qx.shape[1]} but mat has "
                             f"K={q_w.shape[0]}")
        k, n = q_w.shape
        out_shape, out_dtype = product_shape(x, mat)
        if qx.shape[0] == 0 or k == 0 or n == 0:
            # empty operands: no array is read (no schedule, no cost), and the product is what
            # torch.matmul returns
            self.last_schedule = self.last_cost = None
            return torch.zeros(out_shape, dtype=out_dtype, device=self.device)
        check_block_alignment(kblock_x, k, tile.rows, "x")
        check_block_alignment(kblock_w, k, tile.rows, "mat")
        dtype = torch.float64 if torch.float64 in (x.data.dtype, mat.data.dtype) else torch.float32

        # stage 3: program (once per weight) and the matrices one read at t multiplies by
        fresh = not self.holds(mat)
        state = self.programmed_state(mat)
        arrays, t = state.arrays, self.t_inference
        measure_power = self.measure_power or (
            self.technology is not None and self.technology.array_energy_per_cell is None)
        matrix, noise_matrix, *drive_admittance = state.read_matrices(
            t, dtype, drive_admittance=measure_power)
        gain = state.drift_gain(t, dtype)  # (Tk, n_a * C) or None
        # the same matrix in int8 with its peak, for a noise-free read of integer levels (with
        # input noise the codes are not integers: no need to look)
        integer_matrix = state.integer_matrix(t, dtype) \
            if cfg.read_noise == 0 and cfg.vnoise == 0 else None

        # stage 4: drive the inputs through the DACs, row-block by row-block. A mapping that
        # stores a bias reads it on every input: without unit columns it is removed
        # digitally, from the noise-free DAC codes summed per row-block.
        size = math.prod(driven_shape(qx.shape, x.slice_method, tile, cfg.input_encoding))
        driven_codes = drive(qx, x.slice_method, cfg.rdac, cfg.vnoise, tile, self.generator,
                             dtype, encoding=cfg.input_encoding, level_mapping=cfg.level_mapping,
                             return_sums=mapping.digital_bias,
                             out=retained_buffer("codes", size, dtype, self.device),
                             scratch=retained_buffer("code noise", size, dtype, self.device)
                             if cfg.vnoise > 0 else None)
        # codes (Tk, rows, M, n_x); their noise-free sums (Tk, M, n_x) when needed
        codes, code_sums = driven_codes if mapping.digital_bias else (driven_codes, None)
        if k < tile.rows:
            # One row-block, partly filled: the word lines past K carry no input, so they need
            # not be multiplied (the ADC's full scale below still counts every row).
            matrix, noise_matrix = (None if m is None else m[:, :k] for m in
                                    (matrix, noise_matrix))
            if integer_matrix is not None:
                integer_matrix = (integer_matrix[0][:, :k], integer_matrix[1])

        # shift-add weights per code unit of each input slice read and each array; the ADC's
        # worst-case current per input slice
        x_weight, dac_full = input_weights(x.slice_method, cfg)
        w_weight = level_weights(mat.slice_method, arrays, cfg)
        full_scale = adc_full_scale(dac_full, tile.rows, cfg)
        self.last_schedule = product_schedule(
            cfg, x.slice_method, mat.slice_method, arrays, codes, dac_full, fresh,
            drive_admittance[0] if measure_power else None, x.static_range is not None)
        bias_per_vector, bias_per_column = operand_biases(
            cfg, x.slice_method, mat.slice_method, q_w, code_sums, x_weight, w_weight, tile.rows,
            dtype)

        if cfg.radc is None and cfg.read_noise == 0:  # a linear read: shift-add first
            codes, matrix, x_weight, w_weight = shift_add_first(codes, matrix, gain, x_weight,
                                                                w_weight)
            gain = integer_matrix = None  # in the matrix; its entries weighted sums of levels

        # stages 5-7 chunk by chunk: read (crossbar), convert and shift-add (peripherals)
        n_a = len(w_weight)
        n_cols = matrix.shape[-1] // n_a
        exact = exact_read(codes, integer_matrix)  # (int8 matrix, largest |current|) or None
        plan = plan_chunks(codes, n_a, n_cols, arrays.tile.cols, cfg.radc is not None
                           and cfg.adc_range in PER_ARRAY_ADC_RANGES, exact is not None,
                           arrays.unit_columns, self.chunk_elements, self.read_kernel)
        self.last_read_kernel = plan.kernel
        workspace = Workspace(codes.dtype, self.device)
        compiled = self.compile and convert_shift_add.runs_compiled(self.device)
        frozen, recorder = product_ranges(cfg, state, rule, codes.shape, n_a, self.device)
        converter = ChunkConverter(
            cfg, codes, pair_weight=(x_weight.view(-1, 1) * w_weight.view(1, -1)).flatten(),
            full_scale=full_scale, n_a=n_a, n_cols=n_cols, n=n_cols - arrays.unit_columns,
            arrays=arrays, plan=plan, workspace=workspace, exact=exact,
            scale_x=scale_x.to(dtype), scale_w=scale_w.to(dtype),
            bias_per_vector=bias_per_vector, bias_per_column=bias_per_column, gain=gain,
            calibration_elements=self.calibration_elements, compiled=compiled,
            generator=self.generator, frozen=frozen, recorder=recorder)
        reader = ChunkReader(codes, exact[0] if plan.int8_read else matrix, noise_matrix, n_a,
                             plan, workspace, cfg.read_noise, self.generator)
        y = torch.zeros(codes.shape[2], n_cols - arrays.unit_columns, dtype=codes.dtype,
                        device=self.device)
        for group in plan.groups:
            ranges, kept = converter.ranges(group, reader)  # a calibrated ADC reads first
            for index, chunk in enumerate(group if rule is None else ()):
                currents = reader.read(chunk) if kept is None else kept[index]
                converter.add(y, chunk, currents, **ranges)
            del kept  # the next group's currents take their place
        if recorder is not None:  # freeze the ranges found (with those of earlier batches)
            recorder.freeze(state)
        self.last_clipped_fraction = None if frozen is None else \
            float(converter.clipped / max(converter.conversions, 1))
        # (a compile that fails falls back to the eager passes, and says so from now on)
        self.last_convert_kernel = "compiled" if self.compile and \
            convert_shift_add.runs_compiled(self.device) else "eager"
        if self.technology is not None:  # stage 8: price what the product did
            self.last_cost = report(self.last_schedule, self.technology)
        return y.reshape(out_shape).to(out_dtype)

    def _check_weights(self, mat):
        """``mat`` must be a sliced operand on this device, 1-D or 2-D (it is programmed)."""
        check_operand(mat, "mat", self.device)
        if mat.data.dim() > 2:
            raise ValueError(f"mat must be 1-D or 2-D (the programmed weights), got shape "
                             f"{tuple(mat.data.shape)}")
        self.check_weight_widths(mat.slice_method, "mat.slice_method")



__all__ = ["DPETensor"]
