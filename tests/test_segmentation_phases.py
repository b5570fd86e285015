"""D-LinkNet training batches and loss, and the segmentation phases end to end on phantoms."""

import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import evaluate_segmentation as evaluate_config
from configs import segmentation as segmentation_config
from configs import study_segmentation as study_config
from tiqa import errors, io, phantom
from tiqa.phases import evaluate_segmentation, study_segmentation, train_segmentation
from tiqa.train import segmentation as seg
from tests.tiny_models import export_tiny_score_model


@pytest.mark.slow
def test_augmented_batch_keeps_images_and_labels_aligned():
    rng = np.random.default_rng(0)
    images = [rng.random((70, 90)).astype(np.float32), rng.random((64, 64)).astype(np.float32)]
    labels = [(image > 0.5).astype(np.int32) for image in images]
    pool = seg.build_labelled_pool(images, labels)
    assert int(pool.labels[1, 65, 0]) == -1  # padding is marked, and never cropped into
    batch = jax.jit(lambda p, s: seg.augmented_batch(p, s, key=jax.random.key(0), batch_size=8,
                                                     crop=32, jitter=0.0))(pool, jnp.int32(3))
    assert batch["images"].shape == (8, 32, 32) and batch["labels"].shape == (8, 32, 32)
    np.testing.assert_array_equal(np.asarray(batch["labels"]), np.asarray(batch["images"] > 0.5))
    again = seg.augmented_batch(pool, jnp.int32(3), key=jax.random.key(0), batch_size=8, crop=32, jitter=0.0)
    np.testing.assert_array_equal(batch["images"], again["images"])  # a pure function of the step


def test_augmented_batch_draws_each_of_the_eight_flips_and_turns():
    # A crop the size of the slice is the slice itself, so only the flips and turns remain.
    image = np.arange(32 * 32, dtype=np.float32).reshape(32, 32) / (32 * 32)
    pool = seg.build_labelled_pool([image], [np.arange(32 * 32, dtype=np.int32).reshape(32, 32)])
    batch = seg.augmented_batch(pool, jnp.int32(0), key=jax.random.key(1), batch_size=128,
                                crop=32, jitter=0.0)
    dihedral = [np.rot90(flipped, k) for flipped in (image, image.T) for k in range(4)]
    drawn = [next(i for i, d in enumerate(dihedral) if np.array_equal(d, out))
             for out in np.asarray(batch["images"])]
    assert sorted(set(drawn)) == list(range(8))
    np.testing.assert_array_equal(np.asarray(batch["labels"]) / (32 * 32),
                                  np.asarray(batch["images"]))


@pytest.mark.slow
def test_loss_prefers_the_right_answer_and_ignores_padding():
    labels = jnp.asarray([[[1, 0], [0, -1]]])
    right = jnp.asarray([[[[9.0], [-9.0]], [[-9.0], [9.0]]]])
    wrong = -right
    good, metrics = seg.segmentation_loss(right, labels, bce_weight=1.0, dice_weight=1.0)
    bad, _ = seg.segmentation_loss(wrong, labels, bce_weight=1.0, dice_weight=1.0)
    assert float(good) < 0.01 < float(bad) and float(metrics["dice"]) > 0.99
    three = jax.nn.one_hot(jnp.asarray([[[2, 0], [1, 1]]]), 3) * 20.0 - 10.0
    loss, _ = seg.segmentation_loss(three, jnp.asarray([[[2, 0], [1, 1]]]), bce_weight=1.0, dice_weight=1.0)
    assert float(loss) < 0.01
    assert seg.target_classes(np.asarray([0, 1, 2]), 1, 0).tolist() == [1, 0, 0]


@pytest.fixture(scope="module")
def labelled_phantom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    volume, labels = phantom.phantom_volume(3, n_slices=2, size=96, photons=3e4)
    paths = []
    for index in range(2):
        path = folder / "images" / f"{index}.tif"
        io.write_tiff(path, volume[index])
        io.write_tiff(folder / "labels" / f"{index}_label.tif", labels[index])
        paths.append(str(path))
    return ",".join(paths), str(folder / "labels")


