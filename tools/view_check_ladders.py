"""The angular-sampling check (tiqa.view_check) on acquisition ladders: how strong the comb is
on fully sampled acquisitions, and which sparse-view levels it flags with the right count.

    PYTHONPATH=. .venv/bin/python tools/view_check_ladders.py --grey=A.tif,B.png --phantoms=2 \
        --phantom-seed=100 --scale=native

Every object is scanned along the five ladder factors (tiqa.acquisition.ladders, 256 px, seed
0). "Fully sampled" is every acquisition with 360 views or more: the ideal, the other factors at
every level, and 360 views. docs/acquisition_ladder.md, "The comb of sparse views as a
diagnostic", has its figures.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from tiqa import acquisition, objects, view_check

OUTPUT_SIZE = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grey", default="", help="comma-separated grey slices (objects)")
    parser.add_argument("--phantoms", type=int, default=0)
    parser.add_argument("--phantom-seed", type=int, default=100)
    parser.add_argument("--scale", default="native", choices=objects.SCALES)
    args = parser.parse_args()
    found = objects.collect(args.grey, "", args.phantoms, args.phantom_seed,
                            acquisition.object_size(OUTPUT_SIZE), 0, scale=args.scale,
                            scored_size=OUTPUT_SIZE)
    if not found.kinds:
        raise SystemExit("no objects: give --grey or --phantoms")
    factors = acquisition.LADDER_FACTORS
    images = acquisition.ladders(found.attenuation, factors, jax.random.key(0),
                                 output_size=OUTPUT_SIZE)
    measured = np.array([[[view_check.view_comb(level) for level in ladder] for ladder in obj]
                         for obj in images])  # (objects, factors, levels, [strength, views])
    strength, estimate = measured[..., 0], measured[..., 1]
    views = factors.index("views")
    full_views = [level for level, count in enumerate(acquisition.LEVELS["views"]) if count >= 360]
    fully_sampled = np.concatenate([strength[:, [f for f in range(len(factors)) if f != views]].ravel(),
                                    strength[:, views, full_views].ravel()])
    print(f"{len(found.kinds)} objects, {args.scale} scale")
    print(f"fully sampled: {fully_sampled.size} acquisitions, max strength {fully_sampled.max():.1f}, "
          f"flagged {int(np.sum(fully_sampled > view_check.THRESHOLD))}")
    for level, count in enumerate(acquisition.LEVELS["views"]):
        if count >= 360:
            continue
        column = strength[:, views, level]
        print(f"{count} views: flagged {int(np.sum(column > view_check.THRESHOLD))} of "
              f"{column.size}, smallest strength {column.min():.1f}, estimate exact "
              f"{int(np.sum(estimate[:, views, level] == count))}")


if __name__ == "__main__":
    main()
