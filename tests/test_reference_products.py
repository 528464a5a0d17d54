"""Seeded products are bit-identical to those of the engine before its split into stages
(the reference in tests/data/reference_products.pt, written by tests/reference_products.py)."""

from __future__ import annotations

import pytest
import torch
from reference_products import CASES, REFERENCE

_REFERENCE = torch.load(REFERENCE)


def test_reference_holds_every_case():
    assert set(_REFERENCE) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_product_is_bit_identical_to_the_reference(name):
    y = CASES[name]()
    expected = _REFERENCE[name]
    assert y.dtype == expected.dtype and y.shape == expected.shape
    assert torch.equal(y, expected)
