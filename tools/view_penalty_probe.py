"""What a score penalty on the angular-sampling comb (tiqa.view_check) would do to an
acquisition-ladder benchmark, worked from the benchmark's own recorded scores.

    .venv/bin/python -m launch.evaluate_acquisition --config.grey=$B --config.label_maps=$BL \
        --config.object_scale=scored --config.brisque=False --config.filter_check=False \
        --config.output=runs/ladder_scored
    PYTHONPATH=. .venv/bin/python tools/view_penalty_probe.py --benchmark=runs/ladder_scored \
        --grey=$B --label-maps=$BL --phantoms=3 --phantom-seed=1000 --scale=scored

The objects and acquisitions are the benchmark's own (the same held-out objects, seed and
ladders, rebuilt here), each acquisition's comb is measured on its whole 256 px reconstruction
(as `launch.score --config.view_check=True` measures a slice), and each TIQA score loses
slope x (the comb between floor and cap), as `ring_check.Penalty` takes off the ring amplitude. Printed: the mean within-object SROCC per object kind
and factor, and the median score of the best acquisitions, with no penalty and with each
(floor, slope) asked for. docs/acquisition_ladder.md, "A penalty on the comb of sparse views",
has its figures. A probe: the shipped score has no such penalty.

With --fit, the penalty is fitted instead, on training objects only, as `launch.calibrate_rings`
fits the ring penalty: the views ladders of the objects (seed 0), the shipped network's scores
and the observers' labels of their 224 px centre crops (reference score 4), and each whole
acquisition's comb; `ring_check.fit_penalty` with the floor fixed at the check's threshold
(no --benchmark then):

    PYTHONPATH=. .venv/bin/python tools/view_penalty_probe.py --fit --grey=$TRAINING \
        --phantoms=4 --phantom-seed=100 --scale=native
"""

from __future__ import annotations

import argparse
import csv
import pathlib

import jax
import numpy as np

from tiqa import (acquisition, acquisition_ladder, checkpoints, labels, objects,
                  ring_check, scoring, view_check)

OUTPUT_SIZE = 256  # configs/evaluate_acquisition.py's output_size
SEED = 1  # and its seed
FIT_SEED = 0  # configs/calibrate_rings.py's
FIT_CAPS = (20.0, 40.0, 80.0, 1e9)  # comb values above which the penalty stops growing (1e9: never)


