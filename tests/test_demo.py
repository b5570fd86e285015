"""The demo and the shipped default model."""

import pathlib

import numpy as np
import pytest

from configs import demo as demo_config
from tiqa import checkpoints, phantom, scoring
from tiqa.phases import demo
from tests.tiny_models import export_tiny_score_model


@pytest.mark.slow
def test_demo_runs_on_its_own_phantoms(tmp_path, capsys):
    export_tiny_score_model(tmp_path / "model")
    config = demo_config.get_config()
    config.workdir = str(tmp_path / "demo")
    config.slices, config.size = 2, 96
    config.score.checkpoint = str(tmp_path / "model")
    result = demo.run(config)
    printed = capsys.readouterr().out
    assert "index.html" in printed and "median score: good acquisition" in printed
    assert pathlib.Path(result["report"]).exists()
    assert set(result["medians"]) == {"good", "poor"}


@pytest.mark.slow
def test_shipped_model_is_small_and_prefers_the_better_scan():
    folder = checkpoints.DEFAULT_MODEL
    if not (folder / checkpoints.EXPORTED_PARAMS).exists():
        pytest.fail(f"the default model is missing from {folder}")
    assert (folder / checkpoints.EXPORTED_PARAMS).stat().st_size <= 25 * 2**20
    loaded = checkpoints.load_model("")
    assert loaded.ring_penalty is not None and loaded.ring_penalty.slope > 0
    score = scoring.make_slice_scorer(loaded, "center")
    network = scoring.make_slice_scorer(loaded, "center", with_ring_check=False)
    medians, penalties = {}, {}
    for name, photons, gain in (("good", 1e5, 0.0005), ("poor", 3e3, 0.006),
                                ("ringed", 1e5, 0.02)):
        volume, _ = phantom.phantom_volume(7, n_slices=3, size=256, photons=photons,
                                              gain_error_std=gain)
        slices = phantom.to_unit_range(volume)
        scores = score(slices)[0]
        medians[name] = float(np.median(scores))
        penalties[name] = float(np.median(network(slices)[0] - scores))
    assert medians["good"] > max(medians["poor"], medians["ringed"]), medians
    # Gain errors of 2 % cost a scan through the ring check; 0.05 % do not. (The poor scan's
    # rings hide in its noise, and 1 % rings in this phantom's high-contrast texture, below
    # the ring floor: the network's business.) 2 % measure about 0.017 here: 0.195 points
    # under the shipped fit (26.8 points per unit above 0.01).
    assert penalties["good"] < 0.02 and penalties["ringed"] > 0.1, penalties
    # A scan of 90 views (a quarter of what 256 px need) costs about a point through the view
    # penalty; the same scan with 360 views costs nothing.
    assert loaded.view_penalty is not None and loaded.view_penalty.floor == 12.0
    without_views = scoring.make_slice_scorer(loaded, "center", with_view_penalty=False)
    for angles, low, high in ((90, 0.5, 1.5), (360, -1e-5, 1e-5)):  # two programs: rounding
        volume, _ = phantom.phantom_volume(7, n_slices=2, size=256, photons=1e5,
                                           gain_error_std=0.0005, n_angles=angles)
        slices = phantom.to_unit_range(volume)
        cost = without_views(slices)[0] - score(slices)[0]
        assert np.all((cost >= low) & (cost <= high)), (angles, cost)