@pytest.mark.slow
def test_segmentation_phases_end_to_end(tmp_path, labelled_phantom):
    images, label_dir = labelled_phantom
    config = segmentation_config.get_config("smoke")
    config.workdir = str(tmp_path / "segmentation")
    config.images, config.labels = images, label_dir
    train_segmentation.run(config)
    info = json.loads((tmp_path / "segmentation" / "model.json").read_text())
    assert info["segmentation_model"]["encoder"] == "resnet18"
    # The finished run is not resumed with another configuration unless that is asked for.
    changed = copy.deepcopy(config)
    changed.intensity_jitter = 0.3
    with pytest.raises(errors.InputError, match=r"intensity_jitter: 0\.1 -> 0\.3"):
        train_segmentation.run(changed)
    evaluation = evaluate_config.get_config()
    evaluation.checkpoint = config.workdir
    evaluation.images, evaluation.labels = images, label_dir
    evaluation.output = str(tmp_path / "evaluation")
    result = evaluate_segmentation.run(evaluation)
    assert 0.0 <= result["pooled"]["f1"] <= 1.0
    for name in ("segmentation.csv", "segmentation.md", "segmentation_0.png", "two_point.png"):
        assert (tmp_path / "evaluation" / name).stat().st_size > 0

    export_tiny_score_model(tmp_path / "score_model")
    study = study_config.get_config()
    study.score_checkpoint = str(tmp_path / "score_model")
    study.segmentation_checkpoint = config.workdir
    study.images, study.labels = images, label_dir
    study.output = str(tmp_path / "study")
    outcome = study_segmentation.run(study)
    assert [row["kind"] for row in outcome["table"]] == ["blur", "noise", "ring", "overall"]
    assert len(outcome["rows"]) == 2 * (1 + 3 * 5)
    for name in ("table1.csv", "table1.md", "study.csv", "score_vs_f1.png", "two_point_levels.png"):
        assert (tmp_path / "study" / name).stat().st_size > 0


def test_table_one_counts_and_correlates_its_rows():
    from scipy import stats

    # Two slices: an original each, then blur levels 1-2 and noise levels 1-2.
    rows = []
    for n, (score0, f10) in enumerate(((4.0, 0.95), (3.5, 0.9))):
        rows.append({"slice": str(n), "kind": "original", "level": 0, "score": score0, "f1": f10})
        for kind, slope in (("blur", (0.5, 0.03)), ("noise", (0.2, 0.1))):
            for level in (1, 2):
                rows.append({"slice": str(n), "kind": kind, "level": level,
                             "score": score0 - slope[0] * level + 0.01 * n,
                             "f1": f10 - slope[1] * level * (1 + n)})
    table = {row["kind"]: row for row in study_segmentation.table_one(rows, ("blur", "noise"))}
    assert list(table) == ["blur", "noise", "overall"]
    # Each kind's series: its 4 distorted slices and the 2 originals; overall: all 10 rows.
    assert [table[k]["n"] for k in ("blur", "noise", "overall")] == [6, 6, 10], table
    for kind in ("blur", "noise", "overall"):
        chosen = [r for r in rows if kind == "overall" or r["kind"] in (kind, "original")]
        scores = [r["score"] for r in chosen]
        f1s = [r["f1"] for r in chosen]
        assert table[kind]["srocc"] == pytest.approx(stats.spearmanr(scores, f1s)[0]), kind
        assert table[kind]["mean_f1"] == pytest.approx(np.mean(f1s))


@pytest.mark.parametrize("ring_check, view_penalty, centre_penalty",
                         [(True, False, True), (False, True, False)])
def test_study_scores_with_the_penalties_its_config_asks_for(monkeypatch, tmp_path, ring_check,
                                                             view_penalty, centre_penalty):
    from tiqa import checkpoints, scoring

    class _Stop(Exception):
        pass

    asked = {}

    def slice_scorer(loaded, crops, with_ring_check=True, with_view_penalty=True,
                     with_centre_penalty=True, own_pixels=False, with_noise_check=True):
        asked.update(ring=with_ring_check, views=with_view_penalty, centre=with_centre_penalty,
                     own_pixels=own_pixels, noise=with_noise_check, loaded=loaded)
        raise _Stop

    monkeypatch.setattr(checkpoints, "load_segmenter", lambda path: None)
    monkeypatch.setattr(checkpoints, "positive_class", lambda path: 0)
    monkeypatch.setattr(checkpoints, "load_model", lambda path: f"model {path}")
    monkeypatch.setattr(scoring, "make_slice_scorer", slice_scorer)
    study = study_config.get_config()
    study.score_checkpoint, study.ring_check, study.view_penalty = "scores", ring_check, view_penalty
    study.centre_penalty = centre_penalty
    study.noise_penalty = view_penalty
    study.own_pixels = ring_check  # on in one case, off in the other
    study.output = str(tmp_path / "study")
    with pytest.raises(_Stop):
        study_segmentation.run(study)
    assert asked == {"ring": ring_check, "views": view_penalty, "centre": centre_penalty,
                     "own_pixels": ring_check, "noise": view_penalty, "loaded": "model scores"}


