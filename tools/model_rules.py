"""The rules a candidate default model must pass before it replaces the shipped one.

They were written before the candidates they judged (docs/acquisition_ladder.md, "Round 34"
for rules 1 to 7, "Round 53c" for rules 8a to 8c; rule 8d, the comparison's overall figure
against the retrained BRISQUE, after a noise penalty lost it, docs/comparison.md) and keep the
issue's goals that the shipped model meets, on held-out objects only. `tools/judge_model.sh
MODEL OUT` runs every benchmark they read into OUT; this tool reads OUT and prints each rule,
its figures and PASS or FAIL:

    .venv/bin/python tools/model_rules.py OUT [--texture_gate] [--textures_baseline=0.543,2.60]
        [--own_view_gate] [--probes]

OUT holds the runs by name: valid512, valid256, other512, other256 (`launch.evaluate_acquisition`
on the validation set and the other facility), B256 and B256_scored (sub-volume B at 256 px,
native and scored scale), kinds (`launch.evaluate`, the paper's kinds on B), compare
(`launch.compare` at the paper's protocol, crops of slices resized to 255 px) and, optionally,
compare_own (the comparison at the crops the model scores for a user, reported, and with
`--own_view_gate` a rule: its phantom acquisitions at least 0.95, for candidates trained to
lift the score's floor, "Round 63c") and textures
(held-out synthetic textures, detector blur), reported, and a rule with `--texture_gate` (for
candidates trained with textures, "Round 53c").
With `--probes`, OUT need only hold what `PROBES=1 tools/judge_model.sh` runs (textures,
B256_scored, compare), and the rules are 8a, 8b and the texture gate: the ones candidates
trained with textures have failed, so a candidate is judged in full only once they pass
(docs/acquisition_ladder.md, "Rounds 77 to 79").
The exit code is 0 when every rule passes, 1 when one fails, 2 when a run is missing.
"""

from __future__ import annotations

import argparse
import collections
import csv
import pathlib
import re
import sys

import numpy as np

# The own-view gate's floor: rule 8b's, at the crops a user's scans are scored on (the
# shipped round 34c reads 0.897 there, BRISQUE fitted on own-pixel crops 0.970).
OWN_VIEW_FLOOR = 0.95
TOLERANCE = 1e-9  # SROCC means such as 0.95 come out as 0.9499999...; they pass


def _rows(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run tools/judge_model.sh first)")
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def factor_srocc(run: pathlib.Path, contender: str = "TIQA",
                 column: str = "srocc") -> dict[str, dict[str, float]]:
    """{object kind: {factor: mean within-object SROCC}} of a ladder run, as the benchmark
    wrote it: over levels 1 to 5 (`srocc`) or 0 to 5 (`srocc_with_ideal`)."""
    table = collections.defaultdict(dict)
    for row in _rows(run / "ladder.csv"):
        if row["contender"] == contender:
            table[row["object_kind"]][row["factor"]] = float(row[column])
    return dict(table)


def judge_mean(table: dict[str, dict[str, float]]) -> float:
    """The mean over object kinds of the mean over factors (rules 1 to 3)."""
    return float(np.mean([np.mean(list(factors.values())) for factors in table.values()]))


def level_median(run: pathlib.Path, object_kind: str, level: str) -> float:
    return float(np.median([float(r["TIQA"]) for r in _rows(run / "scores.csv")
                            if r["object_kind"] == object_kind and r["level"] == level]))


def filter_selection(run: pathlib.Path) -> float:
    found = re.search(r"SROCC between score and SSIM gain (-?[0-9.]+)",
                      (run / "ladder.md").read_text())
    if found is None:
        raise ValueError(f"{run / 'ladder.md'}: no filter-selection line (run with the filter check)")
    return float(found.group(1))


def texture_blur(run: pathlib.Path) -> tuple[float, float]:
    """Held-out textures' detector blur: mean within-object SROCC over all six levels (the
    ideal counts: mild blur must not score above it) and the ideals' median score."""
    table = factor_srocc(run, column="srocc_with_ideal")
    if "detector_blur" not in table.get("texture", {}):
        raise ValueError(f"{run / 'ladder.csv'}: no texture objects' detector blur "
                         "(run launch.evaluate_acquisition with --config.textures)")
    return table["texture"]["detector_blur"], level_median(run, "texture", "0")


