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
min(slope x max(comb - floor, 0), cap). Printed: the mean within-object SROCC per object kind
and factor, and the median score of the best acquisitions, with no penalty and with each
(floor, slope) asked for. docs/acquisition_ladder.md, "A penalty on the comb of sparse views",
has its figures. A probe: the shipped score has no such penalty.
"""

from __future__ import annotations

import argparse
import csv
import pathlib

import jax
import numpy as np

from tiqa import acquisition, acquisition_ladder, view_check

OUTPUT_SIZE = 256  # configs/evaluate_acquisition.py's output_size
SEED = 1  # and its seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True,
                        help="output folder of launch.evaluate_acquisition (its scores.csv)")
    parser.add_argument("--grey", default="")
    parser.add_argument("--label-maps", default="")
    parser.add_argument("--phantoms", type=int, default=3)
    parser.add_argument("--phantom-seed", type=int, default=1000)
    parser.add_argument("--scale", default="native")
    parser.add_argument("--floors", default="12,8", help="comma-separated comb floors")
    parser.add_argument("--slopes", default="0.02,0.04", help="comma-separated score points per unit")
    parser.add_argument("--cap", type=float, default=1.0, help="the largest penalty")
    args = parser.parse_args()
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
        penalised = score if floor is None else score - np.minimum(
            slope * np.maximum(comb - floor, 0.0), args.cap)
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
