"""The seeded products that tests/test_reference_products.py holds the engine to.

Each case is a name and a function returning a tensor; the reference file
``tests/data/reference_products.pt`` was written by running this module as a script on the
commit before the engine was split into its stages (5b0b636):

    python tests/reference_products.py          # (re)writes the reference: only on purpose

The cases cover every mapping (and unit columns), input encoding, INT and FP formats, ADC mode,
noise and fault, wire resistance, device models read after a time, drift compensation, 2-D and
batched inputs, both read kernels, chunked products and converted nn layers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mpimpy import DPETensor, SlicedData
from mpimpy import nn as mnn

REFERENCE = Path(__file__).parent / "data" / "reference_products.pt"


def _product(shape_x=(12, 70), n=20, xblk=(1, 1, 2, 4), mblk=(1, 1, 2, 4), bw_e=None,
             paral=(32, 16), data_seed=0, reuse=False, **engine_kwargs):
    gen = torch.Generator().manual_seed(data_seed)
    x = torch.randn(*shape_x, generator=gen, dtype=torch.float64)
    w = torch.randn(shape_x[-1], n, generator=gen, dtype=torch.float64)
    dtype = engine_kwargs.pop("dtype", torch.float64)
    engine = DPETensor(seed=7, **engine_kwargs)
    xs = SlicedData(xblk, bw_e=bw_e, paral_size=paral).slice_data_imp(
        engine, x.to(dtype), transpose=True)
    ws = SlicedData(mblk, bw_e=bw_e, paral_size=paral, is_weight=True).slice_data_imp(
        engine, w.to(dtype))
    y = engine(xs, ws)
    if reuse:  # a second product on the same programming, then a reprogramming
        y2 = engine(xs, ws)
        engine.program(ws)
        y3 = engine(xs, ws)
        ws.slice_data_imp(engine, w.to(dtype))
        y4 = engine(xs, ws)
        return torch.stack([y, y2, y3, y4])
    return y


BIAS_MBLK = (2, 2, 2, 2)


def _cases() -> dict:
    cases = {
        "offset": lambda: _product(),
        "offset_f32": lambda: _product(dtype=torch.float32),
        "offset_f32_float_kernel": lambda: _product(dtype=torch.float32, read_kernel="float"),
        "offset_exact_f32": lambda: _product(dtype=torch.float32, var=0.0),
        "offset_exact_f32_float": lambda: _product(dtype=torch.float32, var=0.0,
                                                   read_kernel="float"),
        "diffpair": lambda: _product(mapping="diffpair"),
        "bias": lambda: _product(mapping="bias", mblk=BIAS_MBLK),
        "bias_unit_column": lambda: _product(mapping="bias", mblk=BIAS_MBLK, unit_column=True),
        "bias_f32_exact": lambda: _product(mapping="bias", mblk=BIAS_MBLK, var=0.0,
                                           dtype=torch.float32),
        "sign_magnitude": lambda: _product(input_encoding="sign_magnitude"),
        "offset_binary_inputs": lambda: _product(input_encoding="offset_binary",
                                                 xblk=(2, 2, 2, 2)),
        "fp": lambda: _product(bw_e=4, xblk=(1, 1, 2, 4, 4), mblk=(1, 1, 2, 4, 4)),
        "fp_diffpair": lambda: _product(bw_e=3, mapping="diffpair"),
        "calibrated": lambda: _product(adc_range="batch-oracle"),
        "calibrated_f32_exact": lambda: _product(adc_range="batch-oracle", var=0.0,
                                                 dtype=torch.float32),
        "calibrated_diffpair": lambda: _product(adc_range="batch-oracle", mapping="diffpair"),
        "calibrated_unit_column": lambda: _product(adc_range="batch-oracle", mapping="bias",
                                                   mblk=BIAS_MBLK, unit_column=True),
        "calibrated_symmetric": lambda: _product(adc_range="batch-oracle-symmetric"),
        "calibrated_symmetric_sm": lambda: _product(adc_range="batch-oracle-symmetric",
                                                    input_encoding="sign_magnitude"),
        "fraction": lambda: _product(adc_range=0.3),
        "fraction_exact_f32": lambda: _product(adc_range=0.3, var=0.0, dtype=torch.float32),
        "radc_none": lambda: _product(radc=None),
        "radc_none_read_noise": lambda: _product(radc=None, read_noise=0.02),
        "rdac_none_spread": lambda: _product(rdac=None, level_mapping="spread"),
        "read_noise": lambda: _product(read_noise=0.05),
        "read_noise_calibrated": lambda: _product(read_noise=0.05, adc_range="batch-oracle"),
        "vnoise": lambda: _product(vnoise=0.05),
        "vnoise_bias": lambda: _product(vnoise=0.05, mapping="bias", mblk=BIAS_MBLK),
        "stuck": lambda: _product(stuck_fault_ratio=0.05, stuck_fault_value=1),
        "wires": lambda: _product(wire_resistance=2.0, shape_x=(6, 40), n=10),
        "wires_pair_diffpair": lambda: _product(wire_resistance=(1.0, 3.0), mapping="diffpair",
                                                shape_x=(6, 40), n=10),
        "pcm_t": lambda: _product(device_model="pcm", t_inference=3600.0),
        "pcm_drift_comp": lambda: _product(device_model="pcm", t_inference=86400.0,
                                           drift_compensation="global"),
        "pcm_drift_comp_calibrated": lambda: _product(
            device_model="pcm", t_inference=86400.0, drift_compensation="global",
            adc_range="batch-oracle"),
        "rram_t": lambda: _product(device_model="rram", t_inference=100.0),
        "batched": lambda: _product(shape_x=(3, 5, 70)),
        "vector": lambda: _product(shape_x=(70,)),
        "chunked": lambda: _product(chunk_elements=300, read_noise=0.01),
        "chunked_calibrated": lambda: _product(chunk_elements=300, adc_range="batch-oracle",
                                               calibration_elements=1000),
        "chunked_calibrated_reread": lambda: _product(chunk_elements=300, read_noise=0.02,
                                                      adc_range="batch-oracle",
                                                      calibration_elements=0),
        "chunked_symmetric": lambda: _product(chunk_elements=300,
                                              adc_range="batch-oracle-symmetric"),
        # a row-block of more than PAIR_MAJOR_CURRENTS currents: read slice pair by slice pair
        "pair_major": lambda: _product(shape_x=(520, 40), n=128, adc_range="batch-oracle",
                                       xblk=(1,) * 8, mblk=(1,) * 8, paral=(64, 32),
                                       dtype=torch.float32),
        "pair_major_chunked": lambda: _product(shape_x=(520, 40), n=128, adc_range="batch-oracle",
                                               xblk=(1,) * 8, mblk=(1,) * 8, paral=(64, 32),
                                               chunk_elements=50000, read_noise=0.01,
                                               dtype=torch.float32),
        "reprogram": lambda: _product(reuse=True, read_noise=0.01),
        "reprogram_pcm": lambda: _product(reuse=True, device_model="pcm", t_inference=10.0),
        "nn_linear": _nn_linear,
        "nn_conv": _nn_conv,
    }
    return cases


def _nn_linear():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5))
    engine = DPETensor(var=0.05, radc=2**8, adc_range="batch-oracle", seed=3)
    hw = mnn.convert(model, engine, xblk=[1, 1, 2, 4], mblk=[1, 1, 2, 4], seed=11).eval()
    x = torch.randn(8, 30, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return hw(x)


def _nn_conv():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 3, 3, stride=2))
    engine = DPETensor(var=0.02, radc=2**6, read_noise=0.01, seed=5)
    hw = mnn.convert(model, engine, xblk=[1, 1, 2, 4], mblk=[1, 1, 2, 4], seed=13).eval()
    x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        return hw(x)


CASES = _cases()


def compute_all() -> dict[str, torch.Tensor]:
    return {name: case() for name, case in CASES.items()}


if __name__ == "__main__":
    products = compute_all()
    torch.save(products, REFERENCE)
    print(f"{len(products)} products -> {REFERENCE} ({REFERENCE.stat().st_size} bytes)")