def rules(out: pathlib.Path) -> list[tuple[str, bool | None, str]]:
    """(rule, passed, figures) for rules 1 to 8 (8d: "Round 34n", docs/comparison.md)."""
    found = []
    tables = {name: factor_srocc(out / name) for name in ("valid512", "valid256", "other512")}
    means = {name: judge_mean(table) for name, table in tables.items()}
    for rule, name, floor in (("1 validation set 512 px", "valid512", 0.9496),
                              ("2 validation set 256 px", "valid256", 0.9700),
                              ("3 other facility 512 px", "other512", 0.9625)):
        found.append((rule, means[name] >= floor - TOLERANCE, f"{means[name]:.4f} (>= {floor})"))
    lowest = min((value, f"{name} {kind} {factor}") for name, table in tables.items()
                 for kind, factors in table.items()
                 for factor, value in factors.items())
    found.append(("4 no factor under 0.7 in 1-3", lowest[0] >= 0.7 - TOLERANCE,
                  f"lowest {lowest[0]:.3f} ({lowest[1]})"))
    kinds = {r["kind"]: float(r["srocc_vs_level"]) for r in _rows(out / "kinds" / "score_vs_level.csv")}
    floors = {"blur": 0.95, "noise": 0.95, "ring": 0.85}
    found.append(("5 the paper's kinds on B", all(kinds[k] >= v - TOLERANCE for k, v in floors.items()),
                  " / ".join(f"{k} {kinds[k]:.3f}" for k in floors)))
    native = factor_srocc(out / "B256")
    grey = {k: v for k, v in native["grey"].items() if k != "centre_offset"}  # the missed goal
    medians = {kind: level_median(out / "B256", kind, "0") for kind in ("grey", "label_map")}
    found.append(("6 B 256 px native", min(grey.values()) >= 0.95 - TOLERANCE
                  and min(native["label_map"].values()) >= 0.90 - TOLERANCE
                  and min(medians.values()) >= 3.5,
                  f"grey {_line(native['grey'])}; label maps lowest {min(native['label_map'].values()):.3f}; "
                  f"ideal medians {medians['grey']:.2f} / {medians['label_map']:.2f}"))
    selection = filter_selection(out / "B256")
    found.append(("7 filter selection", selection >= 0.8, f"{selection:.3f} (>= 0.8)"))
    found += [scored_scale_rule(out), phantom_scans_rule(out)]
    other = factor_srocc(out / "other256")["grey"]
    found.append(("8c other facility 256 px grey", min(other.values()) >= 0.7 - TOLERANCE, _line(other)))
    compared = _rows(out / "compare" / "comparison.csv")
    overall = {r["metric"]: float(r["srocc"]) for r in compared if r["set"] == "overall"}
    peer = overall.get("BRISQUE (retrained)", float("nan"))
    found.append(("8d comparison overall, not under the retrained BRISQUE",
                  "TIQA" in overall and overall["TIQA"] >= peer - TOLERANCE,
                  f"{overall.get('TIQA', float('nan')):.3f} (BRISQUE retrained {peer:.3f})"))
    return found


def scored_scale_rule(out: pathlib.Path) -> tuple[str, bool, str]:
    """Rule 8a: B at the scored scale (OUT/B256_scored)."""
    scored = factor_srocc(out / "B256_scored")["grey"]
    brisque = factor_srocc(out / "B256_scored", "BRISQUE (retrained)")["grey"]
    level1 = level_median(out / "B256_scored", "grey", "1")
    scored_selection = filter_selection(out / "B256_scored")
    below = [f for f in scored if scored[f] < brisque[f] - TOLERANCE]
    return ("8a B 256 px scored scale", min(scored.values()) >= 0.95 - TOLERANCE and level1 >= 3.5
            and scored_selection >= 0.8 and not below,
            f"grey {_line(scored)}; level-1 median {level1:.2f}; filter selection "
            f"{scored_selection:.3f}; under the retrained BRISQUE: {', '.join(below) or 'none'}")


