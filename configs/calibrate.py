"""Penalty calibration: python -m launch.calibrate --config.grey=SLICES [--config.phantoms=N]
[--config.checks=ring_check,noise_check,view_check,centre_check] [--config.checkpoint=DIR]
[--config.output=DIR]

Fits how many score points a unit of ring amplitude (tiqa.ring_check), of photon noise
(tiqa.noise_check), of the comb of sparse views (tiqa.view_check) and of the estimated
rotation-centre offset (tiqa.centre_check) cost beyond what the network already takes off, on
the gain-error, low-photons, views and centre-offset ladders of training objects, and writes
the network with those penalties as an exported model.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.checkpoint = ""  # the network to calibrate; empty: the shipped one
    config.output = "runs/calibrated"  # the exported model, with its penalties
    # The penalties to fit (model.json keys); a penalty not named is kept as the model has it.
    # "noise_check" (tiqa.noise_check) charges correlated noise only: on plain noise sigma it
    # pushed the paper's white noise kind below its labels (docs/comparison.md, "A noise
    # penalty"); gated by the noise's level ratio it ships (round 34w).
    config.checks = ("ring_check", "noise_check", "view_check", "centre_check")
    # Training objects, comma-separated grey slices or folders (never the held-out ones), and
    # phantoms of training seeds.
    config.grey = ""
    config.phantoms = 0
    config.phantom_seed = 100
    # native | scored (tiqa.objects.SCALES) | both: the objects drawn at each scale, fitted
    # together (tiqa.phases.calibrate.OBJECT_SCALES)
    config.object_scale = "native"
    config.output_size = 256  # as the acquisition-ladder benchmark
    # The centre penalty is fitted once per size of these (ladders of that size, measured
    # whole): a slice is charged by the fit of the largest size its measured square reaches
    # (the first below that), as the offset's estimate grows more reliable with the square
    # (tiqa.centre_check; at most its PENALTY_SIDE, 512 px). The shipped model has the 256 px
    # fit alone: (256, 512) adds a 512 px fit that orders the offsets better but charges the
    # best acquisitions too (docs/acquisition_ladder.md, "A centre penalty per measured size").
    config.centre_output_sizes = (256,)
    config.max_views = 720
    config.seed = 0
    # The label of each ideal acquisition: the prior of unannotated references.
    config.reference_score = 4.0
    config.batch_size = 64
    # Fit the network's own line first (label ~ a x score + c on the training objects' ladders
    # of the five factors, 'fixed' labels as the fine-tune's), folded into its output layer;
    # then the penalties on the lined network. Off: the network's scale is the fine-tune's.
    config.output_line = False
    # The line through every acquisition ('acquisitions': least squares, flattened by the
    # network's scatter across objects) or through the (factor, level) medians over the objects
    # ('level_medians': each level's median score at its median label).
    config.output_line_fit = "acquisitions"
    if variant == "smoke":
        config.output = "runs/smoke/calibrated"
        config.output_size, config.max_views = 80, 180
        config.centre_output_sizes = (80,)
    elif variant:
        raise ValueError(f"unknown calibrate config variant {variant!r}; known: smoke")
    return config
