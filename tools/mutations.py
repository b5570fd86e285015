"""Mutation checks: does a small planted bug make the tests that cover it fail?

Each mutation is a list of exact edits (file, original snippet, replacement) and the tests that
should catch it. For each one the tracked files of the repository are copied to a temporary
folder, the edits applied there (an original snippet that is not found exactly once stops the
tool: the mutation list no longer matches the code), and the named tests run there with this
interpreter, PYTHONPATH set to the copy, and a timeout. A mutation is CAUGHT when the tests
fail, SURVIVED when they pass. The exit code is non-zero if any survived (or errored).

    .venv/bin/python tools/mutations.py            # every mutation
    .venv/bin/python tools/mutations.py --list     # their names and tests
    .venv/bin/python tools/mutations.py --check    # every edit applies exactly once (no tests)
    .venv/bin/python tools/mutations.py --only rank_loss_reversed,comparison_no_flip
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    why: str
    edits: tuple[tuple[str, str, str], ...]  # (file, exact original snippet, replacement)
    tests: tuple[str, ...]  # pytest node ids (or files) that must fail
    keyword: str = ""  # optional -k expression
    timeout: int = 300


MUTATIONS = (
    # --- The audit's seven (issue 13) ---------------------------------------------------------
    Mutation("select_filter_scores_unfiltered", "select_filter scores the unfiltered slices",
             (("tiqa/phases/select_filter.py", "            scores = score_all(filtered)\n",
               "            scores = score_all(slices)\n"),),
             ("tests/test_scoring.py::test_select_filter_ranks_by_a_known_scorer",)),
    Mutation("ablation_summary_max", "the ablation summary takes the max instead of the mean",
             (("tiqa/phases/ablate.py", 'entry[f"{metric}_mean"] = float(np.mean(values))',
               'entry[f"{metric}_mean"] = float(np.max(values))'),),
             ("tests/test_ablation.py::test_summary_is_the_mean_and_sample_std_over_seeds",)),
    Mutation("ablation_summary_ddof0", "the ablation summary's std has ddof 0",
             (("tiqa/phases/ablate.py", "np.std(values, ddof=1)", "np.std(values, ddof=0)"),),
             ("tests/test_ablation.py::test_summary_is_the_mean_and_sample_std_over_seeds",)),
    Mutation("rank_loss_reversed", "the rank loss is applied to -scores (learns the reverse order)",
             (("tiqa/train/losses.py", 'loss = hinge_rank_loss(scores, batch["levels"]',
               'loss = hinge_rank_loss(-scores, batch["levels"]'),),
             ("tests/test_train.py::test_rank_training_learns_the_order_of_a_fixed_batch",)),
    Mutation("comparison_no_flip", "the comparison never flips lower-is-better metrics",
             (("tiqa/comparison.py",
               "    return scores if contender.higher_is_better else -scores\n",
               "    return scores\n"),),
             ("tests/test_comparison.py::test_a_lower_is_better_metric_is_read_the_right_way_round",)),
    Mutation("dlinknet_no_centre", "D-LinkNet skips its dilated centre block",
             (("tiqa/models/dlinknet.py", "centre = self.dblock(e4)", "centre = e4"),),
             ("tests/test_dlinknet.py::test_forward_equals_a_reference_built_from_its_parts",)),
    Mutation("dlinknet_drops_a_skip", "D-LinkNet drops the e2 skip connection",
             (("tiqa/models/dlinknet.py", "d3 = self.decoder3(d4, train=train) + e2",
               "d3 = self.decoder3(d4, train=train)"),),
             ("tests/test_dlinknet.py::test_forward_equals_a_reference_built_from_its_parts",)),
    Mutation("dblock_wrong_dilation", "the centre block's last convolution is not dilated 8",
             (("tiqa/models/dlinknet.py",
               "self.dilate4 = _conv(channels, channels, 3, config, rngs, dilation=8)",
               "self.dilate4 = _conv(channels, channels, 3, config, rngs, dilation=4)"),),
             ("tests/test_dlinknet.py::test_centre_block_equals_a_numpy_reference",)),
    Mutation("finetune_discards_rank_weights",
             "the fine-tune restores the rank weights, then trains fresh ones",
             (("tiqa/phases/finetune.py",
               "        model = checkpoints.abstract_network(IQANet, model_cfg)\n",
               "        model = build_model(model_cfg, model_key)\n"),
              ("tiqa/phases/finetune.py",
               "        state = state.replace(params=start.params, batch_stats=start.batch_stats)\n",
               "        state = state.replace(batch_stats=start.batch_stats)\n")),
             ("tests/test_train.py::test_finetune_starts_from_the_rank_checkpoint_and_measures_statistics",)),
    Mutation("slice_scorer_first_crop", "the slice scorer uses the first crop only, spread 0",
             (("tiqa/scoring.py", "                mean = scores.mean(axis=1)\n",
               "                mean = scores[:, 0]\n"),
              ("tiqa/scoring.py",
               "                return penalties.onto_scale(mean), scores.std(axis=1)",
               "                return penalties.onto_scale(mean), jnp.zeros_like(mean)"),),
             ("tests/test_scoring.py::test_slice_scores_equal_a_step_by_step_reference",)),
    # --- Table 1 ------------------------------------------------------------------------------
    Mutation("table1_drops_originals", "Table 1's per-kind series leave out the originals",
             (("tiqa/phases/study_segmentation.py",
               'chosen = [r for r in rows if r["kind"] in (kind, "original") or kind == "overall"]',
               'chosen = [r for r in rows if r["kind"] == kind or kind == "overall"]'),),
             ("tests/test_segmentation_phases.py::test_table_one_counts_and_correlates_its_rows",)),
    # --- Our own, in the places that matter -------------------------------------------------
    Mutation("labels_ignore_reference_score", "label projection ignores the human score S0",
             (("tiqa/labels.py", "    s0 = reference_scores[:, None, None, None]\n",
               "    s0 = jnp.full_like(reference_scores, 5.0)[:, None, None, None]\n"),),
             ("tests/test_labels.py",), keyword="hand_computed or averaged"),
    Mutation("labels_max_over_observers", "the label is the max, not the mean, over observers",
             (("tiqa/labels.py", "    return jnp.mean(per_observer, axis=-1)\n",
               "    return jnp.max(per_observer, axis=-1)\n"),),
             ("tests/test_labels.py",), keyword="hand_computed or averaged"),
    Mutation("population_var_within_batches_only",
             "population BatchNorm variance misses the spread between batches",
             (("tiqa/train/loop.py", '"var": variances.mean(0) + means.var(0)',
               '"var": variances.mean(0)'),),
             ("tests/test_train.py::test_population_batch_stats_are_those_of_all_the_data",)),
    Mutation("acquisition_no_centre_offset", "the acquisition model ignores the centre offset",
             (("tiqa/acquisition.py", "shifts = settings.centre_offset + settings.drift",
               "shifts = 0.0 * settings.centre_offset + settings.drift"),),
             ("tests/test_acquisition.py",), keyword="deterministic_factors"),
    Mutation("acquisition_centre_offset_moves", "a centre offset moves the reconstruction "
             "(its rigid translation is left in)",
             (("tiqa/acquisition.py",
               "return shifts - jnp.asarray(design) @ (jnp.asarray(pseudo_inverse) @ shifts)",
               "return shifts + 0.0 * (jnp.asarray(design) @ (jnp.asarray(pseudo_inverse) @ shifts))"),),
             ("tests/test_acquisition.py",), keyword="moving or rigid"),
    Mutation("whole_batch_kernel_sum_drops_an_image", "on a GPU the hand-written kernel "
             "gradients (pointwise and depthwise) leave the first image of the batch out",
             (("tiqa/models/efficientnet.py",
               "        return initial + term(*arrays)",
               "        return initial + term(*(a[1:] for a in arrays))"),),
             ("tests/test_models.py",), keyword="gpu_whole_batch"),
    Mutation("transposed_conv_phases_interleaved_wrongly", "the transposed convolution's "
             "depth-to-space puts each output phase's rows and columns in the wrong order",
             (("tiqa/models/dlinknet.py",
               "y = y.reshape(n, rows, cols, s, s, cout).transpose(0, 1, 3, 2, 4, 5)",
               "y = y.reshape(n, rows, cols, s, s, cout).transpose(0, 1, 4, 2, 3, 5)"),),
             ("tests/test_dlinknet.py",), keyword="transposed_conv"),
    Mutation("ring_detail_against_running_mean", "the ring check takes the radial detail "
             "against a running mean, so a concentric step (a sample's edge) counts as rings",
             (("tiqa/ring_check.py",
               "    detail = profiles[:, half:bins - half] - jnp.median(windows, axis=-1)",
               "    detail = profiles[:, half:bins - half] - jnp.mean(windows, axis=-1)"),),
             ("tests/test_ring_check.py",), keyword="cylindrical"),
    Mutation("ring_power_mean_over_radii", "the ring check averages over radii instead of "
             "taking the median, so a few isolated rings (the paper's) count as a detector's",
             (("tiqa/ring_check.py",
               "    return jnp.median(per_radius)",
               "    return per_radius.mean()"),),
             ("tests/test_ring_check.py",), keyword="isolated"),
    Mutation("ring_null_not_taken_off", "the ring check keeps what its search finds beside "
             "the axis, so texture alone measures as rings",
             (("tiqa/ring_check.py",
               "        return jnp.sqrt(jnp.maximum(best[0] - best[1:].max(), 0.0))",
               "        return jnp.sqrt(jnp.maximum(best[0], 0.0))"),),
             ("tests/test_ring_check.py",), keyword="texture_is_not"),
    Mutation("ring_penalty_uncapped_in_the_slice_scorer", "whole slices lose the ring slope "
             "times the amplitude without the cap",
             (("tiqa/penalties.py",
               "    return xp.clip(xp.asarray(measures) - floor, 0.0, cap - floor)",
               "    return xp.maximum(xp.asarray(measures) - floor, 0.0)"),),
             ("tests/test_ring_check.py",), keyword="penalty"),
    Mutation("ring_floor_lost_on_export", "an exported model forgets its ring floor, so a "
             "loaded model charges for the measure's own noise",
             (("tiqa/penalties.py",
               '        found = {"slope": self.slope, "cap": self.cap, "floor": self.floor}',
               '        found = {"slope": self.slope, "cap": self.cap}'),),
             ("tests/test_ring_check.py",), keyword="penalty"),
    Mutation("calibration_keeps_the_network_scores", "the penalty calibration reports and "
             "writes the network's scores as the penalised ones",
             (("tiqa/phases/calibrate.py",
               "    penalised = network - np.asarray(penalty(measure))",
               "    penalised = network + 0 * np.asarray(penalty(measure))"),),
             ("tests/test_penalties.py",), keyword="calibration_phase"),
    Mutation("calibration_views_fitted_without_the_ring_check", "the view penalty is fitted "
             "on the network alone, not on the score with its ring check",
             (("tiqa/phases/calibrate.py",
               "                                  with_ring_check=name != \"ring_check\",",
               "                                  with_ring_check=False,"),),
             ("tests/test_penalties.py",), keyword="calibration_phase"),
    Mutation("study_ignores_its_ring_check_key", "the segmentation study scores with the "
             "ring check whatever its config says, so the network-alone column is not one",
             (("tiqa/phases/study_segmentation.py",
               "    score = scoring.make_slice_scorer(score_model, study.crops, with_ring_check=study.ring_check,",
               "    score = scoring.make_slice_scorer(score_model, study.crops, with_ring_check=True,"),),
             ("tests/test_segmentation_phases.py",), keyword="penalties"),
    Mutation("study_mean_f1_is_the_first_segmenters", "with several D-LinkNets the study's F1 "
             "is the first segmenter's, not their mean",
             (("tiqa/phases/study_segmentation.py",
               '"level": level, "score": tiqa_score, "f1": float(np.mean(f1s)),',
               '"level": level, "score": tiqa_score, "f1": float(f1s[0]),'),),
             ("tests/test_segmentation_phases.py",), keyword="segmenters"),
    Mutation("study_spread_is_the_population_sd", "the spread of Table 1 over segmenters "
             "divides by n, not n - 1, and so understates it for a few trainings",
             (("tiqa/phases/study_segmentation.py",
               'spread[f"{measure}_sd_over_segmenters"] = float(values.std(ddof=1))',
               'spread[f"{measure}_sd_over_segmenters"] = float(values.std())'),),
             ("tests/test_segmentation_phases.py",), keyword="segmenters"),
    Mutation("study_makes_its_folder_before_loading", "the study makes its output folder "
             "before its segmenters load, so a missing checkpoint leaves an empty folder behind",
             (("tiqa/phases/study_segmentation.py",
               "    study = read_settings(config)\n",
               "    study = read_settings(config)\n    pathlib.Path(study.output).mkdir(parents=True, exist_ok=True)\n"),),
             ("tests/test_segmentation_phases.py",), keyword="missing_segmenter"),
    Mutation("ladder_segmentation_against_level_one", "the benchmark's segmentation F1 "
             "compares each acquisition with the first worse level, not the ideal one",
             (("tiqa/acquisition_ladder.py",
               "    ideal = np.broadcast_to(masks[:, :, :1], masks.shape)",
               "    ideal = np.broadcast_to(masks[:, :, 1:2], masks.shape)"),),
             ("tests/test_acquisition_training.py",), keyword="smoke_writes"),
    Mutation("ladder_segmentation_first_segmenter_only", "with several D-LinkNets the "
             "benchmark's segmentation F1 is the first one's, not their mean",
             (("tiqa/phases/evaluate_acquisition.py",
               "    return np.mean(agreement, axis=0)",
               "    return agreement[0]"),),
             ("tests/test_acquisition_training.py",), keyword="smoke_writes"),
    Mutation("ladder_makes_its_folder_before_loading_segmenters", "the benchmark makes its "
             "output folder before its segmenters load, so a missing one leaves a folder behind",
             (("tiqa/phases/evaluate_acquisition.py",
               "    config = read_settings(config)\n    segmenters",
               "    config = read_settings(config)\n    pathlib.Path(config.output).mkdir(parents=True)\n    segmenters"),),
             ("tests/test_acquisition_training.py",), keyword="missing_segmenter"),
    Mutation("smooth_objects_sharp_edges", "smooth label-map objects keep their sharp "
             "phase boundaries (no Gaussian), so soft edges never reach training",
             (("tiqa/objects.py",
               "    values = ndimage.gaussian_filter(values, rng.uniform(*SMOOTH_EDGE_RANGE), mode=\"nearest\")\n",
               "    rng.uniform(*SMOOTH_EDGE_RANGE)\n"),),
             ("tests/test_acquisition_training.py",), keyword="smooth_label_objects"),
    Mutation("smooth_objects_blurred_after_texture", "smooth objects are blurred again "
             "after their texture is drawn, which flattens the texture",
             (("tiqa/objects.py",
               "    values = np.maximum(values, 0.0) / float(values.max())\n",
               "    values = ndimage.gaussian_filter(values, 6.0, mode=\"nearest\")\n"
               "    values = np.maximum(values, 0.0) / float(values.max())\n"),),
             ("tests/test_acquisition_training.py",), keyword="smooth_label_objects"),
    Mutation("smooth_objects_out_of_the_bank_description", "a ladder bank cached without "
             "its smooth label maps is read back for settings that name them",
             (("tiqa/train/batches.py",
               '        physics["smooth_label_maps"] = settings.smooth_label_maps',
               "        pass"),),
             ("tests/test_acquisition_training.py",), keyword="smooth_label_maps_join"),
    Mutation("rank_loss_counts_left_out_images", "the hinge rank loss still orders images "
             "of weight 0 (ladders left out of training)",
             (("tiqa/train/losses.py",
               "    if weights is not None:\n        ordered = ordered & (weights[:, None] > 0)",
               "    if False:\n        ordered = ordered & (weights[:, None] > 0)"),),
             ("tests/test_train.py",), keyword="weight_zero"),
    Mutation("mse_counts_left_out_images", "the fine-tune's MSE still fits images of weight 0",
             (("tiqa/train/losses.py",
               "    if weights is None:\n        return jnp.mean((scores - targets) ** 2)",
               "    if True:\n        return jnp.mean((scores - targets) ** 2)"),),
             ("tests/test_train.py",), keyword="weight_zero"),
    Mutation("ladder_weights_lost_in_batches", "batches weigh every ladder image 1, so the "
             "smooth objects' left-out ladders train after all",
             (("tiqa/train/batches.py",
               "    extra = dict(extra, weights=jnp.broadcast_to(weights[:, :, None], ladders.shape[:3]))",
               "    extra = dict(extra, weights=jnp.ones(ladders.shape[:3], jnp.float32))"),),
             ("tests/test_acquisition_training.py",), keyword="weight_zero_in_batches"),
    Mutation("ladder_weights_leave_out_every_kind", "the factors left out for smooth objects "
             "are left out for every object",
             (("tiqa/train/batches.py",
               '    smooth = np.array([str(name).startswith("smooth:") for name in names])',
               '    smooth = np.array([True for name in names])'),),
             ("tests/test_acquisition_training.py",), keyword="weight_zero_in_batches"),
    Mutation("head_calibration_fits_left_out_images", "the fine-tune's head calibration "
             "fits the images of ladders left out of training too",
             (("tiqa/phases/finetune.py",
               "        kept = batches.trained_images(batch)\n        scored =",
               "        kept = np.ones(images.shape[0], bool)\n        scored ="),),
             ("tests/test_train.py",), keyword="head_calibration"),
    Mutation("retrained_brisque_learns_left_out_ladders", "the retrained BRISQUE's training "
             "set keeps the images of ladders left out of TIQA's training",
             (("tiqa/phases/compare.py",
               "        kept = batches.trained_images(batch)\n        features",
               "        kept = np.ones(batch[\"labels\"].shape, bool)\n        features"),),
             ("tests/test_comparison.py",), keyword="only_the_ladders"),
    Mutation("view_penalty_lost_on_export", "an exported model forgets its view penalty, so "
             "the score rewards sparse views again",
             (("tiqa/checkpoints.py",
               "    for key, field in PENALTY_FIELDS.items():",
               "    for key, field in list(PENALTY_FIELDS.items())[:1]:"),),
             ("tests/test_view_check.py",), keyword="view_penalty"),
    Mutation("view_penalty_on_the_diagnostic_square", "whole slices lose the view penalty "
             "of the diagnostic's square (up to 512 px), not of the square it was fitted on",
             (("tiqa/view_check.py",
               "    return strongest_comb(centred_square(slices, PENALTY_SIDE))",
               "    return strongest_comb(centred_square(slices, MAX_SIDE))"),),
             ("tests/test_view_check.py",), keyword="view_penalty"),
    Mutation("score_phase_ignores_its_view_penalty_key", "launch.score takes the view "
             "penalty off whatever its config says",
             (("tiqa/phases/score.py",
               "with_view_penalty=config.view_penalty, with_view_check=config.view_check,",
               "with_view_penalty=True, with_view_check=config.view_check,"),),
             ("tests/test_view_check.py",), keyword="config_asks"),
    Mutation("benchmark_forgets_the_view_penalty", "the acquisition-ladder benchmark scores "
             "TIQA without the model's view penalty",
             (("tiqa/phases/evaluate_acquisition.py",
               "        tiqa = tiqa - np.asarray(loaded.view_penalty(comb))",
               "        tiqa = tiqa - 0 * np.asarray(loaded.view_penalty(comb))"),),
             ("tests/test_acquisition_training.py",), keyword="evaluate_acquisition_smoke"),
    Mutation("detector_shift_linear_interpolation", "projections are shifted by linear "
             "interpolation, which also low-passes them, instead of the Fourier shift theorem",
             (("tiqa/acquisition.py",
               "    return jnp.fft.irfft(spectrum * phase, n=padded, axis=0)[:size].astype(jnp.float32)",
               "    grid = jnp.arange(size, dtype=jnp.float32)\n"
               "    return jax.vmap(lambda column, shift: jnp.interp(grid - shift, grid, column, "
               "left=0.0, right=0.0), in_axes=(1, 0), out_axes=1)(sinogram, shifts)"),),
             ("tests/test_acquisition.py",), keyword="amplitude_spectrum"),
    Mutation("ladder_labels_ignore_normalisation", "the fine-tune labels ladders with the "
             "paper kinds' normalisation whatever acquisition.label_normalisation says",
             (("tiqa/train/batches.py",
               "dataclasses.replace(projection, normalisation=ladder_normalisation)",
               "dataclasses.replace(projection)"),),
             ("tests/test_acquisition_training.py",), keyword="fixed_ladder_labels"),
    Mutation("denoising_ladder_reversed", "the denoising ladder puts the filter outputs least "
             "like the ideal first",
             (("tiqa/filters.py", "order = np.argsort(-similarity, kind=\"stable\")",
               "order = np.argsort(similarity, kind=\"stable\")"),),
             ("tests/test_filters.py",), keyword="denoising_ladder"),
    Mutation("denoising_ladder_from_the_ideal", "the denoising ladders filter each object's "
             "ideal acquisition instead of a noisy one",
             (("tiqa/train/batches.py",
               "ladders[m, photons, DENOISING_PHOTON_LEVELS[m % len(DENOISING_PHOTON_LEVELS)]])",
               "ladders[m, photons, 0])"),),
             ("tests/test_acquisition_training.py",), keyword="denoising"),
    Mutation("average_models_ignores_weights", "the model soup takes the plain mean whatever "
             "the weights",
             (("tiqa/checkpoints.py", "sum(w / total * np.asarray(leaf, np.float64)",
               "sum(1 / len(weights) * np.asarray(leaf, np.float64)"),),
             ("tests/test_scoring.py",), keyword="averaged_model"),
    Mutation("acquisition_half_gain_error", "the detector gain errors are half as large",
             (("tiqa/acquisition.py", "gains = 1.0 + settings.gain_error *",
               "gains = 1.0 + 0.5 * settings.gain_error *"),),
             ("tests/test_acquisition.py::test_gain_errors_equal_the_reference_with_the_same_gains",)),
    Mutation("streaming_tiff_off_by_one", "the memory-mapped TIFF reader starts one slice early",
             (("tiqa/volumes.py", "offset=self._offset + start * per_slice",
               "offset=self._offset + max(start - 1, 0) * per_slice"),),
             ("tests/test_volumes.py",), keyword="every_format_reads and tiff"),
    Mutation("streaming_runs_merge_gaps", "the streaming reader treats a gap as a run",
             (("tiqa/volumes.py",
               "        if k == len(indices) or indices[k] != indices[k - 1] + 1:\n",
               "        if k == len(indices) or indices[k] < indices[k - 1]:\n"),),
             ("tests/test_volumes.py",), keyword="every_format_reads and h5"),
    Mutation("restore_earliest_checkpoint", "checkpoint restore reads the earliest checkpoint",
             (("tiqa/checkpoints.py",
               "        step = manager.latest_step()\n        if step is None:\n"
               "            raise FileNotFoundError",
               "        step = min(manager.all_steps(), default=None)\n        if step is None:\n"
               "            raise FileNotFoundError"),),
             ("tests/test_train.py::test_restore_variables_reads_the_latest_checkpoint",)),
    Mutation("logged_rate_ignores_plateau", "the logged learning rate ignores reduce-on-plateau",
             (("tiqa/train/loop.py", "        rate = rate * plateau.scale",
               "        rate = rate * 1.0"),),
             ("tests/test_train.py::test_logged_learning_rate_includes_the_plateau_scale",)),
    Mutation("segmentation_labels_turn_apart", "a label map gets other flips than its crop",
             (("tiqa/train/segmentation.py",
               "        label = preprocessing.random_dihedral(dihedral_keys, label)\n",
               "        label = preprocessing.random_dihedral(dihedral_keys[::-1], label)\n"),),
             ("tests/test_segmentation_phases.py::test_augmented_batch_keeps_images_and_labels_aligned",)),
    Mutation("bootstrap_interval_one_standard_error", "the bootstrap interval is 68%, not 95%",
             (("tiqa/comparison.py", 'vectorized=False, method="percentile",',
               'vectorized=False, method="percentile", confidence_level=0.68,'),),
             ("tests/test_comparison.py::test_bootstrap_interval_of_a_proportion_matches_the_binomial",)),
    Mutation("exported_model_drops_statistics", "an exported model loads without its statistics",
             (("tiqa/checkpoints.py",
               'return fill("params", params), fill("batch_stats", batch_stats)',
               'return fill("params", params), jax.tree.map(\n'
               '        lambda a: jnp.ones(a.shape, a.dtype), batch_stats)'),),
             ("tests/test_scoring.py::test_exported_model_round_trip",)),
    Mutation("finetune_rank_term_unweighted", "the fine-tune's rank term ignores its weight",
             (("tiqa/train/losses.py", "return mse + rank_weight * rank,", "return mse + rank,"),),
             ("tests/test_train.py::test_mse_rank_loss_adds_the_weighted_hinge_of_each_group",)),
    Mutation("ladder_groups_not_offset", "ladder groups share ids with the originals' groups",
             (("tiqa/train/batches.py", 'appended["group_ids"] + batch["group_ids"].max() + 1',
               'appended["group_ids"]'),),
             ("tests/test_acquisition_training.py::"
              "test_finetune_batch_labels_ladders_against_their_ideal_acquisition",)),
    # --- The angular-sampling check (tiqa.view_check) -----------------------------------------
    Mutation("view_comb_harmonic_v", "the comb is read at harmonic V of the spectrum's angle, "
             "whose period is 2 pi / V, not at 2V (period pi / V, the lines' spacing)",
             (("tiqa/view_check.py",
               "step_cos, step_sin = jnp.asarray(np.cos(2 * theta)), jnp.asarray(np.sin(2 * theta))",
               "step_cos, step_sin = jnp.asarray(np.cos(theta)), jnp.asarray(np.sin(theta))"),
              ("tiqa/view_check.py",
               "        start = (jnp.cos(2.0 * first * theta), jnp.sin(2.0 * first * theta))",
               "        start = (jnp.cos(first * theta), jnp.sin(first * theta))")),
             ("tests/test_view_check.py",)),
    Mutation("view_comb_rotation_sign", "the step from harmonic 2V to 2V + 2 rotates the sine "
             "the wrong way, so every V after a block's first is wrong",
             (("tiqa/view_check.py", "sin * step_cos + cos * step_sin)",
               "sin * step_cos - cos * step_sin)"),),
             ("tests/test_view_check.py",)),
    Mutation("view_comb_not_normalised_in_annuli", "the log spectrum is only centred, not "
             "z-normalised in annuli, so the object's radial fall-off weighs on the comb",
             (("tiqa/view_check.py",
               "    z = (flat - mean[ids]) / jnp.sqrt(jnp.maximum(var[ids], 1e-12))",
               "    z = flat - jnp.mean(flat)"),),
             ("tests/test_view_check.py",)),
    Mutation("view_comb_separable_window", "the spectrum is taken through a separable Hann "
             "window, whose leakage along the axes is read as a comb on blurred slices",
             (("tiqa/view_check.py",
               "    window = jnp.asarray(radial_window(side), image.dtype)",
               "    window = jnp.asarray(np.outer(np.hanning(side), np.hanning(side)), image.dtype)"),),
             ("tests/test_view_check.py",), keyword="heavy_blur"),
    Mutation("view_comb_every_radius", "the comb is summed over every radius, also where the "
             "lines of the views overlap",
             (("tiqa/view_check.py",
               "            used = r >= LINE_GAP * v / math.pi",
               "            used = r >= 0.0"),),
             ("tests/test_view_check.py",)),
    Mutation("view_columns_lost_in_parts", "part files of several processes drop the "
             "angular-sampling columns",
             (("tiqa/phases/score.py",
               '            fields = ["order", *csv_fields(records)]',
               '            fields = ["order", *csv_fields([])]'),),
             ("tests/test_view_check.py",), keyword="score_phase"),
    Mutation("select_filter_counts_sampled_views_as_fine", "select_filter's angular-sampling "
             "check never flags a slice, so a sparse-view scan's ranking comes without its "
             "caution",
             (("tiqa/phases/select_filter.py",
               '    views = [scoring.view_record(image)["views"] for image in slices]',
               "    views = [None for image in slices]"),),
             ("tests/test_scoring.py",), keyword="select_filter_ranks_candidates"),
    Mutation("slice_score_not_kept_on_scale", "the slice scorer returns the linear score, "
             "below 1 for the worst scans",
             (("tiqa/scoring.py",
               "                return penalties.onto_scale(mean), scores.std(axis=1)",
               "                return mean, scores.std(axis=1)"),),
             ("tests/test_view_check.py",), keyword="below_the_scale"),
    Mutation("onto_scale_tail_off_the_knee", "the tail below the knee is shifted by w, so "
             "value and slope no longer meet the identity at the knee",
             (("tiqa/penalties.py",
               "    below = SCALE_BOTTOM + width ** 2 / (SCALE_BOTTOM + 2 * width - xp.minimum(scores, KNEE))",
               "    below = SCALE_BOTTOM + width ** 2 / (SCALE_BOTTOM + width - xp.minimum(scores, KNEE))"),),
             ("tests/test_penalties.py",), keyword="kept_above"),
    Mutation("benchmark_keeps_on_scale_before_the_view_penalty", "the benchmark's TIQA is kept "
             "above 1 before the view penalty is taken off, so it can fall below 1 again",
             (("tiqa/phases/evaluate_acquisition.py",
               """    found = [comparison.Contender("TIQA", scoring.make_scorer(loaded, config.batch_size,
                                                              on_scale=False))]""",
               """    found = [comparison.Contender("TIQA", scoring.make_scorer(loaded, config.batch_size))]"""),
              ("tiqa/phases/evaluate_acquisition.py",
               "    scored[\"TIQA\"] = (penalties.onto_scale(tiqa, xp=np), True)",
               "    scored[\"TIQA\"] = (tiqa, True)"),),
             ("tests/test_acquisition_training.py",), keyword="smoke_writes"),
    Mutation("crop_score_not_kept_on_scale", "the crop scorer returns the linear score",
             (("tiqa/scoring.py",
               "        return penalties.onto_scale(scores) if on_scale else scores",
               "        return scores"),),
             ("tests/test_ring_check.py",), keyword="loses_the_ring_penalty"),
    Mutation("report_forgets_scores_under_the_knee", "the score report does not say which "
             "slices were pressed onto the scale",
             (("tiqa/phases/score.py",
               "        notes += (low,) if low else ()",
               "        notes += ()"),),
             ("tests/test_scoring.py",), keyword="under_the_knee"),
    # --- The rotation-centre check (tiqa.centre_check) ----------------------------------------
    Mutation("centre_filter_without_half_planes", "the inverse filter ignores the half planes "
             "(a symmetric phase, no longer the offset's all-pass filter)",
             (("tiqa/centre_check.py", "    return along_rows, along_cols, np.where(upper, radius, -radius)",
               "    return along_rows, along_cols, radius"),),
             ("tests/test_centre_check.py",), keyword="independent_scan or all_pass"),
    Mutation("centre_rings_left_in", "the search runs on the slice with its rings",
             (("tiqa/centre_check.py",
               "    clean = periodic_component(remove_rings(image.astype(jnp.float32)))",
               "    clean = periodic_component(image.astype(jnp.float32))"),),
             ("tests/test_centre_check.py",), keyword="rings_do_not"),
    Mutation("centre_ring_baseline_median_only", "the ring profiles' baseline is the running "
             "median alone, whose jumps follow the rings",
             (("tiqa/centre_check.py",
               "    baseline = running(running(profiles, jnp.median), jnp.mean)",
               "    baseline = running(profiles, jnp.median)"),),
             ("tests/test_centre_check.py",), keyword="remove_rings"),
    Mutation("centre_periodic_sign", "the periodic component adds the smooth part instead of "
             "taking it off",
             (("tiqa/centre_check.py",
               "    return image - jnp.real(jnp.fft.ifft2(smooth)).astype(image.dtype)",
               "    return image + jnp.real(jnp.fft.ifft2(smooth)).astype(image.dtype)"),),
             ("tests/test_centre_check.py",), keyword="periodic"),
    Mutation("centre_featureless_counted", "an offset counts however little the sparsity "
             "varies (featureless slices read random offsets)",
             (("tiqa/centre_check.py",
               "    found = jnp.where(structure >= min_structure(*images.shape[-2:]), found, 0.0)",
               "    found = jnp.where(structure >= 0.0, found, 0.0)"),),
             ("tests/test_centre_check.py",), keyword="featureless"),
    Mutation("centre_ring_gate_dropped", "heavy rings no longer stop an offset from counting",
             (("tiqa/centre_check.py",
               "    return jnp.where(ringed(slices), 0.0, found)",
               "    return found"),),
             ("tests/test_centre_check.py",), keyword="too_heavy"),
    Mutation("random_turns_skip_the_originals", "random_turns leaves the originals' crops as cut",
             (("tiqa/train/batches.py",
               "        crops = _turned(crops, jax.random.fold_in(jax.random.fold_in(key, 4), step))",
               "        crops = crops"),),
             ("tests/test_train.py",), keyword="random_turns"),
    Mutation("random_turns_skip_the_ladders", "random_turns leaves the ladders' crops as cut",
             (("tiqa/train/batches.py",
               "        ladders = _turned(ladders, jax.random.fold_in(jax.random.fold_in(key, 5), step))",
               "        ladders = ladders"),),
             ("tests/test_train.py",), keyword="random_turns"),
    Mutation("random_turns_split_an_objects_ladders", "each acquisition of an object turned by a "
             "draw of its own",
             (("tiqa/train/batches.py",
               "        ladders = _turned(ladders, jax.random.fold_in(jax.random.fold_in(key, 5), step))",
               "        ladders = _turned(ladders.reshape((-1,) + ladders.shape[-2:]), jax.random.fold_in("
               "jax.random.fold_in(key, 5), step)).reshape(ladders.shape)"),),
             ("tests/test_train.py",), keyword="random_turns"),
    Mutation("random_dihedral_without_turns", "the dihedral draw only flips (4 of the 8)",
             (("tiqa/preprocessing.py",
               "    turns = jax.random.randint(rotate_key, (), 0, 4)",
               "    turns = 0"),),
             ("tests/test_train.py", "tests/test_segmentation_phases.py"), keyword="eight_flips or random_turns"),
    Mutation("training_seed_ignored", "training_seed set still trains with seed's draws",
             (("tiqa/phases/training.py",
               "    seed = run.seed if run.training_seed == -1 else run.training_seed",
               "    seed = run.seed"),),
             ("tests/test_train.py",), keyword="training_seed"),
    Mutation("training_seed_unset_misread", "an unset training_seed (-1) is used as the seed",
             (("tiqa/phases/training.py",
               "    seed = run.seed if run.training_seed == -1 else run.training_seed",
               "    seed = run.training_seed if run.training_seed else run.seed"),),
             ("tests/test_train.py",), keyword="training_seed"),
    Mutation("rank_pair_weights_ignored", "a pair of lighter ladders counts as much as any",
             (("tiqa/train/losses.py",
               "pair_weights = pair_weights * weights[:, None] * weights[None, :]",
               "pair_weights = pair_weights"),),
             ("tests/test_train.py",), keyword="weight_zero"),
    Mutation("denoising_weight_dropped_by_the_pool", "a fractional ladder weight reads as none",
             (("tiqa/train/batches.py",
               "ladder_weights=None if (weights == 1).all() else",
               "ladder_weights=None if weights.all() else"),),
             ("tests/test_acquisition_training.py",), keyword="denoising_ladders_extend"),
    Mutation("denoising_weight_not_applied", "the denoising ladder weighs 1 whatever is asked",
             (("tiqa/train/batches.py",
               "+ [settings.denoising_weight] * int(settings.denoising_ladder))",
               "+ [1.0] * int(settings.denoising_ladder))"),),
             ("tests/test_acquisition_training.py",), keyword="smooth_objects_ladders"),
    Mutation("centre_ring_gate_at_zero", "any ring at all stops an offset from counting",
             (("tiqa/centre_check.py",
               "RING_SIDE)) > RING_GATE",
               "RING_SIDE)) > 0.0"),),
             ("tests/test_centre_check.py",), keyword="too_heavy"),
    Mutation("centre_one_direction_only", "only the first projection along the columns' axis "
             "is searched",
             (("tiqa/centre_check.py",
               "    for split_rows in (True, False):\n        along_rows, along_cols, signed_radius",
               "    for split_rows in (True, True):\n        along_rows, along_cols, signed_radius"),),
             ("tests/test_centre_check.py",), keyword="other_direction"),
    Mutation("centre_penalty_signed", "the score's centre penalty follows the signed offset, "
             "not its magnitude",
             (("tiqa/scoring.py",
               "                    mean = mean - centre_fit(jnp.abs(offsets))",
               "                    mean = mean - centre_fit((offsets))"),),
             ("tests/test_centre_check.py",), keyword="loses_the_centre_penalty"),
    Mutation("centre_penalty_on_a_256_px_square", "the centre penalty measures a large "
             "slice's centred 256 px square, where soft edges leave offsets poorly told",
             (("tiqa/centre_check.py",
               "PENALTY_SIDE = 512  # px",
               "PENALTY_SIDE = 256  # px"),),
             ("tests/test_centre_check.py",), keyword="up_to_512"),
    Mutation("centre_penalty_lost_on_export", "an exported model forgets its centre penalty",
             (("tiqa/checkpoints.py",
               "    for key, field in PENALTY_FIELDS.items():",
               "    for key, field in list(PENALTY_FIELDS.items())[:2]:"),),
             ("tests/test_centre_check.py",), keyword="loses_the_centre_penalty"),
    Mutation("score_phase_ignores_its_centre_penalty_key", "launch.score takes the centre "
             "penalty off whatever its config says",
             (("tiqa/phases/score.py",
               "                         with_centre_penalty=config.centre_penalty,",
               "                         with_centre_penalty=True,"),),
             ("tests/test_centre_check.py",), keyword="config_asks"),
    Mutation("benchmark_forgets_the_centre_penalty", "the acquisition-ladder benchmark scores "
             "TIQA without the model's centre penalty",
             (("tiqa/phases/evaluate_acquisition.py",
               "        tiqa = tiqa - np.asarray(fit(np.abs(centre)))",
               "        tiqa = tiqa - 0 * np.asarray(fit(np.abs(centre)))"),),
             ("tests/test_acquisition_training.py",), keyword="evaluate_acquisition_smoke"),
    Mutation("benchmark_centre_penalty_of_any_size", "the acquisition-ladder benchmark charges "
             "every acquisition by the centre penalty's own fit, whatever its size",
             (("tiqa/phases/evaluate_acquisition.py",
               "        fit = loaded.centre_penalty.at(centre_check.measured_side(*whole.shape[-2:]))",
               "        fit = loaded.centre_penalty"),),
             ("tests/test_acquisition_training.py",), keyword="evaluate_acquisition_smoke"),
    Mutation("score_centre_penalty_of_any_size", "the slice scorer charges every slice by the "
             "centre penalty's own fit, whatever the size of the square it measures",
             (("tiqa/scoring.py",
               "            centre_fit = (centre_penalty.at(centre_check.measured_side(height, width))",
               "            centre_fit = (centre_penalty.at(0)"),),
             ("tests/test_centre_check.py",), keyword="measured_square"),
    Mutation("score_searches_the_centre_twice", "launch.score searches the offset it writes "
             "apart from the one the penalty counted",
             (("tiqa/scoring.py",
               "zip(sampling, centre_records(offsets[0], len(batch))):",
               "zip(sampling, centre_records(np.asarray(centre_check.penalty_offset(np.asarray("
               "images, np.float32))), len(batch))):"),),
             ("tests/test_centre_check.py",), keyword="searched_once"),
    Mutation("penalty_size_from_above", "a penalty's fit for a size starts above that size",
             (("tiqa/penalties.py", "            if side >= least:", "            if side > least:"),),
             ("tests/test_penalties.py",), keyword="per_size"),
    Mutation("penalty_sizes_lost_on_export", "an exported model keeps only the centre "
             "penalty's own fit",
             (("tiqa/penalties.py", "        if self.larger:\n", "        if False:\n"),),
             ("tests/test_penalties.py",), keyword="per_size"),
    Mutation("calibration_centre_at_one_size", "the calibration fits the centre penalty at the "
             "ring and view checks' size only",
             (("tiqa/phases/calibrate.py",
               "    return config.centre_output_sizes if name == \"centre_check\" else (config.output_size,)",
               "    return (config.output_size,)"),),
             ("tests/test_penalties.py",), keyword="calibration_phase"),
    Mutation("offset_note_signed", "the report counts signed offsets above 1 px (misses the "
             "axes off the other way)",
             (("tiqa/centre_check.py",
               "    measured = [abs(offset) for offset in offsets if offset is not None]",
               "    measured = [offset for offset in offsets if offset is not None]"),),
             ("tests/test_centre_check.py",), keyword="offset_note"),
    Mutation("resize_note_threshold_exclusive", "the report's resize note leaves out slices "
             "shrunk exactly twice (512 px slices, where the blur miss was measured)",
             (("tiqa/scoring.py",
               "    large = [shrink for shrink in shrinks if shrink >= SHRINK_NOTE]",
               "    large = [shrink for shrink in shrinks if shrink > SHRINK_NOTE]"),),
             ("tests/test_scoring.py",), keyword="resize_shrinks"),
    Mutation("resize_note_forgotten", "the score report leaves out the resize note",
             (("tiqa/phases/score.py",
               "        notes += (shrunk,) if shrunk else ()",
               "        notes += ()"),),
             ("tests/test_scoring.py",), keyword="resize_shrinks"),
    Mutation("resize_note_not_printed", "launch.score says the resize line only in reports",
             (("tiqa/phases/score.py",
               "        print(shrunk)",
               "        pass"),),
             ("tests/test_scoring.py",), keyword="resize_shrinks"),
    Mutation("own_pixels_resized_anyway", "own_pixels still resizes large slices",
             (("tiqa/scoring.py",
               "            keep = preprocessing.keeps_own_pixels(height, width, loaded.resize, own_pixels)",
               "            keep = False"),),
             ("tests/test_scoring.py",), keyword="own_pixels"),
    Mutation("own_pixels_lost_in_the_score_phase", "launch.score drops config.own_pixels",
             (("tiqa/phases/score.py",
               "own_pixels=config.own_pixels,",
               "own_pixels=False,"),),
             ("tests/test_scoring.py",), keyword="resize_shrinks"),
    Mutation("own_pixels_lost_in_the_study", "launch.study_segmentation drops config.own_pixels",
             (("tiqa/phases/study_segmentation.py",
               "                                      own_pixels=study.own_pixels,",
               "                                      own_pixels=False,"),),
             ("tests/test_segmentation_phases.py",), keyword="penalties_its_config_asks_for"),
    Mutation("own_pixels_small_slices_unresized", "own_pixels also keeps slices smaller than "
             "the resize at their pixels",
             (("tiqa/preprocessing.py",
               "    return own_pixels and min(height, width) >= size",
               "    return own_pixels"),),
             ("tests/test_scoring.py", "tests/test_preprocessing.py", "tests/test_train.py"),
             keyword="own_pixels"),
    Mutation("model_view_ignores_own_pixels", "preprocessing.model_view resizes every slice",
             (("tiqa/preprocessing.py",
               "    if keeps_own_pixels(*jnp.shape(image)[-2:], size, own_pixels):\n        return jnp.asarray(image)",
               "    if False:\n        return jnp.asarray(image)"),),
             ("tests/test_preprocessing.py", "tests/test_train.py", "tests/test_acquisition_training.py"),
             keyword="own_pixels or model_view or follow_the_view or heldout_references"),
    Mutation("pool_drops_own_pixels", "the training pool resizes every slice whatever the config",
             (("tiqa/train/batches.py",
               "preprocessing.model_view(s, resize, own_pixels)",
               "preprocessing.model_view(s, resize, False)"),),
             ("tests/test_train.py",), keyword="own_pixels"),
    Mutation("own_pixels_not_loaded", "load_model forgets model.json's own_pixels",
             (("tiqa/checkpoints.py",
               '_resize(info), bool(info.get("own_pixels", False)),',
               "_resize(info), False,"),),
             ("tests/test_scoring.py",), keyword="round_trip"),
    Mutation("own_pixels_not_exported", "save_exported leaves own_pixels out of model.json",
             (("tiqa/checkpoints.py",
               '        info["own_pixels"] = True',
               '        pass'),),
             ("tests/test_scoring.py",), keyword="round_trip"),
    Mutation("own_pixels_soup_unchecked", "average_models mixes own-pixel and resized models",
             (("tiqa/checkpoints.py",
               "        if ((model.config, model.crop, model.resize, model.own_pixels)\n"
               "                != (first.config, first.crop, first.resize, first.own_pixels)):",
               "        if ((model.config, model.crop, model.resize)\n"
               "                != (first.config, first.crop, first.resize)):"),),
             ("tests/test_scoring.py",), keyword="averaged"),
    Mutation("scorer_ignores_the_models_own_pixels", "an unset own_pixels is taken as False, "
             "not as the model was trained",
             (("tiqa/scoring.py",
               "    own_pixels = checkpoints.scores_at_own_pixels(loaded.own_pixels, own_pixels)\n",
               "    own_pixels = bool(own_pixels)\n"),),
             ("tests/test_scoring.py",), keyword="own_pixels"),
    Mutation("score_note_ignores_the_models_own_pixels", "launch.score's resize line ignores "
             "a model trained at its own pixels",
             (("tiqa/phases/score.py",
               "    own_pixels = checkpoints.scores_at_own_pixels(trained_own_pixels, config.own_pixels)",
               "    own_pixels = checkpoints.scores_at_own_pixels(False, config.own_pixels)"),),
             ("tests/test_scoring.py",), keyword="resize_shrinks"),
    Mutation("benchmark_crops_ignore_the_model", "the benchmark crops resized whatever the model",
             (("tiqa/phases/evaluate_acquisition.py",
               "    return checkpoints.scores_at_own_pixels(loaded.own_pixels, config.own_pixels)",
               "    return bool(config.own_pixels)"),),
             ("tests/test_acquisition_training.py",), keyword="follow_the_view"),
    Mutation("heldout_references_resized_anyway", "the evaluation's references ignore own_pixels",
             (("tiqa/phases/evaluate.py",
               "                                                          crop=source.crop, own_pixels=own_pixels))",
               "                                                          crop=source.crop))"),),
             ("tests/test_train.py",), keyword="heldout_references"),
    Mutation("finetune_forgets_own_pixels", "the fine-tune's model.json leaves own_pixels out",
             (("tiqa/phases/finetune.py",
               '                                         "own_pixels": source.own_pixels,\n',
               ""),),
             ("tests/test_train.py",), keyword="end_to_end", timeout=600),
    Mutation("ladder_sides_ignored", "crops of a joined bank of two sizes reach past a smaller "
             "object's side into the padding",
             (("tiqa/train/batches.py",
               "    heights, widths = ((height, width) if pool.ladder_sides is None",
               "    heights, widths = ((height, width) if True"),),
             ("tests/test_acquisition_training.py",), keyword="two_sizes"),
    Mutation("extra_size_shares_the_cache", "an extra bank size is cached over the first",
             (("tiqa/train/batches.py",
               'cache=str(cache.with_name(f"{cache.stem}_{size}px{tag}{cache.suffix}")) if cache else "")',
               "cache=settings.cache)"),),
             ("tests/test_acquisition_training.py",), keyword="two_sizes"),
    Mutation("extra_sizes_dropped", "the extra bank sizes are never simulated",
             (("tiqa/train/batches.py",
               "             + [(size, settings.object_scale) for size in settings.extra_output_sizes]",
               "             + []"),),
             ("tests/test_acquisition_training.py",), keyword="two_sizes"),
    Mutation("own_pixels_line_unsaid", "launch.score does not say that it scored at own pixels",
             (("tiqa/phases/score.py",
               "    elif own_pixels:  # scores of the two paths must not be mixed, so say which this is",
               "    elif False:"),),
             ("tests/test_scoring.py",), keyword="resize_shrinks"),
    Mutation("calibration_signed_centre_offset", "the calibration fits the centre penalty on "
             "the signed offset",
             (("tiqa/phases/calibrate.py",
               "    return np.abs(np.asarray(centre_check.penalty_offset(whole)))",
               "    return (np.asarray(centre_check.penalty_offset(whole)))"),),
             ("tests/test_penalties.py",), keyword="calibration_phase"),
    # --- The training phases pass on their keys and turns (2026-12-06) -----------------------
    Mutation("rank_phase_forgets_the_turns", "train_rank never turns, whatever random_turns says",
             (("tiqa/phases/train_rank.py", "                                   turns=source.random_turns)",
               "                                   turns=False)"),),
             ("tests/test_train.py",), keyword="draw_from_the_training_seed"),
    Mutation("finetune_phase_forgets_the_turns", "finetune never turns, whatever random_turns says",
             (("tiqa/phases/finetune.py", "                                   turns=source.random_turns)",
               "                                   turns=False)"),),
             ("tests/test_train.py",), keyword="draw_from_the_training_seed"),
    Mutation("rank_phase_draws_from_seed", "train_rank draws its keys from seed, not training_seed",
             (("tiqa/phases/train_rank.py", "model_key, data_key, train_key = training.run_keys(run_)",
               "model_key, data_key, train_key = jax.random.split(jax.random.key(run_.seed), 3)"),),
             ("tests/test_train.py",), keyword="draw_from_the_training_seed"),
    Mutation("finetune_phase_draws_from_seed", "finetune draws its keys from seed, not training_seed",
             (("tiqa/phases/finetune.py", "model_key, data_key, train_key = training.run_keys(run_)",
               "model_key, data_key, train_key = jax.random.split(jax.random.key(run_.seed), 3)"),),
             ("tests/test_train.py",), keyword="draw_from_the_training_seed"),
    Mutation("rank_phase_trains_with_the_data_key", "the rank loop's dropout draws from the data key",
             (("tiqa/phases/train_rank.py", "             key=train_key, mesh=mesh,",
               "             key=data_key, mesh=mesh,"),),
             ("tests/test_train.py",), keyword="draw_from_the_training_seed"),
    Mutation("finetune_statistics_with_the_data_key", "the fine-tune measures its statistics with "
             "the data key's draws",
             (("tiqa/phases/finetune.py", "jax.random.fold_in(train_key, 998))",
               "jax.random.fold_in(data_key, 998))"),),
             ("tests/test_train.py",), keyword="draw_from_the_training_seed"),
    Mutation("brisque_training_forgets_the_turns", "the retrained BRISQUE's crops are never turned",
             (("tiqa/phases/compare.py", "turns=source.random_turns))", "turns=False))"),),
             ("tests/test_comparison.py",), keyword="draws_its_crops"),
    Mutation("brisque_training_ignores_its_seed", "the retrained BRISQUE's crops draw from seed 0",
             (("tiqa/phases/compare.py", "key=jax.random.key(source.seed)", "key=jax.random.key(0)"),),
             ("tests/test_comparison.py",), keyword="draws_its_crops"),
    Mutation("comparison_ignores_the_model_view", "the comparison resizes every crop, even for "
             "a model trained at the scans' own pixels",
             (("tiqa/phases/compare.py", "own_pixels = checkpoints.scores_at_own_pixels(",
               "own_pixels = bool(config.source.own_pixels) or 0 * ("),),
             ("tests/test_comparison.py",), keyword="follow_the_model_view"),
    Mutation("comparison_phantoms_always_resized", "the comparison's phantom scans are resized "
             "whatever the view",
             (("tiqa/phases/compare.py", "config.phantom_acquisitions, source.resize, source.crop, own_pixels)",
               "config.phantom_acquisitions, source.resize, source.crop, False)"),),
             ("tests/test_comparison.py",), keyword="follow_the_model_view"),
    Mutation("own_pixel_chunks_always_full", "every own-pixel chunk is a full OWN_PIXEL_CHUNK "
             "(one crop runs padded to 64)",
             (("tiqa/scoring.py", "    return chunks, -(-count // chunks)\n",
               "    return chunks, OWN_PIXEL_CHUNK\n"),),
             ("tests/test_scoring.py",), keyword="even_chunks"),
    Mutation("own_pixel_chunks_round_down", "the crops per chunk are rounded down (a crop is lost)",
             (("tiqa/scoring.py", "    return chunks, -(-count // chunks)\n",
               "    return chunks, count // chunks\n"),),
             ("tests/test_scoring.py",), keyword="even_chunks or own_pixels_scores_a_large"),
    Mutation("sampled_grid_ignores_its_limit", "the grid keeps every crop whatever most_per_side says",
             (("tiqa/scoring.py", "        if most_per_side:\n            count = min(",
               "        if False:\n            count = min("),),
             ("tests/test_scoring.py",), keyword="sampled_grid or own_pixels_scores_a_large"),
    Mutation("sampled_grid_one_crop_at_the_corner", "one crop a side sits at the slice's corner",
             (("tiqa/scoring.py", "        if count == 1:  # one crop a side",
               "        if False:  # one crop a side"),),
             ("tests/test_scoring.py",), keyword="spreads_at_most"),
    Mutation("score_phase_drops_the_grid_limit", "the scoring phase never passes most_per_side on",
             (("tiqa/phases/score.py", "                         most_per_side=config.most_per_side,\n",
               "                         most_per_side=0,\n"),),
             ("tests/test_scoring.py",), keyword="sampled_grid_is_scored"),
    Mutation("fractal_texture_wrong_slope", "fractal textures' amplitude falls as 1/f^beta, so "
             "their power as 1/f^(2 beta)",
             (("tiqa/objects.py", "                                 / frequency ** (beta / 2)))",
               "                                 / frequency ** beta))"),),
             ("tests/test_acquisition_training.py",), keyword="spectral_slope"),
    Mutation("stone_texture_light_joints", "the stone walls' joints are drawn light, not dark",
             (("tiqa/objects.py", "    values = np.where(joint, 0.15 + 0.05 *",
               "    values = np.where(joint, 0.95 + 0.05 *"),),
             ("tests/test_acquisition_training.py",), keyword="dark_joints"),
    Mutation("texture_image_only_fractal", "texture_image never draws a stone wall",
             (("tiqa/objects.py", "    if rng.random() < FRACTAL_SHARE:", "    if rng.random() < 2.0:"),),
             ("tests/test_acquisition_training.py",), keyword="both_kinds"),
    Mutation("textures_out_of_the_bank_description", "a ladder bank cached without its "
             "textures is read back for settings that ask for them",
             (("tiqa/train/batches.py", '        physics["textures"] = settings.textures', "        pass"),),
             ("tests/test_acquisition_training.py",), keyword="textures_join"),
    Mutation("textures_never_collected", "the textures' count never reaches objects.collect",
             (("tiqa/train/batches.py", "                            textures=settings.textures)",
               "                            textures=0)"),),
             ("tests/test_acquisition_training.py",), keyword="textures_join"),
    Mutation("textures_count_unchecked", "a negative texture count is not refused by name",
             (("tiqa/phases/settings.py",
               '    errors.check_non_negative(source.ladders.textures, f"{where}.acquisition.textures", "none")\n',
               ""),),
             ("tests/test_acquisition_training.py",), keyword="textures_join"),
    Mutation("benchmark_drops_the_textures", "the benchmark phase never passes its texture count on",
             (("tiqa/acquisition_ladder.py", "scored_size=output_size, textures=textures)",
               "scored_size=output_size)"),),
             ("tests/test_acquisition_training.py",), keyword="textures_join"),
    Mutation("benchmark_texture_count_unchecked", "the benchmark does not refuse a negative texture count",
             (("tiqa/phases/evaluate_acquisition.py",
               '    errors.check_non_negative(config.textures, "config.textures", "none")\n', ""),),
             ("tests/test_acquisition_training.py",), keyword="textures_join"),
    Mutation("model_rules_phantoms_lenient", "the default-model rules let the comparison's phantom "
             "scans pass at 0.90", (("tools/model_rules.py", "phantoms[0] >= 0.95", "phantoms[0] >= 0.90"),),
             ("tests/test_model_rules.py",)),
    Mutation("model_rules_scored_median_unchecked", "the scored scale's level-1 median is not checked",
             (("tools/model_rules.py", "and level1 >= 3.5", ""),), ("tests/test_model_rules.py",)),
    Mutation("model_rules_texture_blur_without_ideal", "the texture gate reads the blur order over "
             "levels 1 to 5 only, so mild blur scored above the ideal passes",
             (("tools/model_rules.py", 'column="srocc_with_ideal"', 'column="srocc"'),),
             ("tests/test_model_rules.py",)),
    Mutation("model_rules_own_view_gate_reported_only", "--own_view_gate reports the own-view "
             "comparison but never fails a model",
             (("tools/model_rules.py", "phantoms >= OWN_VIEW_FLOOR - TOLERANCE if gate else None",
               "None"),), ("tests/test_model_rules.py",)),
    Mutation("model_rules_probes_textures_reported_only", "--probes reports the held-out "
             "textures but never fails a model on them",
             (("tools/model_rules.py", "texture_rule(args.out, args.textures_baseline, gate=True)",
               "texture_rule(args.out, args.textures_baseline, gate=False)"),), ("tests/test_model_rules.py",)),
    Mutation("model_rules_probes_drop_own_view_gate", "--probes with --own_view_gate drops the "
             "gate silently instead of refusing", (("tools/model_rules.py",
                                                    "if args.probes and args.own_view_gate:",
                                                    "if False:"),), ("tests/test_model_rules.py",)),
    Mutation("batch_norm_kept_measures", "batch_norm='kept' measures the data's statistics "
             "like 'frozen'", (("tiqa/phases/training.py", 'return mode == "frozen"',
                                'return mode in ("frozen", "kept")'),), ("tests/test_train.py",)),
    Mutation("trained_blocks_one_short", "finetune.trained_blocks trains one block fewer than "
             "asked", (("tiqa/phases/training.py", "first_trained = len(blocks) - trained_blocks",
                        "first_trained = len(blocks) - trained_blocks + 1"),),
             ("tests/test_train.py",)),
    Mutation("trained_blocks_stem_trains", "finetune.trained_blocks trains the stem too",
             (("tiqa/phases/training.py", 'return name[1].startswith("head")',
               'return name[1].startswith(("head", "stem"))'),), ("tests/test_train.py",)),
    Mutation("trained_blocks_ignored_by_finetune", "the fine-tune trains every parameter "
             "whatever finetune.trained_blocks says", (("tiqa/phases/finetune.py",
                                                        "frozen_batch_norm=frozen,\n"
                                                        "                                              trained=trained)",
                                                        "frozen_batch_norm=frozen)"),),
             ("tests/test_train.py",)),
    Mutation("trained_mask_updates_kept", "parameters that do not train still get Adam's "
             "update", (("tiqa/train/loop.py", "if trained is not None:  # a zero gradient",
                         "if False:  # a zero gradient"),), ("tests/test_train.py",)),
    Mutation("output_line_worst_level_labels", "the output line is fitted to 'worst_level' "
             "labels, not the fine-tune's 'fixed' ones", (("tiqa/phases/calibrate.py",
                                                           'labels.ProjectionConfig(normalisation="fixed")',
                                                           "labels.ProjectionConfig()"),),
             ("tests/test_penalties.py",)),
    Mutation("output_line_not_folded", "the fitted output line is reported but not folded into "
             "the exported network", (("tiqa/phases/calibrate.py",
                                       "params=with_output_line(loaded.params, *line)",
                                       "params=loaded.params"),), ("tests/test_penalties.py",)),
    Mutation("output_line_bias_unscaled", "folding a line leaves the output bias unscaled",
             (("tiqa/models/iqa.py", "lambda b: b * slope + intercept", "lambda b: b + intercept"),),
             ("tests/test_penalties.py",)),
    Mutation("output_line_fit_ignored", "the output line is fitted through every acquisition "
             "whatever config.output_line_fit says", (("tiqa/phases/calibrate.py",
                                                       "line_through(network, ladder_labels, "
                                                       "config.output_line_fit)",
                                                       'line_through(network, ladder_labels, '
                                                       '"acquisitions")'),),
             ("tests/test_penalties.py",)),
    Mutation("level_medians_as_means", "the line through the levels takes their means over the "
             "objects, not their medians", (("tiqa/phases/calibrate.py",
                                            "np.median(network, axis=0), np.median(ladder_labels, "
                                            "axis=0)",
                                            "np.mean(network, axis=0), np.mean(ladder_labels, "
                                            "axis=0)"),), ("tests/test_penalties.py",)),
    Mutation("output_line_fit_unchecked", "an unknown config.output_line_fit is accepted (and "
             "fitted through every acquisition)", (("tiqa/phases/calibrate.py",
                                                   "if found.output_line_fit not in "
                                                   "OUTPUT_LINE_FITS:",
                                                   "if False:"),), ("tests/test_penalties.py",)),
    Mutation("judge_keeps_any_model_s_runs", "the judge keeps runs done for another model",
             (("tools/judge_model.sh", '[ "$(cat "$OUT/$name.done")" = "model=$MODEL" ]', "true"),),
             ("tests/test_model_rules.py",)),
    Mutation("judge_marks_failed_runs", "the judge marks a run done before it succeeds",
             (("tools/judge_model.sh", '  "$@" --config.output="$OUT/$name" >',
               '  echo "model=$MODEL" > "$OUT/$name.done"; "$@" --config.output="$OUT/$name" >'),),
             ("tests/test_model_rules.py",)),
    Mutation("judge_never_keeps", "the judge runs every run again",
             (("tools/judge_model.sh", 'echo "$name done before for this model: kept"; return; fi',
               'echo "$name done before for this model: kept"; fi'),), ("tests/test_model_rules.py",)),
    Mutation("both_scales_phantoms_twice", "calibrating at both scales draws the phantoms at "
             "each scale", (("tiqa/phases/calibrate.py",
                             'config.phantoms if index == 0 else 0,', "config.phantoms,"),),
             ("tests/test_penalties.py",)),
    Mutation("both_scales_native_twice", "calibrating at both scales draws the native objects "
             "twice", (("tiqa/phases/calibrate.py", "scale=scale, scored_size=size)",
                        'scale="native", scored_size=size)'),), ("tests/test_penalties.py",)),
    Mutation("both_scales_sources_unmarked", "the second scale's sources are not marked with "
             "it", (("tiqa/phases/calibrate.py", "marked = found.sources if index == 0 else",
                     "marked = found.sources if True else"),), ("tests/test_penalties.py",)),
    Mutation("anchor_holds_every_ladder", "the anchor holds the lighter texture and denoising "
             "ladders too", (("tiqa/train/losses.py", "else (weights >= 1.0).astype(scores.dtype))",
                              "else (weights > 0).astype(scores.dtype))"),), ("tests/test_train.py",)),
    Mutation("anchor_weight_ignored", "the anchor term is added at weight 1 whatever "
             "finetune.anchor_weight says", (("tiqa/train/losses.py",
                                              "return loss + anchor_weight * anchor,",
                                              "return loss + anchor,"),), ("tests/test_train.py",)),
    Mutation("anchor_never_applied", "the fine-tune ignores finetune.anchor_weight",
             (("tiqa/phases/finetune.py", "    if tune.anchor_weight:\n        loss_fn =",
               "    if False:\n        loss_fn ="),), ("tests/test_train.py",)),
    Mutation("scored_bank_drawn_native", "the scored banks draw their objects at the native "
             "scale", (("tiqa/train/batches.py", "object_scale=scale, textures=", "textures="),),
             ("tests/test_acquisition_training.py",)),
    Mutation("model_rules_overall_unchecked", "rule 8d passes a model under the retrained "
             "BRISQUE's overall", (("tools/model_rules.py", 'overall["TIQA"] >= peer - TOLERANCE',
                                    'overall["TIQA"] >= peer - 0.05'),), ("tests/test_model_rules.py",)),
    Mutation("noise_sigma_mean_not_median", "the noise estimate averages the diagonal "
             "coefficients instead of taking their median (edges count as noise)",
             (("tiqa/noise_check.py", "return jnp.median(flat, axis=-1) / MAD_TO_SIGMA",
               "return jnp.mean(flat, axis=-1) / MAD_TO_SIGMA"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("textures_in_every_bank", "acquisition.textures_at_extra_sizes=False still puts the "
             "textures into the extra sizes' banks",
             (("tiqa/train/batches.py", "textures=settings.textures if settings.textures_at_extra_sizes else 0,",
               "textures=settings.textures,"),),
             ("tests/test_acquisition_training.py",), keyword="extra_sizes"),
    Mutation("texture_weight_ignored", "acquisition.texture_weight leaves the texture objects' "
             "ladders at their own weights",
             (("tiqa/train/batches.py",
               "    weights = np.where(texture[:, None], settings.texture_weight * weights, weights)",
               "    weights = np.where(texture[:, None], weights, weights)"),),
             ("tests/test_acquisition_training.py",), keyword="weight_zero"),
    Mutation("texture_weight_on_the_others", "acquisition.texture_weight weighs the other "
             "objects' ladders instead of the textures'",
             (("tiqa/train/batches.py",
               "    weights = np.where(texture[:, None], settings.texture_weight * weights, weights)",
               "    weights = np.where(texture[:, None], weights, settings.texture_weight * weights)"),),
             ("tests/test_acquisition_training.py",), keyword="weight_zero"),
    Mutation("factor_weights_ignored", "acquisition.factor_weights leaves every factor's "
             "ladders at weight 1",
             (("tiqa/train/batches.py",
               "list(settings.factor_weights or [1.0] * len(settings.factors))",
               "[1.0] * len(settings.factors)"),),
             ("tests/test_acquisition_training.py",), keyword="weight_zero"),
    Mutation("factor_weights_reversed", "acquisition.factor_weights read in the reverse order "
             "of the factors",
             (("tiqa/train/batches.py",
               "list(settings.factor_weights or [1.0] * len(settings.factors))",
               "list(settings.factor_weights[::-1] or [1.0] * len(settings.factors))"),),
             ("tests/test_acquisition_training.py",), keyword="weight_zero"),
    Mutation("factor_weights_length_unchecked", "factor weights fewer than the factors are "
             "accepted",
             (("tiqa/phases/settings.py",
               "len(factor_weights) != len(source.ladders.factors) or not all(",
               "False or not all("),),
             ("tests/test_acquisition_training.py",), keyword="denoising_ladders_extend"),
    Mutation("factor_weights_negative_accepted", "a factor weight below 0 is accepted",
             (("tiqa/phases/settings.py",
               "and not isinstance(weight, bool) and weight >= 0",
               "and not isinstance(weight, bool)"),),
             ("tests/test_acquisition_training.py",), keyword="denoising_ladders_extend"),
    Mutation("noise_gate_open", "the noise penalty charges white noise as fully as correlated "
             "noise (the gate on the level ratio is gone)",
             (("tiqa/noise_check.py", "    return finest * weight",
               "    return finest"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("noise_gate_hard", "the gate charges in full or not at all at the white threshold",
             (("tiqa/noise_check.py", "    weight = jnp.clip((WHITE_RATIO - ratio)",
               "    weight = 1e6 * jnp.clip((WHITE_RATIO - ratio)"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("noise_level_ratio_inverted", "the level ratio is the next level's sigma over the "
             "finest's", (("tiqa/noise_check.py",
                           "    return finest, finest / jnp.maximum(_sigma(_haar(approximation)[1]), 1e-12)",
                           "    return finest, _sigma(_haar(approximation)[1]) / jnp.maximum(finest, 1e-12)"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("noise_next_level_not_orthonormal", "the next level's approximation averages the "
             "blocks (white noise halves its sigma there)",
             (("tiqa/noise_check.py", "    return ((top_left + top_right + bottom_left + bottom_right) / 2.0,",
               "    return ((top_left + top_right + bottom_left + bottom_right) / 4.0,"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("noise_penalty_not_taken_off_crops", "make_scorer ignores the model's noise penalty",
             (("tiqa/scoring.py", "            scores = scores - noise_penalty(noise_check.correlated_noise(chunk))",
               "            scores = scores"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("noise_penalty_not_taken_off_slices", "make_slice_scorer ignores the model's noise penalty",
             (("tiqa/scoring.py", "                    mean = mean - noise_penalty(noise_check.correlated_noise(patches)).mean(axis=1)",
               "                    mean = mean"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("noise_penalty_lost_in_the_score_phase", "launch.score drops config.noise_penalty",
             (("tiqa/phases/score.py", "                         with_noise_penalty=config.noise_penalty)",
               "                         with_noise_penalty=True)"),),
             ("tests/test_scoring.py",), keyword="noise"),
    Mutation("noise_fit_on_its_own_penalty", "launch.calibrate fits the noise penalty on scores "
             "that already lose the old one", (("tiqa/phases/calibrate.py",
                                                '                                  with_noise_check=name != "noise_check")(flat)',
                                                '                                  with_noise_check=True)(flat)'),),
             ("tests/test_penalties.py",), keyword="calibration_phase_exports"),
    Mutation("calibration_levels_infinite_in_json", "the model card's photon levels keep "
             "infinity (model.json is no longer strict JSON)",
             (("tiqa/phases/calibrate.py", "               \"levels\": [float(level) if math.isfinite(level) else None",
               "               \"levels\": [float(level) if True else None"),),
             ("tests/test_penalties.py",), keyword="calibration_phase_exports"),
    Mutation("noise_penalty_lost_in_the_study", "launch.study_segmentation drops config.noise_penalty",
             (("tiqa/phases/study_segmentation.py", "with_noise_check=study.noise_penalty)",
               "with_noise_check=True)"),),
             ("tests/test_segmentation_phases.py",), keyword="penalties_its_config_asks_for"),
    Mutation("extra_ladder_levels_ignored", "an extra ladder varies its factor over the table's "
             "levels, not its own",
             (("tiqa/acquisition.py", "    fields[factor] = jnp.asarray(levels, jnp.float32)",
               "    fields[factor] = jnp.asarray(LEVELS[factor], jnp.float32)"),),
             ("tests/test_acquisition.py",), keyword="extra_ladders or monotonically"),
    Mutation("ladder_names_unchecked", "an unknown ladder name in acquisition.factors passes the "
             "config's checks", (("tiqa/phases/settings.py",
                                  "    if unknown or not source.ladders.factors:\n        raise errors.InputError(f\"{where}.acquisition.factors",
                                  "    if False:\n        raise errors.InputError(f\"{where}.acquisition.factors"),),
             ("tests/test_acquisition_training.py",), keyword="denoising_ladders_extend"),
)


def tracked_files(root: pathlib.Path) -> list[str]:
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True,
                            capture_output=True).stdout.decode()
    return [name for name in listed.split("\0") if name]


def copy_repository(root: pathlib.Path, destination: pathlib.Path) -> None:
    for name in tracked_files(root):
        source = root / name
        if not source.is_file():  # deleted in the working tree but still tracked
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def apply(mutation: Mutation, copy: pathlib.Path) -> None:
    for file, original, replacement in mutation.edits:
        path = copy / file
        text = path.read_text()
        found = text.count(original)
        if found != 1:
            raise SystemExit(f"{mutation.name}: the snippet to mutate occurs {found} times in "
                             f"{file} (must be exactly once); update tools/mutations.py:\n"
                             f"{original!r}")
        path.write_text(text.replace(original, replacement))


def run_one(mutation: Mutation, root: pathlib.Path) -> tuple[str, str, float]:
    """(CAUGHT | SURVIVED | ERROR | TIMEOUT, evidence, seconds)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutation_{mutation.name}_") as folder:
        copy = pathlib.Path(folder) / "repo"
        copy_repository(root, copy)
        # The real data beside the checkout, beside the copy too, so its tests run, not skip.
        if (root.parent / "shared").is_dir():
            (pathlib.Path(folder) / "shared").symlink_to(root.parent / "shared")
        apply(mutation, copy)
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-rf", "--no-header",
                   "-p", "no:cacheprovider", *mutation.tests]
        if mutation.keyword:
            command += ["-k", mutation.keyword]
        env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
        try:
            result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                                    timeout=mutation.timeout)
        except subprocess.TimeoutExpired:
            return "TIMEOUT", f"no result in {mutation.timeout} s", time.perf_counter() - started
    output = result.stdout + result.stderr
    lines = output.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    summary = lines[-1] if lines else ""
    seconds = time.perf_counter() - started
    if result.returncode == 0:
        return "SURVIVED", summary, seconds
    if result.returncode in (1, 2) and failed:
        return "CAUGHT", failed[0][:160], seconds
    # 4/5: bad node id or nothing collected; no verdict on the mutation.
    return "ERROR", f"pytest exit {result.returncode}: {summary}\n{output[-2000:]}", seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated mutation names")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument("--check", action="store_true",
                        help="check that every edit applies exactly once, run no tests")
    args = parser.parse_args(argv)
    chosen = list(MUTATIONS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation(s) {', '.join(unknown)}; see --list")
        chosen = [m for m in MUTATIONS if m.name in names]
    if args.list:
        for mutation in chosen:
            selection = " ".join(mutation.tests) + (f" -k {mutation.keyword!r}" if mutation.keyword else "")
            print(f"{mutation.name}: {mutation.why}\n    {selection}")
        return 0
    if args.check:
        problems = []
        for mutation in chosen:
            for file, original, _ in mutation.edits:
                count = (ROOT / file).read_text().count(original) if (ROOT / file).is_file() else 0
                if count != 1:
                    problems.append(f"{mutation.name}: {file} holds the snippet {count} times")
        print("\n".join(problems) or f"all {len(chosen)} mutations apply exactly once")
        return 1 if problems else 0
    verdicts = []
    for mutation in chosen:
        verdict, evidence, seconds = run_one(mutation, ROOT)
        verdicts.append(verdict)
        print(f"{verdict:8s} {mutation.name} ({seconds:.0f} s): {evidence}", flush=True)
    caught = verdicts.count("CAUGHT")
    print(f"\n{caught} of {len(verdicts)} mutations caught")
    return 0 if caught == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