def phantom_scans_rule(out: pathlib.Path) -> tuple[str, bool, str]:
    """Rule 8b: the comparison's phantom acquisitions at the paper's protocol (OUT/compare)."""
    phantoms = [float(r["srocc"]) for r in _rows(out / "compare" / "comparison.csv")
                if r["set"] == "phantom acquisitions" and r["metric"] == "TIQA"]
    return ("8b comparison, phantom acquisitions", bool(phantoms) and phantoms[0] >= 0.95,
            f"{phantoms[0]:.3f} (>= 0.95)" if phantoms else "no TIQA row")


def own_view_rule(out: pathlib.Path, gate: bool) -> tuple[str, bool | None, str]:
    """The comparison at the model's own view (OUT/compare_own): a rule with `gate`, at
    OWN_VIEW_FLOOR, reported otherwise."""
    rows = {(r["set"], r["metric"]): float(r["srocc"])
            for r in _rows(out / "compare_own" / "comparison.csv")}
    phantoms = rows["phantom acquisitions", "TIQA"]
    return ("own-view gate" if gate else "comparison at the model's own view",
            phantoms >= OWN_VIEW_FLOOR - TOLERANCE if gate else None,
            f"phantom acquisitions {phantoms:.3f}{f' (>= {OWN_VIEW_FLOOR})' if gate else ''}, "
            f"overall {rows['overall', 'TIQA']:.3f}, rings {rows['ring', 'TIQA']:.3f}")


def texture_rule(out: pathlib.Path, baseline: str, gate: bool) -> tuple[str, bool | None, str]:
    """The held-out textures (OUT/textures) against the gate `baseline` ("blur,median") sets: a
    rule with `gate`, reported otherwise."""
    blur, ideal = texture_blur(out / "textures")
    base_blur, base_ideal = (float(v) for v in baseline.split(","))
    passed = blur >= base_blur + 0.2 - TOLERANCE and ideal >= base_ideal + 0.5
    return ("texture gate" if gate else "textures", passed if gate else None,
            f"blur over six levels {blur:.3f}, ideals' median {ideal:.2f} "
            f"(the gate: {base_blur + 0.2:.3f} and {base_ideal + 0.5:.2f})")


def _line(factors: dict[str, float]) -> str:
    return " / ".join(f"{value:.3f}" for value in factors.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--texture_gate", action="store_true",
                        help="the held-out textures are a rule, not only reported")
    parser.add_argument("--textures_baseline", default="0.543,2.60",
                        help="the shipped model's (round 34c) blur SROCC and ideals' median on the "
                             "textures judge_model.sh draws (seed 1); the gate asks 0.2 and 0.5 above "
                             "them, as 'Round 53c' asked of the probe's textures")
    parser.add_argument("--own_view_gate", action="store_true",
                        help=f"the comparison's phantom acquisitions at the model's own view "
                             f"(compare_own) are a rule: at least {OWN_VIEW_FLOOR}")
    parser.add_argument("--probes", action="store_true",
                        help="only the rules the probes read (PROBES=1 tools/judge_model.sh): 8a, 8b "
                             "and the texture gate, the first a candidate trained with textures "
                             "has failed; a candidate is judged in full only if they pass")
    args = parser.parse_args(argv)
    if args.probes and args.own_view_gate:
        # The probes do not run compare_own, so the gate could only be skipped: refuse instead.
        parser.error("--own_view_gate reads OUT/compare_own, which the probes do not run "
                     "(drop --probes for the full rules)")
    try:
        if args.probes:
            found = [scored_scale_rule(args.out), phantom_scans_rule(args.out),
                     texture_rule(args.out, args.textures_baseline, gate=True)]
        else:
            found = rules(args.out)
            if args.own_view_gate or (args.out / "compare_own").exists():
                found.append(own_view_rule(args.out, args.own_view_gate))
            if (args.out / "textures").exists():
                found.append(texture_rule(args.out, args.textures_baseline, args.texture_gate))
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"model_rules: {error}", file=sys.stderr)
        return 2
    for rule, passed, figures in found:
        print(f"{'INFO' if passed is None else 'PASS' if passed else 'FAIL'}  {rule}: {figures}")
    return 0 if all(passed is not False for _, passed, _ in found) else 1


if __name__ == "__main__":
    sys.exit(main())