def fit(args) -> None:
    """Fits the views penalty on training objects and prints it with its figures."""
    found = objects.collect(args.grey, "", args.phantoms, args.phantom_seed,
                            acquisition.object_size(OUTPUT_SIZE), FIT_SEED, scale=args.scale,
                            scored_size=OUTPUT_SIZE)
    ladders = acquisition.ladders(found.attenuation, ("views",), jax.random.key(FIT_SEED),
                                  output_size=OUTPUT_SIZE)  # (M, 1, 6, N, N)
    comb = np.array([[view_check.view_comb(image)[0] for image in obj[0]] for obj in ladders])
    loaded = checkpoints.load_model("")
    crops = acquisition_ladder.centre_crops(ladders, loaded.resize, loaded.crop)
    count = crops.shape[0]
    projection = labels.label_images(crops, np.full((count,), 4.0, np.float32),
                                     labels.ProjectionConfig())
    ladder_labels = np.asarray(projection.labels)[:, 0]
    network = np.asarray(scoring.make_scorer(loaded, 64, with_ring_check=True)(
        crops.reshape((-1,) + crops.shape[-2:])), np.float64).reshape(count, -1)
    penalty = ring_check.fit_penalty(network, ladder_labels, comb, caps=FIT_CAPS,
                                     floors=(view_check.THRESHOLD,))
    penalised = network - np.asarray(penalty(comb))
    print(f"{count} training objects, {args.scale} scale: slope {penalty.slope:.4f} points per "
          f"unit of comb above {penalty.floor:g}, up to {penalty.cap:g}")
    print(f"within-object SROCC along the views ladders {acquisition_ladder.mean_within_object_srocc(network):.3f} "
          f"(TIQA) -> {acquisition_ladder.mean_within_object_srocc(penalised):.3f} (with the "
          f"penalty); RMSE against the labels {np.sqrt(np.mean((network - ladder_labels) ** 2)):.3f} "
          f"-> {np.sqrt(np.mean((penalised - ladder_labels) ** 2)):.3f}; ideal acquisitions' comb "
          f"at most {comb[:, 0].max():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", default="",
                        help="output folder of launch.evaluate_acquisition (its scores.csv)")
    parser.add_argument("--fit", action="store_true",
                        help="fit the penalty on these (training) objects instead")
    parser.add_argument("--grey", default="")
    parser.add_argument("--label-maps", default="")
    parser.add_argument("--phantoms", type=int, default=3)
    parser.add_argument("--phantom-seed", type=int, default=1000)
    parser.add_argument("--scale", default="native")
    parser.add_argument("--floors", default="12,8", help="comma-separated comb floors")
    parser.add_argument("--slopes", default="0.02,0.04", help="comma-separated score points per unit")
    parser.add_argument("--cap", type=float, default=80.0,
                        help="the comb above which the penalty stops growing (as ring_check's cap)")
    args = parser.parse_args()
    if args.fit:
        fit(args)
        return
    if not args.benchmark:
        raise SystemExit("give --benchmark (or --fit)")
    with open(pathlib.Path(args.benchmark) / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    factors = tuple(dict.fromkeys(row["factor"] for row in rows))
    held_out = acquisition_ladder.held_out_objects(args.grey, args.label_maps, args.phantoms,
                                                   args.phantom_seed, OUTPUT_SIZE, SEED,
                                                   args.scale)
    shape = (len(held_out.kinds), len(factors), acquisition.NUM_LEVELS)
    if len(rows) != np.prod(shape):
        raise SystemExit(f"{args.benchmark}/scores.csv has {len(rows)} rows, not the {shape} of "
                         "these objects and factors: give the benchmark's own objects and scale")
    score = np.array([float(row["TIQA"]) for row in rows]).reshape(shape)
    images = acquisition.ladders(held_out.attenuation, factors, jax.random.key(SEED),
                                 output_size=OUTPUT_SIZE)
    comb = np.array([[[view_check.view_comb(image)[0] for image in ladder] for ladder in obj]
                     for obj in images])
    kinds = np.array(held_out.kinds)
    summary = f"{len(kinds)} objects, {args.scale} scale"
    if "views" in factors:
        views = factors.index("views")
        sparse = [level for level, count in enumerate(acquisition.LEVELS["views"]) if count < 360]
        full = np.concatenate([np.delete(comb, views, axis=1).ravel(),
                               np.delete(comb[:, views], sparse, axis=1).ravel()])
        summary += (f"; comb of fully sampled acquisitions (360 views or more) at most "
                    f"{full.max():.1f}, of 180 views at least {comb[:, views, 2].min():.1f}")
    print(summary)
    trials = [(None, 0.0)] + [(float(f), float(s)) for f in args.floors.split(",")
                              for s in args.slopes.split(",")]
    print("penalty | " + " | ".join(f"{kind}: SROCC {', '.join(factors)}; median level 1"
                                    for kind in sorted(set(kinds))))
    for floor, slope in trials:
        penalised = score if floor is None else score - np.asarray(
            ring_check.Penalty(slope, args.cap, floor)(comb))
        cells = []
        for kind in sorted(set(kinds)):
            chosen = penalised[kinds == kind]
            sroccs = " ".join(f"{acquisition_ladder.mean_within_object_srocc(chosen[:, f]):.3f}"
                              for f in range(len(factors)))
            cells.append(f"{sroccs}; {np.median(chosen[:, :, 1]):.2f}")
        label = "none" if floor is None else f"floor {floor:g}, slope {slope:g}"
        print(f"{label} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
