"""Checks of setting values that raise an error naming the setting and its allowed range.

Used by every module that validates settings at construction (:mod:`mpimpy.config`, the
device models in :mod:`mpimpy.devices.models`, the engine's run-time options), so that a
value out of range reads the same wherever it is caught.
"""

from __future__ import annotations

import math
import numbers


def check_real(name: str, value, low=None, high=None, low_open: bool = False,
               high_open: bool = False) -> None:
    """Raise unless ``value`` is a finite real number (not a bool) within ``[low, high]``
    (``low_open`` / ``high_open``: the bound itself excluded; ``None``: unbounded).

    Raises:
        TypeError: not a real number. ValueError: not finite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_int(name: str, value, low: int) -> None:
    """Raise unless ``value`` is an integer (not a bool) ``>= low``.

    Raises:
        TypeError: not an integer. ValueError: below ``low``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


__all__ = ["check_int", "check_real"]
