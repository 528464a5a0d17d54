"""The simulated product ``y = x @ W`` on memristor crossbars, one stage after another.

Follow one product through :meth:`DPETensor.MapReduceDot`:

1. **quantize and slice** (:mod:`mpimpy.slicing`): both operands are quantized in blocks
   (``SlicedData.slice_data_imp``) and cut into bit slices here;
2. **tile** (:mod:`mpimpy.tiling`): K is split into array row-blocks of ``rows`` word lines;
3. **program** (:mod:`mpimpy.devices`): weight slices become conductances, once per weight;
4. **drive** (:mod:`mpimpy.peripherals`): input slices become DAC codes (word-line voltages);
5. **read** (:mod:`mpimpy.crossbar`): every input slice meets every weight slice on every array,
   ``I = V @ (G - G_ref)``, with read noise;
6. **convert** (:mod:`mpimpy.peripherals`): each column current goes through the ADC;
7. **shift-add and rescale**: slice pairs are weighted by powers of two (sign slices negative),
   row-blocks are summed with their block scales.

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

import torch

from .config import CrossbarConfig, resolve_device
from .crossbar import read_currents, read_matrix, read_noise_matrix
from .devices import ProgrammedArrays, check_widths, program
from .peripherals import adc_step, convert, dac_full_scale, drive
from .slicing import SlicedData, bit_slices, slice_weights
from .tiling import check_block_alignment

_engine_ids = itertools.count()


class DPETensor:
    """A dot-product engine: memristor crossbars with their DACs and ADCs.

    ``DPETensor(...)(x, mat)`` computes the simulated ``x.data @ mat.data`` for two
    :class:`~mpimpy.slicing.SlicedData` operands. The right operand is programmed into arrays the
    first time this engine uses it and keeps its conductances (variation and faults included)
    until :meth:`program` is called again or it is sliced anew.

    Args:
        HGS, LGS, g_level, var, vnoise, wire_resistance, rdac, radc, vread, stuck_fault_ratio,
        stuck_fault_value, read_noise, mapping, adc_range: hardware settings, documented with
            their units and ranges in :class:`~mpimpy.config.CrossbarConfig`.
        seed: an int, a ``torch.Generator`` on the engine's device, or ``None`` to draw a seed
            from torch's global generator (so ``torch.manual_seed`` makes runs repeatable). The
            same seed and the same sequence of calls give bit-identical results.
        device: where the simulation runs; default CPU. Operands must live there.
        chunk_elements: how many currents one chunk of work may hold (memory stays bounded by
            about ``4 * chunk_elements`` bytes for float32 beyond the operands).
        calibration_elements: with ``adc_range="calibrated"``, products with at most this many
            currents keep them between calibrating and converting (at most 512 MB in float32
            by default); larger ones read every array twice instead.
    """

    def __init__(self, HGS=1e-5, LGS=1e-7, g_level=16, var=0.05, vnoise=0.05,
                 wire_resistance=0.0, rdac=2**4, radc=2**8, vread=0.1, stuck_fault_ratio=0.0,
                 stuck_fault_value=0, read_noise=0.0, mapping="offset", adc_range="full",
                 seed=None, device=None, chunk_elements=2**22, calibration_elements=2**27):
        self.config = CrossbarConfig(
            HGS=HGS, LGS=LGS, g_level=g_level, var=var, read_noise=read_noise, vnoise=vnoise,
            stuck_fault_ratio=stuck_fault_ratio, stuck_fault_value=stuck_fault_value, rdac=rdac,
            radc=radc, adc_range=adc_range, vread=vread, mapping=mapping,
            wire_resistance=wire_resistance,
        )
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
        return f"DPETensor({fields}, seed={self.seed}, device='{self.device}')"

    def check_weight_widths(self, widths, name="slice_method"):
        check_widths(widths, self.config.g_level, name,
                     skip_sign=self.config.mapping == "diffpair")

    # -- stage 3: program -------------------------------------------------------------------
    def program(self, mat: SlicedData, generator: torch.Generator | None = None
                ) -> ProgrammedArrays:
        """(Re)program ``mat`` into this engine's arrays, drawing new variation and faults.

        ``generator`` draws them instead of the engine's own generator (a layer that must
        reproduce its conductances from a seed of its own passes one).
        """
        self._check_weights(mat)
        q, _, _ = mat.role_matrix("weight", mat.paral_size.rows)
        diffpair = self.config.mapping == "diffpair"
        slices = bit_slices(q, mat.slice_method, signed_magnitude=diffpair)
        arrays = program(slices, mat.slice_method, self.config, mat.paral_size,
                         generator if generator is not None else self.generator)
        mat._programmed = (self._id, arrays, {})
        return arrays

    def programmed(self, mat: SlicedData) -> ProgrammedArrays:
        """The arrays holding ``mat``, programming it first if this engine has not yet."""
        if mat._programmed is None or mat._programmed[0] != self._id:
            self.program(mat)
        return mat._programmed[1]

    def _read_matrices(self, mat: SlicedData, dtype):
        """Read matrix and read-noise matrix of ``mat``'s arrays in ``dtype``, cached until the
        weights are programmed again (with wires, computing them solves every array's
        circuit, in ``dtype``)."""
        arrays = self.programmed(mat)
        cache = mat._programmed[2]
        if dtype not in cache:
            noise = read_noise_matrix(arrays, self.config) if self.config.read_noise > 0 else None
            cache[dtype] = (read_matrix(arrays, self.config, dtype),
                            None if noise is None else noise.to(dtype))
        return cache[dtype]

    def _array_weights(self, mat: SlicedData, arrays: ProgrammedArrays) -> torch.Tensor:
        """Shift-add weight of each of ``mat``'s arrays per conductance level, float64
        ``(n_a,)``: the slice's power of two (negative for a two's complement sign slice) times
        the value of one level in units of that slice."""
        cfg = self.config
        weights = slice_weights(mat.slice_method, cfg.mapping == "diffpair")
        return torch.tensor([weights[i] * (2 ** mat.slice_method[i] - 1) / (cfg.g_level - 1)
                             for i in arrays.slice_index], dtype=torch.float64)

    def effective_weights(self, mat: SlicedData, dtype: torch.dtype = torch.float64
                          ) -> torch.Tensor:
        """The weights ``mat``'s programmed conductances hold, in the units of ``mat.data``.

        This is the matrix an ideal read multiplies by (exact DACs and ADCs, no read noise):
        ``mat.quantized_data`` changed by programming variation, stuck-at faults and, with wire
        resistance, IR drop. Noise-free, it equals ``mat.quantized_data``. Programs ``mat``
        first if this engine has not yet.

        Returns:
            ``(K, N)`` (or ``(K,)`` for a 1-D ``mat``) in ``dtype``, on the engine's device.
        """
        self._check_weights(mat)
        arrays = self.programmed(mat)
        cache = mat._programmed[2]
        if ("effective", dtype) not in cache:  # kept, like the read matrices, until reprogrammed
            _, scale_w, _ = mat.role_matrix("weight", mat.paral_size.rows)  # (Tk, N)
            matrix, _ = self._read_matrices(mat, dtype)  # (Tk, rows, n_a * N), levels
            w_weight = self._array_weights(mat, arrays).to(matrix)
            tk, rows, _ = matrix.shape
            n = scale_w.shape[1]
            levels = (matrix.view(tk, rows, len(w_weight), n)
                      * w_weight.view(1, 1, -1, 1)).sum(2)
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
            # empty operands: no array is read, and the product is what torch.matmul returns
            return torch.zeros(out_shape, dtype=out_dtype, device=self.device)
        check_block_alignment(kblock_x, k, tile.rows, "x")
        check_block_alignment(kblock_w, k, tile.rows, "mat")
        dtype = torch.float64 if torch.float64 in (x.data.dtype, mat.data.dtype) else torch.float32

        # stage 3: program (cached) and derive the matrices one read multiplies by
        arrays = self.programmed(mat)
        matrix, noise_matrix = self._read_matrices(mat, dtype)
        # stage 4: drive the inputs through the DACs, row-block by row-block
        codes = drive(qx, x.slice_method, cfg.rdac, cfg.vnoise, tile, self.generator,
                      dtype)  # (Tk, rows, M, n_x)
        if k < tile.rows:
            # One row-block, partly filled: the word lines past K carry no input, so they need
            # not be multiplied (the ADC's full scale below still counts every row).
            matrix, noise_matrix = (None if m is None else m[:, :k] for m in
                                    (matrix, noise_matrix))

        # Shift-add weight of each input slice and of each weight array, per code unit: the
        # slice's power of two (negative for a two's complement sign slice) times the value of
        # one DAC code or one conductance level in units of that slice.
        dac_full = dac_full_scale(x.slice_method, cfg.rdac)
        x_weight = torch.tensor([w * (2**b - 1) / f for w, b, f in zip(
            slice_weights(x.slice_method), x.slice_method, dac_full, strict=True)],
            dtype=torch.float64)
        w_weight = self._array_weights(mat, arrays)
        # The ADC's worst-case current per input slice: every cell at HGS, every input at the
        # DAC's full scale, in code units.
        full_scale = torch.tensor(dac_full, dtype=torch.float64) * (tile.rows * (cfg.g_level - 1))

        if cfg.radc is None and cfg.read_noise == 0:
            # The read is linear, so the shift-add commutes with it: add the slices up first and
            # read each array once instead of once per slice pair.
            codes = (codes * x_weight.to(codes)).sum(-1, keepdim=True)
            tk, rows, _ = matrix.shape
            matrix = (matrix.view(tk, rows, len(w_weight), -1)
                      * w_weight.to(matrix).view(1, 1, -1, 1)).sum(2)
            x_weight, w_weight = torch.ones(1, dtype=torch.float64), torch.ones(
                1, dtype=torch.float64)

        y = self._read_convert_accumulate(codes, matrix, noise_matrix, x_weight, w_weight,
                                          full_scale, scale_x.to(dtype), scale_w.to(dtype))

        return y.reshape(out_shape).to(out_dtype)

    # -- stages 5 to 7, chunk by chunk ------------------------------------------------------
    def _chunks(self, tk, m, per_row):
        """(rows of x, row-blocks) index ranges of chunks of at most ``chunk_elements``
        currents (at least one input vector on one row-block per chunk)."""
        mc = min(m, max(1, self.chunk_elements // per_row))
        tc = min(tk, max(1, self.chunk_elements // (per_row * mc)))
        return [(slice(m0, m0 + mc), slice(t0, t0 + tc))
                for m0 in range(0, m, mc) for t0 in range(0, tk, tc)]

    def _read_convert_accumulate(self, codes, matrix, noise_matrix, x_weight, w_weight,
                                 full_scale, scale_x, scale_w):
        """Stages 5-7 over chunks of input vectors and row-blocks.

        Args:
            codes: DAC codes ``(Tk, rows, M, n_x)``.
            matrix, noise_matrix: read matrices ``(Tk, rows, n_a * N)``.
            x_weight, w_weight: shift-add weights per input slice ``(n_x,)`` and per array
                ``(n_a,)``, per code unit, float64.
            full_scale: the ADC's worst-case current per input slice ``(n_x,)``, code units.
            scale_x, scale_w: block scales per row-block ``(M, Tk)`` and ``(Tk, N)``.

        Returns:
            ``(M, N)`` in the codes' dtype.
        """
        cfg = self.config
        tk, rows, m, n_x = codes.shape
        n_a = len(w_weight)
        n_cols = matrix.shape[-1] // n_a
        chunks = self._chunks(tk, m, n_x * n_a * n_cols)
        bipolar = cfg.mapping == "diffpair"
        calibrated = cfg.radc is not None and cfg.adc_range == "calibrated"
        # one shift-add weight per (input slice, array) pair, per code unit of current
        pair_weight = (x_weight.view(-1, 1) * w_weight.view(1, -1)).flatten()

        if cfg.radc is not None and not calibrated:
            # A fixed ADC range: scale the codes so currents come out in ADC levels.
            fraction = 1.0 if cfg.adc_range == "full" else cfg.adc_range
            step = adc_step(full_scale * fraction, cfg.radc, bipolar)
            codes = codes / step.to(codes)
            pair_weight = pair_weight * step.repeat_interleave(n_a)

        def read(chunk):
            ms, ts = chunk
            block = codes[ts, :, ms]  # (Tk', rows, M', n_x)
            t, _, mc, _ = block.shape
            # (Tk', M' * n_x, rows) as a transposed view: the product reads it without a copy
            currents = read_currents(
                block.reshape(t, rows, mc * n_x).transpose(1, 2), matrix[ts],
                None if noise_matrix is None else noise_matrix[ts], cfg.read_noise,
                self.generator)
            return currents.view(t, mc, n_x, n_a, n_cols)

        kept = None
        if calibrated:
            # Each slice pair's range is its largest current (|current| for a bipolar ADC; a
            # unipolar one clips negative currents to 0 whatever its range) over the whole
            # product, so all currents are read before any is converted. They are kept for the
            # conversion if they fit in calibration_elements; otherwise they are read again,
            # the generator rewound so that the second read draws the same read noise.
            def peak(currents):
                # over the vectors first: a reduction down the outer axis reads memory in order
                flat = currents.view(-1, n_x * n_a * n_cols)
                high = flat.amax(0).view(n_x, n_a, -1).amax(-1)
                if bipolar:
                    high = torch.maximum(high, -flat.amin(0).view(n_x, n_a, -1).amin(-1))
                return high.clamp_min(0).double().cpu()

            keep = len(chunks) == 1 or m * tk * n_x * n_a * n_cols <= self.calibration_elements
            state = self.generator.get_state()
            peaks, kept = [], [] if keep else None
            for chunk in chunks:
                currents = read(chunk)
                peaks.append(peak(currents))
                if keep:
                    kept.append(currents)
            if not keep:
                self.generator.set_state(state)
            full_pair = torch.stack(peaks).amax(0)
            pair_step = adc_step(full_pair, cfg.radc, bipolar)  # (n_x, n_a)
            pair_weight = pair_weight * pair_step.flatten()
            pair_step = pair_step.to(codes).view(1, 1, n_x, n_a, 1)

        pair_weight = pair_weight.to(codes)
        y = torch.zeros(m, n_cols, dtype=codes.dtype, device=self.device)
        for index, chunk in enumerate(chunks):
            ms, ts = chunk
            # (Tk', M', n_x, n_a, N)
            currents = read(chunk) if kept is None else kept[index]
            t, mc = currents.shape[:2]
            if cfg.radc is not None:
                if calibrated:
                    currents.div_(pair_step)
                convert(currents, cfg.radc, bipolar)
            # shift-add: one weighted sum over the slice pairs of every output
            partial = torch.matmul(pair_weight, currents.view(t * mc, n_x * n_a, n_cols))
            partial = partial.view(t, mc, n_cols)
            # rescale each row-block by its block scales and add the row-blocks up
            partial.mul_(scale_x[ms, ts].t().unsqueeze(-1)).mul_(scale_w[ts].unsqueeze(1))
            y[ms] += partial[0] if t == 1 else partial.sum(0)
        return y

    def _check_weights(self, mat):
        """``mat`` must be a sliced operand on this device, 1-D or 2-D (it is programmed)."""
        self._check_operand(mat, "mat")
        if mat.data.dim() > 2:
            raise ValueError(f"mat must be 1-D or 2-D (the programmed weights), got shape "
                             f"{tuple(mat.data.shape)}")

    def _check_operand(self, operand, name):
        if not isinstance(operand, SlicedData):
            raise TypeError(f"{name} must be a SlicedData, got {type(operand).__name__}")
        if operand.data is None:
            raise ValueError(f"{name} has not been sliced: call {name}.slice_data_imp(engine, "
                             f"data) first")
        if resolve_device(operand.data.device) != self.device:
            raise ValueError(f"{name} is on {operand.data.device} but the engine runs on "
                             f"{self.device}; pass device= to both")

