"""What the engine owns: the programmed state of its weights (weakly, per operand), the
settings it is made from, its signature."""

from __future__ import annotations

import gc
import inspect
import pickle
from dataclasses import fields

import pytest
import torch

from mpimpy import DPETensor, SlicedData
from mpimpy.compat import ENGINE_ARGUMENTS
from mpimpy.config import CrossbarConfig, EngineOptions, describe
from mpimpy.mapping import MAPPINGS, Mapping

#: DPETensor's signature before its settings were declared once (5b0b636), written out
ORIGINAL_SIGNATURE = (
    "(HGS=1e-05, LGS=1e-07, g_level=16, var=None, vnoise=0.0, wire_resistance=0.0, rdac=16, "
    "radc=256, vread=0.1, stuck_fault_ratio=0.0, stuck_fault_value=0, read_noise=0.0, "
    "mapping='offset', adc_range='full', seed=None, device=None, chunk_elements=4194304, "
    "calibration_elements=134217728, unit_column=False, level_mapping='integer', "
    "input_encoding='twos_complement', technology=None, device_model='lognormal', "
    "drift_compensation='none', t_inference=0.0, read_kernel='auto', compile=False)")


def operands(engine, k=12, n=5, m=3):
    gen = torch.Generator().manual_seed(0)
    x = SlicedData([1, 1, 2, 4]).slice_data_imp(engine, torch.randn(m, k, generator=gen),
                                                transpose=True)
    mat = SlicedData([1, 1, 2, 4], is_weight=True).slice_data_imp(
        engine, torch.randn(k, n, generator=gen))
    return x, mat


def test_signature_is_the_original_and_derives_from_the_settings():
    assert str(inspect.signature(DPETensor)) == ORIGINAL_SIGNATURE
    settings = {f.name for cls in (CrossbarConfig, EngineOptions) for f in fields(cls)}
    assert settings == set(ENGINE_ARGUMENTS)
    assert all(info["valid"] for info in describe(CrossbarConfig).values())
    engine = DPETensor(2e-5, 2e-7, 8, 0.0, seed=1)  # positional, in the original's order
    assert (engine.HGS, engine.LGS, engine.g_level, engine.var) == (2e-5, 2e-7, 8, 0.0)
    with pytest.raises(TypeError, match=r"DPETensor\(\): got an unexpected keyword"):
        DPETensor(hgs=1e-5)


def test_programmed_state_is_the_engines_and_frees_with_the_operand():
    engine, other = DPETensor(seed=0), DPETensor(seed=1)
    x, mat = operands(engine)
    assert not engine.holds(mat)
    engine(x, mat)
    assert engine.holds(mat) and not other.holds(mat)
    other(x, mat)  # another engine programs its own arrays; the first keeps its own
    assert engine.holds(mat) and other.holds(mat)
    assert not torch.equal(engine.programmed(mat).positive, other.programmed(mat).positive)
    mat.slice_data_imp(engine, mat.data)  # sliced anew: programmed again on its next use
    assert not engine.holds(mat)
    del mat
    gc.collect()
    assert not list(engine._programs._by_operand)


def test_an_engine_pickled_with_its_operands_still_holds_them():
    engine = DPETensor(seed=0, read_noise=0.02)
    x, mat = operands(engine)
    engine(x, mat)
    engine2, x2, mat2 = pickle.loads(pickle.dumps((engine, x, mat)))
    assert engine2.holds(mat2) and not engine2.holds(mat)
    assert torch.equal(engine(x, mat), engine2(x2, mat2))


@pytest.mark.parametrize("name", MAPPINGS)
def test_every_mapping_is_one_class_the_stages_ask(name):
    mapping = MAPPINGS[name]()
    assert isinstance(mapping, Mapping) and mapping.name == name
    assert CrossbarConfig(mapping=name).weight_mapping == mapping
    n_slices = 4
    stored = mapping.stored_slices(n_slices)
    assert stored == tuple(range(0 if mapping.sign_array else 1, n_slices))
    engine = DPETensor(mapping=name, seed=0)
    widths = [1, 1, 2, 4] if mapping.sign_slice else [2, 2, 2, 2]
    mat = SlicedData(widths, is_weight=True).slice_data_imp(engine, torch.randn(8, 3))
    arrays = engine.programmed(mat)
    assert arrays.slice_index == stored
    assert (arrays.negative is not None) == mapping.pair
    assert arrays.reference_column == mapping.reference_column
