"""The explorer's widgets, driven from Python: no browser needed."""

import re
from dataclasses import fields

import pytest

from mpimpy.config import CrossbarConfig
from mpimpy.explorer import EXPLORER_DEFAULTS, HARDWARE, Explorer, ExplorerSettings, simulate

SMALL = ExplorerSettings(m=32, k=96, n=24, array_size=32)


def re_of(explorer):
    return float(re.search(r"RE = ([0-9.e+-]+)", explorer.status.value).group(1))


def test_simulate_reports_metrics_and_a_conductance_map():
    result = simulate(SMALL)
    assert result.y_sim.shape == (32, 24) and result.conductance.shape == (32, 32)
    assert 0 < result.metrics["RE"] < 1
    assert (result.conductance >= SMALL.LGS * 0.5).all()
    assert (result.conductance <= SMALL.HGS * 2).all()


def test_moving_sliders_changes_the_result():
    explorer = Explorer(SMALL, debounce_s=0)
    base = re_of(explorer)
    explorer.controls["var"].value = 0.4
    noisy = re_of(explorer)
    assert noisy > base
    explorer.controls["var"].value = 0.0
    explorer.controls["radc"].value = None
    explorer.controls["rdac"].value = None
    explorer.controls["vnoise"].value = 0.0
    ideal = re_of(explorer)
    assert ideal < base  # only quantization left
    assert explorer.updates == 5


def test_bad_input_shows_an_error_and_keeps_the_last_result():
    explorer = Explorer(SMALL, debounce_s=0)
    before = explorer.result
    explorer.controls["x_slice"].value = "2,2,4"
    assert "sign slice" in explorer.status.value
    assert explorer.result is before
    explorer.controls["x_slice"].value = "1,3,4"
    assert "RE =" in explorer.status.value


def test_log_button_records_a_run_named_after_its_settings(store):
    explorer = Explorer(SMALL, debounce_s=0, experiment="explorer-test")
    explorer.controls["x_slice"].value = "1,3,4"
    explorer.controls["var"].value = 0.2
    explorer.controls["mapping"].value = "diffpair"
    explorer.log_button.click()
    run = store.get_run(explorer.logged_run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == (
        "x_slice=[1,3,4],var=0.2,mapping=diffpair,array_size=32,m=32,k=96,n=24")
    params = run.data.params
    assert params["mapping"] == "diffpair" and params["var"] == "0.2"
    assert params["rdac"] == "16" and params["x_slice"] == "[1, 3, 4]" and params["m"] == "32"
    assert not [k for k in params if "." in k]  # one name per setting, no explorer.* copies
    assert abs(run.data.metrics["RE"] - explorer.result.metrics["RE"]) < 1e-12
    artifacts = {a.path for a in store.list_artifacts(run.info.run_id, "plots")}
    assert "plots/explorer.png" in artifacts


@pytest.mark.parametrize("field, value", [("m", 0), ("k", 5000), ("radc", 3), ("rdac", 2**17)])
def test_settings_outside_the_explorer_limits(field, value):
    with pytest.raises(ValueError, match=field):
        ExplorerSettings(**{field: value})


def test_hardware_settings_are_crossbar_configs():
    """Every hardware setting is CrossbarConfig's (name, default), checked at construction."""
    defaults = ExplorerSettings()
    assert HARDWARE == tuple(f.name for f in fields(CrossbarConfig))
    assert set(EXPLORER_DEFAULTS) <= set(HARDWARE)
    for setting in fields(CrossbarConfig):
        expected = EXPLORER_DEFAULTS.get(setting.name, setting.default)
        assert getattr(defaults, setting.name) == expected, setting.name
    assert defaults.engine_kwargs() == {**defaults.hardware(), "seed": 0}
    with pytest.raises(ValueError, match="HGS"):
        ExplorerSettings(HGS=1e-8)
    with pytest.raises(ValueError, match="stuck_fault_ratio"):
        ExplorerSettings(stuck_fault_ratio=2.0)


def test_invalid_settings_mark_the_figures_stale_and_refuse_to_log(store):
    explorer = Explorer(SMALL, debounce_s=0, experiment="explorer-stale")
    figures = {name: image.value for name, image in explorer.images.items()}
    explorer.controls["x_slice"].value = "2,1,2"
    assert explorer.error and "sign slice" in explorer.status.value
    assert "mpimpy-explorer-stale" in explorer.figure_box._dom_classes
    assert "Out of date" in explorer.stale_banner.value and explorer.log_button.disabled
    assert explorer.log() is None and "Not logged" in explorer.log_output.value
    assert store.get_experiment_by_name("explorer-stale") is None  # nothing logged
    assert {name: image.value for name, image in explorer.images.items()} == figures
    explorer.controls["x_slice"].value = "1,1,2,4"  # back to the last valid settings
    assert explorer.error is None and "RE =" in explorer.status.value
    assert "mpimpy-explorer-stale" not in explorer.figure_box._dom_classes
    assert not explorer.log_button.disabled and not explorer.stale_banner.value
    assert explorer.log() is not None


def test_only_the_figures_whose_data_changed_are_redrawn():
    explorer = Explorer(SMALL, debounce_s=0)
    assert explorer.redrawn == {"scatter", "histogram", "conductance"}
    figures = dict(explorer.figures.figures)
    conductance = explorer.images["conductance"].value
    explorer.controls["rdac"].value = 4  # the inputs' DAC: the programmed arrays are the same
    assert explorer.redrawn == {"scatter", "histogram"}
    assert explorer.images["conductance"].value == conductance
    explorer.controls["var"].value = 0.3  # new programming variation: every figure
    assert explorer.redrawn == {"scatter", "histogram", "conductance"}
    assert explorer.figures.figures == figures  # the same figures, new data
    assert set(explorer.timings) == {"simulate", "draw", "total"}


def test_bw_e_is_enabled_in_fp_only_and_axes_have_units():
    explorer = Explorer(SMALL, debounce_s=0)
    assert explorer.controls["bw_e"].disabled
    explorer.controls["fmt"].value = "FP"
    assert not explorer.controls["bw_e"].disabled
    explorer.controls["fmt"].value = "INT"
    assert explorer.controls["bw_e"].disabled
    for figure in explorer.figures.figures.values():
        main, *colorbars = figure.axes
        for label in [main.get_xlabel(), main.get_ylabel()] + [c.get_ylabel() for c in colorbars]:
            assert label and label.endswith(")"), label  # "... (a.u.)", "(count)", "(uS)"
    descriptions = [c.description for c in explorer.controls.values()]
    assert "rdac (levels)" in descriptions and "radc (levels)" in descriptions
    assert all(len(d) <= 22 for d in descriptions)  # fits the 150 px description column
