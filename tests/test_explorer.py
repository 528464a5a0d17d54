"""The explorer's widgets, driven from Python: no browser needed."""

import re

import pytest

from mpimpy.explorer import Explorer, ExplorerSettings, simulate

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
    explorer.controls["adc_bits"].value = 0
    explorer.controls["dac_bits"].value = 0
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


def test_log_button_records_a_run(store):
    explorer = Explorer(SMALL, debounce_s=0, experiment="explorer-test")
    explorer.controls["mapping"].value = "diffpair"
    explorer.log_button.click()
    run = store.get_run(explorer.logged_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["mapping"] == "diffpair"
    assert abs(run.data.metrics["RE"] - explorer.result.metrics["RE"]) < 1e-12
    artifacts = {a.path for a in store.list_artifacts(run.info.run_id, "plots")}
    assert "plots/explorer.png" in artifacts


@pytest.mark.parametrize("field, value", [("m", 0), ("k", 5000), ("adc_bits", 20)])
def test_settings_outside_the_explorer_limits(field, value):
    with pytest.raises(ValueError, match=field):
        ExplorerSettings(**{field: value})
