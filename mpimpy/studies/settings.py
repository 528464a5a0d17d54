"""Check the simulator settings of every point of a study before anything runs.

A study's notebook passes its hardware parameters to :class:`mpimpy.DPETensor` under the same
names (``var``, ``mapping``, ``radc``, ...) and its slicing parameters to
:class:`mpimpy.SlicedData` (``x_slice``, ``w_slice``, ``bw_e``, ...), as the shipped notebooks
do (``docs/studies.md``). So the values each point gives them, on top of the notebook's own
defaults, are checked here by the simulator's own validation: the
:class:`~mpimpy.config.CrossbarConfig` a point would build, its slice methods against the
device's ``g_level``, its exponent width and array size. ``mapping: [diffpiar]``,
``var: [-0.1]`` or ``fmt: [int]`` then fail ``mpimpy study validate`` in a second, all at once,
instead of becoming FAILED runs one attempt at a time.

Conventions read from the notebook
    ``rdac``/``radc`` of 0 mean an ideal converter (``None``) in a notebook whose parameter
    cannot be ``None`` (``radc: int = 256  # 0: an ideal ADC``); where it may be ``None``, 0 is
    refused as the engine refuses it. ``device_model: measured`` brings the shipped table's
    ``LGS``, ``HGS`` and ``g_level`` unless the point sets them, as the notebooks build it
    (:func:`mpimpy.drift.engine_settings`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from mpimpy.studies.spec import NotebookParameter, Point, Study

#: Number formats of the notebooks' ``fmt`` parameter: integer or block floating point.
FORMATS = ("INT", "FP")
#: Slice methods of the left operand (inputs) and of the programmed one (weights).
INPUT_SLICES = ("x_slice", "xblk")
WEIGHT_SLICES = ("w_slice", "mblk")


def _engine_fields() -> tuple[str, ...]:
    from mpimpy.config import CrossbarConfig

    return tuple(f.name for f in fields(CrossbarConfig))


def _culprit(message: str, names) -> str | None:
    """The setting a CrossbarConfig error is about: its messages start with the name."""
    first = message.split(" ", 1)[0]
    if first in names:
        return first
    if "wire_resistance" in message:
        return "wire_resistance"
    return None


def _engine_problems(values: dict[str, Any], declared: dict[str, NotebookParameter]):
    """``(setting, message)`` for each hardware setting the engine would refuse, and the
    valid settings (``CrossbarConfig``), or ``None`` when some are refused."""
    from mpimpy.config import CrossbarConfig

    names = _engine_fields()
    kwargs = {k: values[k] for k in names if k in values}
    for name in ("rdac", "radc"):
        types = declared[name].types if name in declared else None
        if kwargs.get(name) == 0 and types is not None and "NoneType" not in types:
            kwargs[name] = None  # the notebook's own spelling of an ideal converter
    if kwargs.get("device_model") == "measured":
        # a measured table named as such brings its own levels, as the notebooks build it
        # (mpimpy.drift.engine_settings): the conductances and levels it programs
        from mpimpy.drift import engine_settings

        table = engine_settings("measured")
        kwargs = {**{k: v for k, v in table.items() if k not in values}, **kwargs,
                  "device_model": table["device_model"]}
    problems = []
    while True:
        try:
            config = CrossbarConfig(**kwargs)
        except (TypeError, ValueError) as exc:
            name = _culprit(str(exc), kwargs)
            problems.append((name, str(exc)))
            if name is None:
                return problems, None
            del kwargs[name]  # look for more problems with that setting at its default
        else:
            return problems, (None if problems else config)


def _slicing_problems(values: dict[str, Any], config):
    from mpimpy.config import TileShape
    from mpimpy.devices import check_widths
    from mpimpy.slicing import SlicedData, parse_slice_method

    problems = []

    def check(name, fn):
        try:
            fn()
        except (TypeError, ValueError) as exc:
            problems.append((name, str(exc)))

    if "fmt" in values and values["fmt"] not in FORMATS:
        problems.append(
            ("fmt", "fmt must be 'INT' (integer) or 'FP' (block floating point), got "
                    f"{values['fmt']!r}")
        )
    for name in INPUT_SLICES:
        if name in values:
            check(name, lambda name=name: parse_slice_method(values[name], name))
    for name in WEIGHT_SLICES:
        if name in values:

            def weights(name=name):
                widths = parse_slice_method(values[name], name)
                if config is not None:
                    check_widths(widths, config.g_level, name,
                                 skip_sign=not config.weight_mapping.sign_array)

            check(name, weights)
    if values.get("bw_e") is not None:
        check("bw_e", lambda: SlicedData((1, 1), bw_e=values["bw_e"]))
    if "paral_size" in values:
        check("paral_size", lambda: TileShape.parse(values["paral_size"]))
    if "array_size" in values:

        def array_size():
            size = values["array_size"]
            try:
                TileShape(size, size)
            except (TypeError, ValueError):
                raise ValueError(
                    f"array_size (rows = columns of each array) must be an integer >= 1, "
                    f"got {size!r}"
                ) from None

        check("array_size", array_size)
    return problems


def point_problems(point: Point, declared: dict[str, NotebookParameter]) -> list[tuple[str, str]]:
    """``(setting, message)`` for each setting of ``point`` that the simulator would refuse.

    The point's values are taken on top of the notebook's literal defaults, so a grid that sets
    ``mapping: diffpair`` is checked against the notebook's own ``radc``.
    """
    values = {name: spec.default for name, spec in declared.items() if spec.known}
    values.update(point.parameters)
    problems, config = _engine_problems(values, declared)
    return problems + _slicing_problems(values, config)


def check_settings(study: Study, points: list[Point]) -> list[str]:
    """Problems of all ``points``, one line per study-file key and message, with how many points
    (and which one first) it affects; empty when every point is valid."""
    declared = study.notebook_parameters or {}
    found: dict[tuple[str, str], list[Point]] = {}
    cache: dict[str, list[tuple[str, str]]] = {}
    relevant = set(_engine_fields()) | {"fmt", "bw_e", "paral_size", "array_size"}
    relevant |= set(INPUT_SLICES) | set(WEIGHT_SLICES)
    for point in points:
        key = repr(sorted((k, v) for k, v in point.parameters.items() if k in relevant))
        if key not in cache:
            cache[key] = point_problems(point, declared)
        for name, message in cache[key]:
            if name in point.sources:
                source = f"key '{point.sources[name]}'"
            else:  # the notebook's own default (or a combination of settings)
                source = f"the notebook's default {name}" if name else "settings"
            found.setdefault((source, message), []).append(point)
    lines = []
    for (source, message), affected in found.items():
        share = "every point" if len(affected) == len(points) else (
            f"{len(affected)} of {len(points)} points, e.g. {affected[0].run_name}"
        )
        lines.append(f"{source}: {message} ({share})")
    return lines


__all__ = ["FORMATS", "check_settings", "point_problems"]
