"""The simulated product ``y = x @ W`` on memristor crossbars, one stage after another.

Follow one product through :meth:`DPETensor.MapReduceDot`:

1. **quantize and slice** (:mod:`mpimpy.slicing`): both operands are quantized in blocks
   (``SlicedData.slice_data_imp``) and cut into bit slices here;
2. **tile** (:mod:`mpimpy.tiling`): K is split into array row-blocks of ``rows`` word lines;
3. **program** (:mod:`mpimpy.devices`): weight slices become conductances, once per weight
   (the device model's programming noise); a read at ``t_inference`` seconds after
   programming sees the device model's conductances at that time (drift, relaxation);
4. **drive** (:mod:`mpimpy.peripherals`): input slices become DAC codes (word-line voltages);
5. **read** (:mod:`mpimpy.crossbar`): every input slice meets every weight slice on every array,
   ``I = V @ (G - G_ref)``, with read noise;
6. **convert** (:mod:`mpimpy.peripherals`): each column current goes through the ADC (then,
   with ``drift_compensation="global"``, each array's output is scaled by its drift gain);
7. **shift-add and rescale**: slice pairs are weighted by powers of two (sign slices negative),
   the bias of offset-binary weights is removed (``mapping="bias"``), row-blocks are summed
   with their block scales. The ADC and the weighted sum over the slice pairs are one function,
   :func:`mpimpy.peripherals.convert_shift_add`, which ``compile=True`` runs as one compiled
   pass over each chunk's currents (:mod:`mpimpy.jit`).

Every product also leaves its :class:`~mpimpy.cost.Schedule` in ``engine.last_schedule``: the
arrays, reads, conversions and word lines it used, read off the same tensors, and (when costs
are estimated) the power its reads dissipated. :mod:`mpimpy.cost` turns that into energy,
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

import itertools
import math
import threading

import torch

from .config import CrossbarConfig, level_scale, resolve_device, validate_time
from .cost import Schedule, converter_bits, resolve_technology
from .crossbar import (
    EXACT_FLOAT32_SUM,
    int8_matmul_fits,
    read_currents,
    read_matrix,
    read_noise_matrix,
    read_power,
    small_integer_peak,
)
from .devices import ProgrammedArrays, check_widths, program, read_at
from .devices.compensation import global_drift_gain
from .peripherals import (
    adc_step,
    convert_shift_add,
    dac_full_scale,
    dac_scale,
    drive,
    driven_shape,
    read_slices,
)
from .slicing import SlicedData, bit_slices, check_sign_slice, encoding_bias, slice_weights
from .tiling import check_block_alignment

_engine_ids = itertools.count()


class DPETensor:
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
        t_inference: seconds after programming at which the arrays are read (finite, >= 0;
            default 0), see :meth:`at_time`.
        seed: an int, a ``torch.Generator`` on the engine's device, or ``None`` to draw a seed
            from torch's global generator (so ``torch.manual_seed`` makes runs repeatable). The
            same seed and the same sequence of calls give bit-identical results.
        device: where the simulation runs; default CPU. Operands must live there.
        chunk_elements: how many currents one chunk of work may hold (memory stays bounded by
            about ``4 * chunk_elements`` bytes for float32 beyond the operands; exact integer
            reads use chunks of at most ``2**21``, which keep their currents in cache). Between
            products each thread keeps the working buffers (DAC codes, chunks; those of at most
            128 MB, see :data:`RETAINED_BUFFER_BYTES`) for its next product;
            :func:`release_buffers` frees them.
        calibration_elements: with a calibrated ADC, the currents one calibration needs (for
            ``"calibrated"``, one row-block's, or with inexact reads of a large row-block
            (see :data:`PAIR_MAJOR_CURRENTS`) those of one column block, every array of it side
            by side; the whole product's, for
            ``"calibrated-symmetric"``) are kept between calibrating and converting if they are
            at most this many (512 MB in float32 by default); more, and those of int8 reads
            (cheaper to read again than to keep), are read twice instead.
        read_kernel: how arrays are read. ``"auto"`` (default): a noise-free read of integer
            codes on integer conductance levels (no variation, drift, wires, input or read
            noise; float32 operands) sums its currents exactly on the integer matrix units of
            the CPU or GPU (int8 ``torch._int_mm``) where it has them, every other read in the
            operands' float dtype. ``"float"``: every read in the float dtype. Both give the same
            numbers, element for element; ``engine.last_read_kernel`` says which one the last
            product used (``"int8"``, ``"float32"`` or ``"float64"``).
        compile: ``True`` runs the passes after each chunk's read (the ADC and the shift-add,
            :func:`mpimpy.peripherals.convert_shift_add`) as one kernel compiled by
            ``torch.compile`` (:mod:`mpimpy.jit`): faster for long runs, after a compile of a few
            seconds per process for each new shape of chunk (columns, slices, row-blocks per
            chunk) and ADC variant; the numbers agree with the uncompiled ones to round-off. Where
            compiling fails (no C++ compiler), a warning says why and the passes run
            uncompiled. ``False`` (default): uncompiled. ``engine.last_convert_kernel`` says
            which ran (``"compiled"`` or ``"eager"``).
        technology: a :class:`~mpimpy.cost.Technology`, a preset name (``"isaac-32nm"``), a
            dict of fields or a YAML/JSON file: the engine then estimates the energy, latency
            and area of every product and keeps the last one as ``engine.last_cost`` (a
            :class:`~mpimpy.cost.CostReport`). ``None`` (default): no estimate.
    """

    def __init__(self, HGS=1e-5, LGS=1e-7, g_level=16, var=None, vnoise=0.0,
                 wire_resistance=0.0, rdac=2**4, radc=2**8, vread=0.1, stuck_fault_ratio=0.0,
                 stuck_fault_value=0, read_noise=0.0, mapping="offset", adc_range="full",
                 seed=None, device=None, chunk_elements=2**22, calibration_elements=2**27,
                 unit_column=False, level_mapping="integer", input_encoding="twos_complement",
                 technology=None, device_model="lognormal", drift_compensation="none",
                 t_inference=0.0, read_kernel="auto", compile=False):
        self.config = CrossbarConfig(
            HGS=HGS, LGS=LGS, g_level=g_level, level_mapping=level_mapping, var=var,
            read_noise=read_noise, vnoise=vnoise,
            stuck_fault_ratio=stuck_fault_ratio, stuck_fault_value=stuck_fault_value, rdac=rdac,
            radc=radc, adc_range=adc_range, vread=vread, mapping=mapping,
            input_encoding=input_encoding, unit_column=unit_column,
            wire_resistance=wire_resistance, device_model=device_model,
            drift_compensation=drift_compensation,
        )
        self.t_inference = validate_time(t_inference)
        self.technology = None if technology is None else resolve_technology(technology)
        self.last_schedule: Schedule | None = None
        self.last_cost = None
        self._measure_power = False  # set by mpimpy.cost.estimate for one product
        self.device = resolve_device(device)
        if isinstance(chunk_elements, bool) or not isinstance(chunk_elements, int) \
                or chunk_elements < 1:
            raise ValueError(f"chunk_elements must be a positive integer, got {chunk_elements!r}")
        self.chunk_elements = chunk_elements
        if isinstance(calibration_elements, bool) or not isinstance(calibration_elements, int) \
                or calibration_elements < 0:
            raise ValueError(f"calibration_elements must be a non-negative integer, got "
                             f"{calibration_elements!r}")
        self.calibration_elements = calibration_elements
        if read_kernel not in ("auto", "float"):
            raise ValueError(f"read_kernel must be 'auto' or 'float', got {read_kernel!r}")
        self.read_kernel = read_kernel
        self.last_read_kernel: str | None = None
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False, got {compile!r}")
        self.compile = compile
        self.last_convert_kernel: str | None = None
        if isinstance(seed, torch.Generator):
            if resolve_device(seed.device) != self.device:
                raise ValueError(f"seed: the generator is on {seed.device}, the engine on "
                                 f"{self.device}")
            self.generator, self.seed = seed, seed.initial_seed()
        else:
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
            elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seed must be a non-negative int, a torch.Generator or None, "
                                 f"got {seed!r}")
            self.seed = seed
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._id = next(_engine_ids)

    def __getattr__(self, name):
        # hardware settings read as engine attributes, as in the original (engine.HGS, ...)
        config = self.__dict__.get("config")
        if config is not None and name in config.__dataclass_fields__:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config.as_dict().items())
        tech = "" if self.technology is None else f", technology={self.technology.name!r}"
        tech += ", compile=True" if self.compile else ""
        return (f"DPETensor({fields}, t_inference={self.t_inference!r}, seed={self.seed}, "
                f"device='{self.device}'{tech})")

    def at_time(self, t: float) -> DPETensor:
        """Read the programmed arrays ``t`` seconds after their programming from now on.

        ``t`` is finite and >= 0 (validated here). Nothing is programmed again: the
        conductances that programming drew are kept, and the device model computes what a read
        sees at ``t`` (for ``lognormal``, the same conductances at every time). The same
        programming read at the same time gives bit-identical results. Returns the engine, so
        ``engine.at_time(3600)(x, mat)`` reads one hour after programming.
        """
        self.t_inference = validate_time(t)
        return self

    def check_weight_widths(self, widths, name="slice_method"):
        """Weight slices must fit the devices' levels; two's complement and sign-magnitude
        weights start with the 1-bit sign slice (offset-binary ones, ``mapping="bias"``, don't).
        """
        if self.config.weight_encoding != "offset_binary":
            check_sign_slice(widths, name)
        check_widths(widths, self.config.g_level, name,
                     skip_sign=self.config.mapping == "diffpair")

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
        mat._programmed = (self._id, arrays, {})
        return arrays

    def programmed(self, mat: SlicedData) -> ProgrammedArrays:
        """The arrays holding ``mat``, programming it first if this engine has not yet."""
        if mat._programmed is None or mat._programmed[0] != self._id:
            self.program(mat)
        return mat._programmed[1]

    def _read_cache(self, mat: SlicedData) -> dict:
        """What is computed from ``mat``'s conductances at the read time: kept until the
        weights are programmed again or the time changes (for a device model that does not
        change with time, for good)."""
        self.programmed(mat)
        cache = mat._programmed[2]
        t = self.t_inference if self.config.device_model.time_dependent else 0.0
        if cache.get("t") != t:
            cache["t"], cache["at_t"] = t, {}
        return cache["at_t"]

    def read_arrays(self, mat: SlicedData) -> ProgrammedArrays:
        """``mat``'s arrays as a read at ``t_inference`` sees them (programming ``mat`` first if
        this engine has not yet): :func:`mpimpy.devices.read_at`."""
        cache = self._read_cache(mat)
        if "arrays" not in cache:
            cache["arrays"] = read_at(self.programmed(mat), self.config, self.t_inference)
        return cache["arrays"]

    def _read_matrices(self, mat: SlicedData, dtype, drive_admittance: bool = False):
        """Read matrix and read-noise matrix of ``mat``'s arrays at the read time in ``dtype``,
        cached until the weights are programmed again or the time changes (with wires,
        computing them solves every array's circuit, in ``dtype``). With ``drive_admittance``
        also what the word lines drive (see :func:`mpimpy.crossbar.read_matrix`), from the same
        circuit solution, so the array energy follows the conductances at the read time."""
        cache = self._read_cache(mat)
        if dtype not in cache or (drive_admittance and "drive" not in cache):
            arrays = self.read_arrays(mat)
            noise = read_noise_matrix(arrays, self.config) if self.config.read_noise > 0 else None
            if drive_admittance:
                matrix, cache["drive"] = read_matrix(arrays, self.config, dtype, admittance=True)
            else:
                matrix = read_matrix(arrays, self.config, dtype)
            cache[dtype] = (matrix, None if noise is None else noise.to(dtype))
        return cache[dtype] + ((cache["drive"],) if drive_admittance else ())

    def _integer_matrix(self, mat: SlicedData, dtype) -> tuple[torch.Tensor, float] | None:
        """The read matrix in int8 and its largest ``|entry|``, if it holds small integers
        (float32 integer levels: no variation, drift or wires), else ``None``; cached with the
        read matrices."""
        cache = self._read_cache(mat)
        if ("int8", dtype) not in cache:
            matrix, _ = self._read_matrices(mat, dtype)
            peak = small_integer_peak(matrix)
            cache["int8", dtype] = None if peak is None else (matrix.to(torch.int8), peak)
        return cache["int8", dtype]

    def _drift_gain(self, mat: SlicedData, dtype) -> torch.Tensor | None:
        """The digital gain of every converted column, ``(Tk, n_a * C)`` in ``dtype``, of
        ``drift_compensation="global"`` (:func:`mpimpy.devices.compensation.global_drift_gain`
        of the read matrices at the read time and right after programming), or ``None``
        (no compensation, or a device model that does not change with time)."""
        if self.config.drift_compensation == "none" or \
                not self.config.device_model.time_dependent:
            return None
        cache = self._read_cache(mat)
        if ("gain", dtype) not in cache:
            programmed = mat._programmed[2]
            if "baseline" not in programmed:  # the read-out right after programming
                programmed["baseline"] = read_matrix(self.programmed(mat), self.config)
            now, _ = self._read_matrices(mat, dtype)
            cache["gain", dtype] = global_drift_gain(now, programmed["baseline"],
                                                     self.programmed(mat)).to(dtype)
        return cache["gain", dtype]

    def _bias_level_offset(self, mat: SlicedData, w_weight: torch.Tensor) -> float:
        """What an offset-binary (``mapping="bias"``) read holds beyond the weights, per unit of
        input, in weight units: the bias ``2**(bits-1)`` plus the LGS current every cell adds
        (``LGS / level_step`` levels on each array, shift-added). 0 for the other mappings."""
        if self.config.weight_encoding != "offset_binary":
            return 0.0
        cfg = self.config
        return encoding_bias(mat.slice_method, "offset_binary") + \
            cfg.LGS / cfg.level_step * float(w_weight.sum())

    def _array_weights(self, mat: SlicedData, arrays: ProgrammedArrays) -> torch.Tensor:
        """Shift-add weight of each of ``mat``'s arrays per conductance level, float64
        ``(n_a,)``: the slice's power of two (negative for a two's complement sign slice) times
        the value of one level in units of that slice."""
        cfg = self.config
        weights = slice_weights(mat.slice_method, cfg.weight_encoding)
        return torch.tensor([weights[i] / level_scale(mat.slice_method[i], cfg.g_level,
                                                      cfg.level_mapping)
                             for i in arrays.slice_index], dtype=torch.float64)

    def effective_weights(self, mat: SlicedData, dtype: torch.dtype = torch.float64
                          ) -> torch.Tensor:
        """The weights ``mat``'s programmed conductances hold, in the units of ``mat.data``.

        This is the matrix an ideal read multiplies by (exact DACs and ADCs, no read noise):
        ``mat.quantized_data`` changed by programming variation, stuck-at faults, the device
        model's drift at ``t_inference`` (and the drift compensation's gains) and, with wire
        resistance, IR drop. Noise-free, it equals ``mat.quantized_data``. Programs ``mat``
        first if this engine has not yet.

        Returns:
            ``(K, N)`` (or ``(K,)`` for a 1-D ``mat``) in ``dtype``, on the engine's device.
        """
        self._check_weights(mat)
        arrays = self.programmed(mat)
        cache = self._read_cache(mat)
        if ("effective", dtype) not in cache:  # kept, like the read matrices, until reprogrammed
            _, scale_w, _ = mat.role_matrix("weight", mat.paral_size.rows)  # (Tk, N)
            matrix, _ = self._read_matrices(mat, dtype)  # (Tk, rows, n_a * columns), levels
            gain = self._drift_gain(mat, dtype)
            if gain is not None:
                matrix = matrix * gain.unsqueeze(1)
            w_weight = self._array_weights(mat, arrays)
            tk, rows, _ = matrix.shape
            n = scale_w.shape[1]
            levels = (matrix.view(tk, rows, len(w_weight), -1)
                      * w_weight.to(matrix).view(1, 1, -1, 1)).sum(2)
            levels = self._remove_bias(levels, arrays, self._bias_level_offset(mat, w_weight))
            weights = (levels * scale_w.to(matrix).unsqueeze(1)).reshape(tk * rows, n)
            cache["effective", dtype] = weights[:arrays.shape[0]]
        weights = cache["effective", dtype]
        return weights[:, 0] if mat.data.dim() == 1 else weights

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
        cfg = self.config
        self._check_operand(x, "x")
        self.check_input_widths(x.slice_method, "x.slice_method")
        self._check_weights(mat)
        tile = mat.paral_size
        qx, scale_x, kblock_x = x.role_matrix("input", tile.rows)  # scales (M, Tk)
        q_w, scale_w, kblock_w = mat.role_matrix("weight", tile.rows)  # scales (Tk, N)
        if qx.shape[1] != q_w.shape[0]:
            raise ValueError(f"inner dimensions differ: x has K={qx.shape[1]} but mat has "
                             f"K={q_w.shape[0]}")
        k, n = q_w.shape
        out_dtype = x.data.dtype if x.data.is_floating_point() else torch.float64
        out_shape = x.data.shape[:-1] + ((n,) if mat.data.dim() == 2 else ())
        if x.data.dim() == 1 and not x.transpose:
            out_shape = (n,) if mat.data.dim() == 2 else ()
        if qx.shape[0] == 0 or k == 0 or n == 0:
            # empty operands: no array is read (no schedule, no cost), and the product is what
            # torch.matmul returns
            self.last_schedule = self.last_cost = None
            return torch.zeros(out_shape, dtype=out_dtype, device=self.device)
        check_block_alignment(kblock_x, k, tile.rows, "x")
        check_block_alignment(kblock_w, k, tile.rows, "mat")
        dtype = torch.float64 if torch.float64 in (x.data.dtype, mat.data.dtype) else torch.float32

        # stage 3: program (cached) and derive the matrices one read multiplies by
        fresh = mat._programmed is None or mat._programmed[0] != self._id
        arrays = self.programmed(mat)
        measure_power = self._measure_power or (
            self.technology is not None and self.technology.array_energy_per_cell is None)
        matrix, noise_matrix, *drive_admittance = self._read_matrices(
            mat, dtype, drive_admittance=measure_power)
        gain = self._drift_gain(mat, dtype)  # (Tk, n_a * C) or None
        # the same matrix in int8 with its peak, for a noise-free read of integer levels (with
        # input noise the codes are not integers: no need to look)
        integer_matrix = self._integer_matrix(mat, dtype) \
            if cfg.read_noise == 0 and cfg.vnoise == 0 else None
        # stage 4: drive the inputs through the DACs, row-block by row-block. Offset-binary
        # weights (mapping="bias") read their bias on every input: without unit columns it is
        # removed digitally, from the noise-free DAC codes summed per row-block.
        weight_bias = cfg.mapping == "bias" and not cfg.unit_column
        size = math.prod(driven_shape(qx.shape, x.slice_method, tile, cfg.input_encoding))
        driven_codes = drive(qx, x.slice_method, cfg.rdac, cfg.vnoise, tile, self.generator,
                             dtype, encoding=cfg.input_encoding, level_mapping=cfg.level_mapping,
                             return_sums=weight_bias,
                             out=retained_buffer("codes", size, dtype, self.device),
                             scratch=retained_buffer("code noise", size, dtype, self.device)
                             if cfg.vnoise > 0 else None)
        # codes (Tk, rows, M, n_x); their noise-free sums (Tk, M, n_x) when needed
        codes, code_sums = driven_codes if weight_bias else (driven_codes, None)
        if k < tile.rows:
            # One row-block, partly filled: the word lines past K carry no input, so they need
            # not be multiplied (the ADC's full scale below still counts every row).
            matrix, noise_matrix = (None if m is None else m[:, :k] for m in
                                    (matrix, noise_matrix))
            if integer_matrix is not None:
                integer_matrix = (integer_matrix[0][:, :k], integer_matrix[1])

        # Shift-add weight of each input slice read and of each weight array, per code unit: the
        # slice's power of two (negative for a two's complement sign slice) over the DAC codes
        # or conductance levels one unit of that slice is written as.
        driven = read_slices(x.slice_method, cfg.input_encoding)
        x_weight = torch.tensor([w / c for w, c in zip(
            slice_weights(x.slice_method, cfg.input_encoding),
            dac_scale(x.slice_method, cfg.rdac, cfg.level_mapping), strict=True)],
            dtype=torch.float64)[list(driven)]
        dac_full = [dac_full_scale(x.slice_method, cfg.rdac)[i] for i in driven]
        w_weight = self._array_weights(mat, arrays)
        # The ADC's worst-case current per input slice: every cell at HGS, every input at the
        # DAC's full scale, in code units (levels above LGS; without a reference column the LGS
        # current of every cell comes on top).
        full_levels = (cfg.g_level - 1) + (cfg.LGS / cfg.level_step if cfg.mapping == "bias"
                                           else 0.0)
        full_scale = torch.tensor(dac_full, dtype=torch.float64) * (tile.rows * full_levels)
        self.last_schedule = self._schedule(x, mat, arrays, codes, dac_full, fresh,
                                            drive_admittance[0] if measure_power else None)
        # What the biases of offset-binary operands add, in the units of the shift-added
        # result: the weights' bias times each vector's input sum, per row-block (Tk, M), and
        # the inputs' bias times each column's weight sum, per row-block (Tk, N)
        bias_per_vector = bias_per_column = None
        if weight_bias:
            bias_per_vector = (code_sums.double() @ x_weight.to(codes.device)).mul_(
                self._bias_level_offset(mat, w_weight)).to(dtype)
        if cfg.input_encoding == "offset_binary":
            bias_per_column = self._weight_sums(q_w, tile.rows).mul_(
                encoding_bias(x.slice_method, "offset_binary")).to(dtype)

        if cfg.radc is None and cfg.read_noise == 0:
            # The read is linear, so the shift-add commutes with it: add the slices up first and
            # read each array once instead of once per slice pair.
            codes = (codes * x_weight.to(codes)).sum(-1, keepdim=True)
            tk, rows, _ = matrix.shape
            if gain is not None:  # a digital gain per column commutes with the linear read
                matrix, gain = matrix * gain[:, None, :], None
            matrix = (matrix.view(tk, rows, len(w_weight), -1)
                      * w_weight.to(matrix).view(1, 1, -1, 1)).sum(2)
            x_weight, w_weight = torch.ones(1, dtype=torch.float64), torch.ones(
                1, dtype=torch.float64)
            integer_matrix = None  # weighted sums of levels

        y = self._read_convert_accumulate(codes, matrix, noise_matrix, x_weight, w_weight,
                                          full_scale, scale_x.to(dtype), scale_w.to(dtype),
                                          arrays, bias_per_vector, bias_per_column, gain,
                                          integer_matrix)
        self.last_convert_kernel = "compiled" if self.compile and \
            convert_shift_add.runs_compiled(self.device) else "eager"
        if self.technology is not None:
            from .cost import report

            self.last_cost = report(self.last_schedule, self.technology)

        return y.reshape(out_shape).to(out_dtype)

    # -- stages 5 to 7, chunk by chunk ------------------------------------------------------
    def _chunks(self, tk, m, per_row, elements):
        """(rows of x, row-blocks) index ranges of chunks of at most ``elements`` currents (at
        least one input vector on one row-block per chunk)."""
        mc = min(m, max(1, elements // per_row))
        tc = min(tk, max(1, elements // (per_row * mc)))
        return [(slice(m0, min(m0 + mc, m)), slice(t0, min(t0 + tc, tk)))
                for m0 in range(0, m, mc) for t0 in range(0, tk, tc)]

    def _read_convert_accumulate(self, codes, matrix, noise_matrix, x_weight, w_weight,
                                 full_scale, scale_x, scale_w, arrays, bias_per_vector,
                                 bias_per_column, gain=None, integer_matrix=None):
        """Stages 5-7 over chunks of input vectors and row-blocks.

        Args:
            codes: DAC codes ``(Tk, rows, M, n_x)``.
            matrix, noise_matrix: read matrices ``(Tk, rows, n_a * C)``, ``C`` the columns read
                (N, plus the unit columns).
            x_weight, w_weight: shift-add weights per input slice ``(n_x,)`` and per array
                ``(n_a,)``, per code unit, float64.
            full_scale: the ADC's worst-case current per input slice ``(n_x,)``, code units.
            scale_x, scale_w: block scales per row-block ``(M, Tk)`` and ``(Tk, N)``.
            arrays: the programmed arrays (their unit columns, if any).
            bias_per_vector, bias_per_column: ``(Tk, M)`` and ``(Tk, N)`` biases of
                offset-binary weights and inputs to subtract, or ``None``.
            gain: ``(Tk, n_a * C)`` drift-compensation gain of every converted column, applied
                after the ADC, or ``None``.
            integer_matrix: ``matrix`` in int8 and its largest ``|entry|`` if it holds small
                integers (see :meth:`_integer_matrix`), or ``None``.

        Returns:
            ``(M, N)`` in the codes' dtype.
        """
        cfg = self.config
        tk, rows, m, n_x = codes.shape
        n_a = len(w_weight)
        n_cols = matrix.shape[-1] // n_a
        n = n_cols - arrays.unit_columns
        bipolar = cfg.bipolar_adc
        calibrated = cfg.radc is not None and cfg.adc_range in ("calibrated",
                                                                "calibrated-symmetric")
        # one shift-add weight per (input slice, array) pair, per code unit of current
        pair_weight = (x_weight.view(-1, 1) * w_weight.view(1, -1)).flatten()

        # The read's kernel: a noise-free read of small integer codes on integer levels is
        # exact, so it may run on the integer matrix units (int8 in, int32 sums) and give the
        # same currents as the float read.
        noisy = noise_matrix is not None and cfg.read_noise > 0
        current_peak = None  # with an exact read: no |current| is larger
        if integer_matrix is not None:
            code_peak = small_integer_peak(codes)
            peak = None if code_peak is None else rows * code_peak * integer_matrix[1]
            current_peak = peak if peak is not None and peak <= EXACT_FLOAT32_SUM else None
            integer_matrix = None if current_peak is None else integer_matrix[0]
        # A calibrated range per array must see all the vectors' currents of its columns before
        # it converts any. A row-block's currents of every vector rarely fit in a chunk; those of
        # one column block (arrays side by side) do: read by column block, each such group is
        # read once and converted from cache, instead of kept in a buffer the size of a
        # row-block's currents (out of cache) or read twice. Its currents are read slice pair
        # by slice pair ("pair-major"), so that each array's currents of every vector lie
        # contiguous: its range is then a reduction along memory (several times faster than
        # one across the vectors), and so is the subtraction of its lower end. (Only for
        # row-blocks of more than PAIR_MAJOR_CURRENTS currents, see there. Not for exact
        # reads: on int8 units, reading twice in small chunks measured faster than reading
        # once in large ones, and their float fallback must take the same chunks, for the
        # same numbers. Unit columns belong to their arrays' blocks but sit after every weight
        # column, so with them a group stays a whole row-block.)
        per_array = calibrated and cfg.adc_range == "calibrated"
        pair_major = per_array and integer_matrix is None and not arrays.unit_columns and \
            m * n_x * n_a * n_cols > PAIR_MAJOR_CURRENTS
        block_columns = arrays.tile.cols
        width = block_columns if pair_major else n_cols
        column_ranges = [slice(c, min(c + width, n_cols)) for c in range(0, n_cols, width)]
        # An exact read is cheap on int8 units, so the passes after it (ADC, shift-add) set the
        # pace: they run from cache only if a chunk's currents stay in it. Both kernels take the
        # same chunks (the row-blocks' sums then add up in the same order: the same numbers).
        elements = self.chunk_elements if integer_matrix is None else min(
            self.chunk_elements, EXACT_READ_CHUNK_ELEMENTS)
        chunks = [(ms, ts, cs) for cs in column_ranges for ms, ts in self._chunks(
            tk, m, n_x * n_a * (cs.stop - cs.start), elements)]
        fewest_rows = min(c[0].stop - c[0].start for c in chunks) * n_x  # of one read
        int8_read = (integer_matrix is not None and self.read_kernel == "auto"
                     and int8_matmul_fits(codes.device, fewest_rows, rows, matrix.shape[-1]))
        self.last_read_kernel = "int8" if int8_read else str(codes.dtype).removeprefix("torch.")

        step_after = None  # a fixed ADC's step per input slice, dividing the exact sums
        # A calibrated range per array spans the currents it converts, so none saturates
        saturates = cfg.adc_range != "calibrated"
        if cfg.radc is not None and not calibrated:
            # A fixed ADC range: currents come out in ADC levels. Inexact reads divide the
            # codes (fewer than the currents); exact ones their sums, so that both kernels
            # round the same integers.
            fraction = 1.0 if cfg.adc_range == "full" else cfg.adc_range
            step = adc_step(full_scale * fraction, cfg.radc, bipolar)
            if integer_matrix is None:  # in place: the codes are this product's own
                codes = codes.div_(step.to(codes))
            else:
                step_after = step.to(codes).view(1, 1, n_x, 1, 1)
            pair_weight = pair_weight * step.repeat_interleave(n_a)
            # Nor does any on an exact read with the full range: no current passes the full
            # scale (every input at the DAC's top code, every cell at the top level) and, for a
            # unipolar ADC, none is negative (no negative code or level).
            if fraction == 1.0 and current_peak is not None and \
                    current_peak <= float(full_scale.min()):
                saturates = not (bipolar or (float(codes.amin()) >= 0
                                             and float(integer_matrix.amin()) >= 0))

        workspace = _Workspace(codes.dtype, self.device)
        compiled = self.compile and convert_shift_add.runs_compiled(self.device)
        if int8_read:  # once per product, vector-major (Tk, M, n_x, rows): every chunk's rows
            # of codes are then a contiguous int8 matrix, as torch._int_mm takes them
            codes_int8 = torch.empty((tk, m, n_x, rows), dtype=torch.int8, device=self.device)
            codes_int8.copy_(codes.permute(0, 2, 3, 1))
        elif pair_major:  # once per product, slice-major (Tk, n_x, M, rows): each slice's
            # codes of a chunk's vectors are a matrix with rows of unit stride
            slice_codes = workspace.get("slice codes", (tk, n_x, m, rows))
            slice_codes.copy_(codes.permute(0, 3, 2, 1))

        def columns(read_matrix, ts, cs):
            """Row-blocks ``ts`` of a read matrix, only columns ``cs`` of every array
            ``(Tk', rows, n_a * C')``: a view if ``cs`` is every column, else a copy (small: a
            few arrays)."""
            block = read_matrix[ts]
            if cs.stop - cs.start == n_cols:
                return block
            t, word_lines = block.shape[:2]
            return block.view(t, word_lines, n_a, n_cols)[..., cs].reshape(
                t, word_lines, n_a * (cs.stop - cs.start))

        def read(chunk, out=None):
            """The chunk's currents ``(Tk', M', n_x, n_a, C')`` (pair-major:
            ``(Tk', n_x, n_a, M', C')``), into ``out`` (a contiguous tensor of as many
            elements) or else the reused chunk buffer; for an int8 read, their exact int32
            sums, in a reused buffer of their own."""
            ms, ts, cs = chunk
            t, mc, cw = ts.stop - ts.start, ms.stop - ms.start, cs.stop - cs.start
            if pair_major:  # one input group per slice, one column group per array
                shape = (t, n_x, n_a, mc, cw)
                block = slice_codes[ts, :, ms]

                def arrays_of(read_matrix):  # (Tk', n_a, rows, C'): a copy, a few arrays
                    return read_matrix[ts].view(t, rows, n_a, n_cols)[..., cs].transpose(
                        1, 2).contiguous()
            else:  # one input group (every vector's slices), one column group
                shape = (t, 1, 1, mc * n_x, n_a * cw)
                if int8_read:
                    block = codes_int8[ts, ms].reshape(t, 1, mc * n_x, rows)
                    out = workspace.get("sums", shape, torch.int32)
                else:
                    # (Tk', M' * n_x, rows) as a transposed view of (Tk', rows, M', n_x): the
                    # float product reads it without a copy
                    block = codes[ts, :, ms].reshape(t, rows, mc * n_x).transpose(1, 2)
                    block = block.unsqueeze(1)

                def arrays_of(read_matrix):
                    return columns(read_matrix, ts, cs).unsqueeze(1)
            if out is None:
                out = workspace.get("currents", shape)
            scratch = (workspace.get("std", shape), workspace.get("noise", shape)) \
                if noisy else None
            currents = read_currents(
                block, arrays_of(integer_matrix if int8_read else matrix),
                None if noise_matrix is None else arrays_of(noise_matrix),
                cfg.read_noise, self.generator, out=out.view(shape), scratch=scratch)
            return currents.view(shape if pair_major else (t, mc, n_x, n_a, cw))

        pair_weight = pair_weight.to(codes)
        y = torch.zeros(m, n, dtype=codes.dtype, device=self.device)

        def convert_accumulate(chunk, currents, weights, array_range=None, range_offset=None,
                               pair_step=None):
            """Stages 6-7 on one chunk's currents ``(Tk', M', n_x, n_a, C')``, added into y.

            ``weights``: the shift-add weight of each slice pair ``(n_x * n_a,)``.
            ``array_range``: the calibrated (lower end, step) of the chunk's read columns of
            these row-blocks and ``range_offset`` what the lower ends add up to; ``pair_step``:
            the step of a whole-product calibration; both ``None`` for a fixed ADC range.
            """
            ms, ts, cs = chunk
            t, mc, cw = currents.shape[0], ms.stop - ms.start, cs.stop - cs.start
            outputs = slice(cs.start, min(cs.stop, n))  # the output columns (no unit columns)
            low, step = (None, None) if array_range is None else array_range
            # uncompiled, the passes run in place in reused buffers; compiled, they fuse into
            # one and need none
            buffers = {} if compiled else {
                "scratch": currents if currents.is_floating_point() else
                workspace.get("codes", currents.shape).view(currents.shape),
                "out": workspace.get("partial", (t * mc, cw))}
            if gain is not None:  # the gain of every read column, as the currents lie
                column_gain = gain[ts].view(t, 1, n_a, 1, n_cols) if pair_major else \
                    gain[ts].view(t, 1, 1, n_a, n_cols)
            partial = convert_shift_add(
                currents, weights, cfg.radc, bipolar and array_range is None,
                divisor=pair_step if step_after is None else step_after, low=low, step=step,
                gain=None if gain is None else column_gain[..., cs], saturates=saturates,
                pair_major=pair_major, compile=compiled, dynamic_dim=3 if pair_major else 1,
                **buffers)
            if range_offset is not None:
                partial.add_(range_offset.unsqueeze(1))  # the ranges' lower ends
            partial = self._remove_bias(partial, arrays, None if bias_per_vector is None
                                        else bias_per_vector[ts, ms].unsqueeze(-1))
            if bias_per_column is not None:
                partial.sub_(bias_per_column[ts, outputs].unsqueeze(1))
            # rescale each row-block by its block scales and add the row-blocks up
            partial.mul_(scale_x[ms, ts].t().unsqueeze(-1)).mul_(
                scale_w[ts, outputs].unsqueeze(1))
            y[ms, outputs] += partial[0] if t == 1 else partial.sum(0)

        if not calibrated:
            for chunk in chunks:
                convert_accumulate(chunk, read(chunk), pair_weight)
            return y

        # A calibrated ADC's ranges are set by the currents it converts, so a group of currents
        # is read in full before any of it is converted: with one range per array (the
        # default), each row-block's column range on its own, since no range spans row-blocks
        # or column blocks; with one range per slice pair, the whole product. A group's
        # currents are kept between calibrating and converting if they fit in
        # calibration_elements; otherwise the group is read again, the generator rewound so
        # that the second read draws the same read noise.
        if per_array:
            # every array's ADCs convert its own columns: one range per (row-block, slice pair,
            # column block of arrays), [min, max] of the currents it converts
            tn = arrays.positive.shape[2]
            block_of = (arrays.columns // block_columns).to(self.device)  # (C,)
            by_range: dict[tuple[int, int], list] = {}
            for chunk in chunks:
                by_range.setdefault((chunk[1].start, chunk[2].start), []).append(chunk)
            groups = list(by_range.values())
        else:
            groups = [chunks]

        def calibrate(group_chunks):
            """[min, max] of the group's currents: per (row-block, slice pair, column block)
            ``(Tk', n_x, n_a, Tn)`` for per-array ranges, else per slice pair ``(n_x, n_a)``;
            and the currents if they were kept (else ``None``)."""
            _, ts, cs = group_chunks[0]
            t, cw = ts.stop - ts.start if per_array else tk, cs.stop - cs.start
            shape = (t, n_x, n_a, tn) if per_array else (n_x, n_a)
            low = torch.full(shape, torch.inf, dtype=torch.float64, device=self.device)
            high = torch.full(shape, -torch.inf, dtype=torch.float64, device=self.device)
            size = sum((c[0].stop - c[0].start) * (c[1].stop - c[1].start)
                       for c in group_chunks) * n_x * n_a * cw
            # (an int8 read costs less than keeping its currents out of cache: read again)
            keep = len(group_chunks) == 1 or (size <= self.calibration_elements
                                              and not int8_read)
            kept = [] if keep else None
            # Kept currents go to one buffer of the group's size (reused from group to group;
            # each chunk the next contiguous part of it), unless the group is one chunk
            group = workspace.get("kept", (size,)) if keep and len(group_chunks) > 1 else None
            offset = 0
            for chunk in group_chunks:
                ms, cts, _ = chunk
                chunk_size = (ms.stop - ms.start) * (cts.stop - cts.start) * n_x * n_a * cw
                currents = read(chunk, None if group is None else
                                group[offset:offset + chunk_size])
                offset += chunk_size
                # (amin and amax apart: torch.aminmax is several times slower; compiled into
                # one pass, they are no faster)
                if pair_major:  # each array's currents are contiguous: along memory
                    flat = currents.view(currents.shape[0], n_x, n_a, -1)
                    chunk_low, chunk_high = (v.double().unsqueeze(-1)
                                             for v in (flat.amin(-1), flat.amax(-1)))
                    chunk_blocks = block_of[cs][:1]  # (t, n_x, n_a, 1): the block's range
                else:
                    # over the vectors first: a reduction down the outer axis reads memory in
                    # order
                    flat = currents.view(currents.shape[0], -1, n_x * n_a * cw)
                    chunk_low, chunk_high = (v.double().view(-1, n_x, n_a, cw)
                                             for v in (flat.amin(1), flat.amax(1)))
                    chunk_blocks = None if not per_array else block_of[cs]
                if per_array:
                    index = chunk_blocks.expand(chunk_low.shape)
                    low.copy_(low.scatter_reduce(-1, index, chunk_low, "amin"))
                    high.copy_(high.scatter_reduce(-1, index, chunk_high, "amax"))
                else:  # one range per slice pair over the whole product
                    low.copy_(torch.minimum(low, chunk_low.amin((0, 3))))
                    high.copy_(torch.maximum(high, chunk_high.amax((0, 3))))
                if keep:
                    kept.append(currents)
            return low, high, kept

        for group in groups:
            state = self.generator.get_state()
            low, high, kept = calibrate(group)
            if kept is None:
                self.generator.set_state(state)
            ranges = {"weights": pair_weight}
            if per_array:
                _, ts, cs = group[0]
                # code c reads low + c * step, every one of the radc levels on [min, max]; per
                # read column of the group (Tk', n_x, n_a, C')
                step = adc_step(high - low, cfg.radc, False)
                low_c, step_c = (v.index_select(-1, block_of[cs]).to(codes)
                                 for v in (low, step))
                lows = low_c
                if gain is not None:  # the drift gain scales what the ADC read, offset included
                    lows = lows * gain[ts].view(-1, 1, n_a, n_cols)[..., cs]
                # what the lower ends add up to in the shift-add of each column (Tk', C')
                ranges["range_offset"] = torch.einsum("tsac,sa->tc", lows,
                                                      pair_weight.view(n_x, n_a))
                # as the currents lie: (Tk', 1, n_x, n_a, C'), or pair-major one range per
                # array (Tk', n_x, n_a, 1, 1)
                ranges["array_range"] = tuple(v[..., :1, None] if pair_major else v.unsqueeze(1)
                                              for v in (low_c, step_c))
            else:
                # zero current stays at code 0: [0, max], or +-max|I| for a bipolar ADC
                peak = torch.maximum(high, -low) if bipolar else high
                pair_step = adc_step(peak.clamp_min(0), cfg.radc, bipolar)
                ranges["weights"] = pair_weight * pair_step.flatten().to(codes)
                ranges["pair_step"] = pair_step.to(codes).view(1, 1, n_x, n_a, 1)
            for index, chunk in enumerate(group):
                currents = read(chunk) if kept is None else kept[index]
                convert_accumulate(chunk, currents, **ranges)
            del kept  # the next group's currents take their place
        return y

    @staticmethod
    def _weight_sums(q_w: torch.Tensor, rows: int) -> torch.Tensor:
        """Each column's sum of integer weights over each row-block's rows, float64 (Tk, N)."""
        k, n = q_w.shape
        tk = -(-k // rows)
        padded = torch.nn.functional.pad(q_w.to(torch.float64), (0, 0, 0, tk * rows - k))
        return padded.view(tk, rows, n).sum(1)

    @staticmethod
    def _remove_bias(values: torch.Tensor, arrays: ProgrammedArrays, digital=None):
        """Subtract the bias of offset-binary weights from shift-added results ``(..., C)``.

        With unit columns (the last ``Tn`` of the ``C`` columns) each column loses the result
        of its own array's unit column; otherwise ``digital`` (broadcastable to ``(..., N)``,
        or ``None`` for mappings without a bias) is subtracted. Returns ``(..., N)``.
        """
        if arrays.unit_columns:
            n = values.shape[-1] - arrays.unit_columns
            tile_of = torch.arange(n, device=values.device) // arrays.weight_columns_per_array
            return values[..., :n] - values[..., n:].index_select(-1, tile_of)
        return values if digital is None else values - digital

    def _schedule(self, x, mat, arrays: ProgrammedArrays, codes, dac_full, fresh, drive):
        """The :class:`~mpimpy.cost.Schedule` of this product, read off its own tensors: the
        DAC codes ``(Tk, word lines, M, n_x)`` and the programmed arrays; with ``drive`` (the
        row-blocks' admittance) also the power the reads dissipate."""
        cfg = self.config
        tk, _, m, _ = codes.shape
        n_a, _, tn, rows, cols = arrays.positive.shape
        k, n = arrays.shape
        pair = arrays.negative is not None  # G+ and G- side by side, sharing word lines
        array_columns = cols * (2 if pair else 1) + (1 if arrays.reference_column else 0)
        power = None
        if drive is not None:
            volts_per_code = torch.tensor([cfg.vread / f for f in dac_full], dtype=torch.float64)
            power = read_power(codes, drive, volts_per_code)
        full_levels = max(dac_full) * rows * (cfg.g_level - 1)  # the largest current, in codes
        driven = [x.slice_method[i] for i in read_slices(x.slice_method, cfg.input_encoding)]
        bipolar_dac = cfg.input_encoding == "sign_magnitude"  # one more bit: the polarity
        return Schedule(
            vectors=m, k=k, n=n, rows=rows, cols=arrays.weight_columns_per_array,
            row_blocks=tk, column_blocks=tn, word_lines=k, input_widths=tuple(driven),
            input_bits=x.bits, weight_widths=tuple(mat.slice_method),
            arrays_per_group=n_a, array_columns=array_columns,
            converted_columns=len(arrays.columns), unit_columns=arrays.unit_columns,
            dac_bits=converter_bits(cfg.rdac, max(driven)) + (1 if bipolar_dac else 0),
            adc_bits=converter_bits(cfg.radc, None, full_levels, bipolar=cfg.bipolar_adc),
            mapping=cfg.mapping, digital_bias=cfg.mapping == "bias" and not cfg.unit_column,
            input_bias=cfg.input_encoding == "offset_binary", array_power=power,
            cells_written=arrays.positive.numel() * (2 if pair else 1) if fresh else 0)

    def _check_weights(self, mat):
        """``mat`` must be a sliced operand on this device, 1-D or 2-D (it is programmed)."""
        self._check_operand(mat, "mat")
        if mat.data.dim() > 2:
            raise ValueError(f"mat must be 1-D or 2-D (the programmed weights), got shape "
                             f"{tuple(mat.data.shape)}")
        self.check_weight_widths(mat.slice_method, "mat.slice_method")

    def _check_operand(self, operand, name):
        if not isinstance(operand, SlicedData):
            raise TypeError(f"{name} must be a SlicedData, got {type(operand).__name__}")
        if operand.data is None:
            raise ValueError(f"{name} has not been sliced: call {name}.slice_data_imp(engine, "
                             f"data) first")
        if resolve_device(operand.data.device) != self.device:
            raise ValueError(f"{name} is on {operand.data.device} but the engine runs on "
                             f"{self.device}; pass device= to both")


#: Currents per chunk of an exact (integer) read (8 MB in float32), when chunk_elements allows:
#: measured fastest for int8 reads on the development machine (2 MB of L2 per core, 32 MB of
#: L3), where larger chunks leave the ADC and shift-add passes waiting on memory.
EXACT_READ_CHUNK_ELEMENTS = 2**21

#: With a calibrated ADC (a range per array) and an inexact read, a row-block of more currents
#: than this (every vector's, slice pair's and column's; 16 MB in float32, half the development
#: machine's L3) is read one column block at a time, slice pair by slice pair: its currents
#: would not stay in cache, one column block's do, and each array's range is then a reduction
#: along memory. Smaller row-blocks are read whole, every slice pair in one product: there the
#: narrow products of one pair and one block measured twice as slow (the converted CNN's
#: layers). A fixed number, not the chunk size, so that the chunks a product is read in never
#: change its numbers: each layout sums a current in its own order, and a calibrated ADC's code
#: flips where a current lies within round-off of a level's edge.
PAIR_MAJOR_CURRENTS = 2**22


#: Between products, each thread keeps a product's working buffers (the DAC codes and their
#: noise, and the chunk buffers of :class:`_Workspace`) if they take at most this many bytes
#: each, and hands them to its next product: on the CPU, a fresh tensor is mapped from the OS
#: and zeroed page by page on first use (glibc's malloc serves blocks over 32 MB by mmap, and
#: gives freed memory back), about 0.3 ms per MB on the development machine, which was a third
#: of the time of a narrow DNN layer's product. With the default ``chunk_elements`` a thread
#: holds at most 2 x 128 MB of codes, 5 chunk buffers of 16 MB and a calibration buffer of up
#: to 128 MB; larger buffers are fresh for every product.
RETAINED_BUFFER_BYTES = 2**27

_retained = threading.local()


def retained_buffer(name: str, size: int, dtype: torch.dtype, device: torch.device
                    ) -> torch.Tensor:
    """A flat tensor of at least ``size`` elements for one product's use, kept for the
    thread's next product if it is at most :data:`RETAINED_BUFFER_BYTES` (CPU only: CUDA's
    caching allocator already reuses freed memory). Its contents are undefined."""
    if device.type != "cpu":
        return torch.empty(size, dtype=dtype, device=device)
    pool = _retained.__dict__.setdefault("buffers", {})
    buffer = pool.get(name)
    if buffer is not None and buffer.dtype == dtype and buffer.numel() >= size:
        return buffer
    pool.pop(name, None)  # freed before its successor is allocated
    buffer = torch.empty(size, dtype=dtype, device=device)
    if size * buffer.element_size() <= RETAINED_BUFFER_BYTES:
        pool[name] = buffer
    return buffer


def release_buffers() -> int:
    """Free the working buffers the calling thread keeps between products (see
    :data:`RETAINED_BUFFER_BYTES`): up to a few hundred MB after a large product, which a
    notebook otherwise holds until its thread ends. The next product allocates afresh (its
    first chunks then pay for fresh pages); its numbers are the same. Other threads keep theirs.

    Returns:
        the bytes the pool held (freed now, unless a tensor still refers to them).
    """
    pool = _retained.__dict__.pop("buffers", {})
    return sum(buffer.numel() * buffer.element_size() for buffer in pool.values())


class _Workspace:
    """Buffers reused from chunk to chunk of one product, by name: one allocation each, of the
    largest shape asked for, instead of a fresh tensor per chunk (the allocator would keep the
    freed chunks and memory would grow with the number of chunks); drawn from the thread's
    :func:`retained_buffer`, so that the next product reuses them too. (The workspace keeps
    its own references as well: a buffer over the retention limit is then still allocated
    once per product, not once per chunk.)"""

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None
            ) -> torch.Tensor:
        size = 1
        for n in shape:
            size *= n
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self.buffers[name] = retained_buffer("chunk " + name, size,
                                                          dtype or self.dtype, self.device)
        return buffer[:size].view(shape)
