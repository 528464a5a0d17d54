"""Bad input gets a clear error naming the parameter, never garbage."""

import pytest
import torch

from mpimpy import DPETensor, SlicedData, dot
from mpimpy.mapping import MAPPINGS


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(HGS=1e-7, LGS=1e-5), "HGS must be > LGS"),
        (dict(HGS=1e-5, LGS=1e-5), "HGS must be > LGS"),
        (dict(LGS=0.0), "LGS must be > 0"),
        (dict(g_level=1), "g_level must be an integer >= 2"),
        (dict(rdac=1), "rdac must be an integer >= 2"),
        (dict(radc=1), "radc must be an integer >= 2"),
        (dict(radc=2, mapping="diffpair"), "radc must be an integer >= 3"),
        (dict(var=-0.1), "var must be >= 0"),
        (dict(vnoise=-1e-3), "vnoise must be >= 0"),
        (dict(read_noise=-1.0), "read_noise must be >= 0"),
        (dict(stuck_fault_ratio=1.5), "stuck_fault_ratio must be <= 1"),
        (dict(stuck_fault_ratio=-0.1), "stuck_fault_ratio must be >= 0"),
        (dict(stuck_fault_value=2), "stuck_fault_value must be 0"),
        (dict(mapping="twos"), "mapping must be one of"),
        (dict(adc_range="max"), "adc_range must be one of"),
        (dict(adc_range=1.5), "adc_range must be <= 1"),
        (dict(adc_range=0.0), "adc_range must be > 0"),
        (dict(vread=0.0), "vread must be > 0"),
        (dict(var=float("nan")), "var must be finite"),
        (dict(wire_resistance=-1.0), "wire_resistance. must be >= 0"),
        (dict(seed=-3), "seed must be"),
        (dict(chunk_elements=0), "chunk_elements must be"),
        (dict(calibration_elements=-1), "calibration_elements must be"),
    ],
)
def test_bad_engine_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DPETensor(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(g_level=2.5), dict(rdac="16"), dict(var="0.1")])
def test_wrong_types(kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        DPETensor(**kwargs)


@pytest.mark.parametrize(
    "widths, match",
    [
        ([1, 0, 4], "widths must be positive"),
        ([1, -2, 4], "widths must be positive"),
        ([], "must not be empty"),
        ([1] * 60, "at most 53 bits"),
    ],
)
def test_bad_slice_methods(widths, match):
    with pytest.raises(ValueError, match=match):
        SlicedData(widths)


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_the_sign_slice_rule_follows_the_encoding(mapping):
    """Inputs and two's complement / sign-magnitude weights start with the 1-bit sign slice;
    offset-binary weights (the bias mapping) have none. Checked when sliced for an engine."""
    engine = DPETensor(mapping=mapping)
    data = torch.randn(4, 4, dtype=torch.float64)
    widths = [2, 2, 2]
    with pytest.raises(ValueError, match=r"slice_method\[0\] is the sign slice and must be 1"):
        SlicedData(widths).slice_data_imp(engine, data, transpose=True)  # an input
    weights = SlicedData(widths, is_weight=True)
    if not MAPPINGS[mapping].sign_slice:
        weights.slice_data_imp(engine, data)  # offset binary: any widths
    else:
        with pytest.raises(ValueError, match=r"sign slice and must be 1"):
            weights.slice_data_imp(engine, data)
    # the engine checks operands that were sliced without saying what they are
    x, mat = SlicedData([1, 3]), SlicedData(widths)
    x.slice_data_imp(engine, data)
    mat.slice_data_imp(engine, data)
    if not MAPPINGS[mapping].sign_slice:
        engine(x, mat)
    else:
        with pytest.raises(ValueError, match="sign slice"):
            engine(x, mat)
    bad_x = SlicedData(widths)
    bad_x.slice_data_imp(engine, data)
    with pytest.raises(ValueError, match="sign slice"):
        engine(bad_x, SlicedData([1, 3]).slice_data_imp(engine, data))


def test_bad_bw_e_and_quant_gran():
    with pytest.raises(ValueError, match="bw_e"):
        SlicedData([1, 3], bw_e=0)
    with pytest.raises(ValueError, match="quant_gran"):
        SlicedData([1, 3], quant_gran="per-tile")
    with pytest.raises(ValueError, match="quant_gran"):
        SlicedData([1, 3], quant_gran=(0, 4))
    with pytest.raises(TypeError, match="paral_size"):
        SlicedData([1, 3], paral_size=64)


def test_slice_wider_than_device():
    engine = DPETensor(g_level=16)
    mat = SlicedData([1, 1, 6], is_weight=True)
    with pytest.raises(ValueError, match="6-bit slice needs 64 conductance levels but g_level=16"):
        mat.slice_data_imp(engine, torch.randn(8, 8))
    # checked at programming too, when the operand was not flagged as a weight
    mat = SlicedData([1, 1, 6]).slice_data_imp(engine, torch.randn(8, 8))
    x = SlicedData([1, 1, 2]).slice_data_imp(engine, torch.randn(2, 8), transpose=True)
    with pytest.raises(ValueError, match="g_level"):
        engine(x, mat)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_data(bad):
    data = torch.randn(4, 4)
    data[1, 2] = bad
    with pytest.raises(ValueError, match="data contains NaN or Inf"):
        SlicedData([1, 3]).slice_data_imp(DPETensor(), data)


def test_mismatched_inner_dimensions():
    engine = DPETensor()
    x = SlicedData([1, 3]).slice_data_imp(engine, torch.randn(3, 10), transpose=True)
    mat = SlicedData([1, 3]).slice_data_imp(engine, torch.randn(11, 4))
    with pytest.raises(ValueError, match="inner dimensions differ: x has K=10 but mat has K=11"):
        engine(x, mat)
    with pytest.raises(ValueError, match="not aligned"):
        dot(torch.randn(3, 10), torch.randn(11, 4))


def test_operands_on_other_device_than_engine():
    engine = DPETensor()
    x = SlicedData([1, 3]).slice_data_imp(engine, torch.randn(3, 8), transpose=True)
    mat = SlicedData([1, 3], device="meta")
    mat.data = torch.empty(8, 4, device="meta")  # stand-in for a tensor on another device
    with pytest.raises(ValueError, match="mat is on meta but the engine runs on cpu"):
        engine(x, mat)


def test_fp_overflow_is_refused():
    engine = DPETensor()
    data = torch.tensor([[1.0, 300.0]])  # 300 = 1.17 * 2**8, beyond a 4-bit exponent (max 7)
    with pytest.raises(ValueError, match="beyond the 4-bit exponent range.*larger bw_e"):
        SlicedData([1, 3], bw_e=4).slice_data_imp(engine, data)


def test_quant_blocks_must_cover_whole_arrays():
    engine = DPETensor()
    x = SlicedData([1, 3]).slice_data_imp(engine, torch.randn(3, 128), transpose=True)
    mat = SlicedData([1, 3], quant_gran="per-row").slice_data_imp(engine, torch.randn(128, 4))
    with pytest.raises(ValueError, match="mat: its quant_gran blocks span 1 element"):
        engine(x, mat)


def test_unsliced_and_wrong_operands():
    engine = DPETensor()
    x = SlicedData([1, 3]).slice_data_imp(engine, torch.randn(3, 8), transpose=True)
    with pytest.raises(ValueError, match="mat has not been sliced"):
        engine(x, SlicedData([1, 3]))
    with pytest.raises(TypeError, match="mat must be a SlicedData"):
        engine(x, torch.randn(8, 4))
    with pytest.raises(ValueError, match="mat must be 1-D or 2-D"):
        engine(x, SlicedData([1, 3]).slice_data_imp(engine, torch.randn(2, 8, 4)))


def test_dot_rejects_scalars_and_batched_b():
    with pytest.raises(ValueError, match="scalars"):
        dot(torch.tensor(2.0), torch.tensor(3.0))
    with pytest.raises(ValueError, match="b must be 1-D or 2-D"):
        dot(torch.randn(3, 4), torch.randn(2, 4, 5))
    with pytest.raises(TypeError, match="either engine or engine settings"):
        dot(torch.randn(3, 4), torch.randn(4, 5), engine=DPETensor(), var=0.0)