def test_table_over_segmenters_gives_the_mean_f1_table_and_each_segmenters_spread():
    import statistics

    from scipy import stats

    rng = np.random.default_rng(3)
    rows = []
    for n in range(3):
        for kind, level in (("original", 0), ("blur", 1), ("blur", 2), ("noise", 1), ("noise", 2)):
            own = rng.random(3)
            rows.append({"slice": str(n), "kind": kind, "level": level, "score": rng.random(),
                         "f1": float(own.mean()), **{f"f1_seg{i + 1}": own[i] for i in range(3)}})
    table = {row["kind"]: row for row in study_segmentation.table_over_segmenters(
        rows, ("blur", "noise"), 3)}
    for kind in ("blur", "noise", "overall"):
        chosen = [r for r in rows if kind == "overall" or r["kind"] in (kind, "original")]
        scores = [r["score"] for r in chosen]
        mean_f1 = [np.mean([r[f"f1_seg{i}"] for i in (1, 2, 3)]) for r in chosen]
        assert table[kind]["srocc"] == pytest.approx(stats.spearmanr(scores, mean_f1)[0]), kind
        own = [stats.spearmanr(scores, [r[f"f1_seg{i}"] for r in chosen])[0] for i in (1, 2, 3)]
        assert table[kind]["srocc_mean_over_segmenters"] == pytest.approx(np.mean(own)), kind
        assert table[kind]["srocc_sd_over_segmenters"] == pytest.approx(statistics.stdev(own)), kind
        own = [stats.pearsonr(scores, [r[f"f1_seg{i}"] for r in chosen])[0] for i in (1, 2, 3)]
        assert table[kind]["plcc_mean_over_segmenters"] == pytest.approx(np.mean(own)), kind
        assert table[kind]["plcc_sd_over_segmenters"] == pytest.approx(statistics.stdev(own)), kind


@pytest.mark.slow
def test_study_with_two_segmenters_equals_the_two_studies_with_one(monkeypatch, tmp_path):
    """Each image is segmented by every checkpoint listed: its F1 per segmenter is the one a
    study with that segmenter alone gives, its "f1" their mean, and Table 1's spread the
    two single tables' mean and SD."""
    import statistics
    import types

    from tiqa import checkpoints, scoring

    slices = [phantom.microstructure(seed, (64, 64)) for seed in (5, 6)]
    images = [(a - a.min()) / (a.max() - a.min()) for a, _ in slices]
    label_maps = [labels.astype(np.int32) for _, labels in slices]

    class Thresholder:
        """A segmenter that calls class 0 where the slice is above `level`."""
        def __init__(self, level):
            self.level, self.config = level, types.SimpleNamespace(num_classes=2)

        def probabilities(self, batch):
            above = (np.asarray(batch) > self.level).astype(np.float32)
            return np.stack([above, 1.0 - above], axis=-1)

    levels = {"low": 0.35, "high": 0.6}
    monkeypatch.setattr(checkpoints, "load_segmenter", lambda path: Thresholder(levels[path]))
    monkeypatch.setattr(checkpoints, "positive_class", lambda path: 0)
    monkeypatch.setattr(checkpoints, "load_model", lambda path: None)
    monkeypatch.setattr(scoring, "make_slice_scorer",
                        lambda loaded, crops, **penalties: lambda slices: (
                            -np.abs(np.diff(slices, axis=-1)).mean(axis=(-2, -1)), None, 1))
    monkeypatch.setattr(study_segmentation, "held_out",
                        lambda *args: (["a.tif", "b.tif"], images, label_maps))

    def study(checkpoint, name):
        config = study_config.get_config()
        config.segmentation_checkpoint, config.output = checkpoint, str(tmp_path / name)
        config.kinds, config.figure_kind = ("blur", "noise"), "blur"
        return study_segmentation.run(config)

    low, high, both = study("low", "low"), study("high", "high"), study("low,high", "both")
    assert len(both["rows"]) == len(low["rows"]) == 2 * (1 + 2 * 5)
    for row, one, other in zip(both["rows"], low["rows"], high["rows"]):
        assert row["score"] == one["score"] == other["score"]
        assert (row["f1_seg1"], row["f1_seg2"]) == (one["f1"], other["f1"])
        assert row["f1"] == pytest.approx((one["f1"] + other["f1"]) / 2)
    assert any(one["f1"] != other["f1"] for one, other in zip(low["rows"], high["rows"]))
    for row, one, other in zip(both["table"], low["table"], high["table"]):
        singles = [one["srocc"], other["srocc"]]
        assert row["srocc_mean_over_segmenters"] == pytest.approx(np.mean(singles))
        assert row["srocc_sd_over_segmenters"] == pytest.approx(statistics.stdev(singles))
    written = (tmp_path / "both" / "table1.md").read_text()
    assert "seg1 = low, seg2 = high" in written and "srocc_sd_over_segmenters" in written
    assert "f1_seg2" in (tmp_path / "both" / "study.csv").read_text().splitlines()[0]
    assert "over_segmenters" not in (tmp_path / "low" / "table1.csv").read_text()


def test_study_refuses_an_empty_segmenter_list():
    config = study_config.get_config()
    config.segmentation_checkpoint = " , "
    with pytest.raises(errors.InputError, match="segmentation_checkpoint is empty"):
        study_segmentation.read_settings(config)


def test_study_names_a_missing_segmenter_and_writes_nothing(tmp_path):
    config = study_config.get_config()
    config.segmentation_checkpoint = f"{tmp_path / 'missing'}"
    config.output = str(tmp_path / "study")
    with pytest.raises(FileNotFoundError, match="missing: no such model folder"):
        study_segmentation.run(config)
    assert not (tmp_path / "study").exists()
