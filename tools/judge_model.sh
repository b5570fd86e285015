#!/bin/bash
# Every benchmark the default-model rules read (tools/model_rules.py), for one candidate model,
# on held-out objects only: about 30 min on the project's 2-core CPU. From the repository root:
#     bash tools/judge_model.sh MODEL OUT [BRISQUE_MODEL]
#     .venv/bin/python tools/model_rules.py OUT [--texture_gate] [--own_view_gate]
# With PROBES=1 it runs only textures, B256_scored and compare (about 8 min; BRISQUE_MODEL
# needed), which `model_rules.py OUT --probes` reads: a candidate trained with textures is
# judged in full only once they pass (docs/acquisition_ladder.md, "Rounds 77 to 79").
# MODEL: an exported model folder (empty string: the shipped one). BRISQUE_MODEL: a retrained
# BRISQUE folder to reuse; without it the B run fits one on sub-volume A (OUT/B256/brisque_retrained).
# DATA (default ../shared/data) is the shared data folder. Each run writes OUT/NAME and its log
# OUT/NAME.log, and OUT/NAME.done (naming MODEL) once it succeeded; the cheapest runs come first.
# A run done before for the same MODEL is skipped, so the full judge after the probes (same OUT)
# runs only the rest.
set -euo pipefail
MODEL=${1?usage: tools/judge_model.sh MODEL OUT [BRISQUE_MODEL]}
OUT=${2?usage: tools/judge_model.sh MODEL OUT [BRISQUE_MODEL]}
D=${DATA:-../shared/data}
N=$D/nmc532_nanoct
PY=${PYTHON:-.venv/bin/python}
[ -d "$N/images" ] || { echo "judge_model: $N/images: no such folder (set DATA)" >&2; exit 2; }
list() { local prefix=$1 suffix=$2; shift 2; local items=(); for i in "$@"; do items+=("$prefix$i$suffix"); done
         (IFS=,; echo "${items[*]}"); }
A=$(list "$N/images/" .tif 1 100 200 300 400)
B=$(list "$N/images/" .tif 103 360 510 738 929 1098)
BL=$(list "$N/labels/" _label.tif 103 360 510 738 929 1098)
G=$(list "$D/iqa_reference/" "" goldhill.gif goldhill.gif goldhill.gif goldhill.gif I01.BMP I01.BMP I01.BMP I01.BMP)
T=$D/tomobank/tomo_00097.png
T4=$T,$T,$T,$T
TL=$D/tomoiqa/195.bmp,$D/tomoiqa/195.bmp
mkdir -p "$OUT"
BRISQUE=${3:-}
PROBES=${PROBES:-0}
if [ "$PROBES" = 1 ] && [ -z "$BRISQUE" ]; then
  echo "judge_model: PROBES=1 needs BRISQUE_MODEL (fitting one is the full judge's B256 run)" >&2; exit 2
fi
if [ -z "$BRISQUE" ]; then BRISQUE_FLAGS="--config.brisque_training.input=$A"; BRISQUE=$OUT/B256/brisque_retrained
else BRISQUE_FLAGS="--config.brisque_model=$BRISQUE"; fi
LADDER="$PY -m launch.evaluate_acquisition --config.checkpoint=$MODEL"
NO_PEERS="--config.brisque=False --config.filter_check=False"
run() {  # NAME COMMAND...: the command's output to OUT/NAME.log, its time on the terminal
  local name=$1 started=$SECONDS; shift
  # Kept only for the same model: a folder judged for another one is run again.
  if [ -e "$OUT/$name.done" ] && [ "$(cat "$OUT/$name.done")" = "model=$MODEL" ]; then
    echo "$name done before for this model: kept"; return; fi
  "$@" --config.output="$OUT/$name" > "$OUT/$name.log" 2>&1 || { echo "$name failed: $OUT/$name.log" >&2; exit 1; }
  echo "model=$MODEL" > "$OUT/$name.done"
  echo "$name $((SECONDS - started)) s"
}
full() { [ "$PROBES" = 1 ] || run "$@"; }  # a run the probes skip
full kinds $PY -m launch.evaluate --config.checkpoint="$MODEL" --config.input="$B" --config.distortion_backend=skimage
run textures $LADDER --config.textures=8 --config.phantoms=0 --config.factors='("detector_blur",)' $NO_PEERS
full B256 $LADDER --config.grey="$B" --config.label_maps="$BL" $BRISQUE_FLAGS
run B256_scored $LADDER --config.grey="$B" --config.label_maps="$BL" --config.object_scale=scored --config.brisque_model="$BRISQUE"
# Rule 8b reads the comparison at the paper's protocol (crops of slices resized to 255 px), where
# it was written; compare_own, at the crops the model scores for a user, is reported.
run compare $PY -m launch.compare --config.checkpoint="$MODEL" --config.input="$B" --config.brisque_model="$BRISQUE" --config.own_pixels=False
[ "$PROBES" = 1 ] && exit 0
run compare_own $PY -m launch.compare --config.checkpoint="$MODEL" --config.input="$B" --config.brisque_model="$BRISQUE"
run other256 $LADDER --config.grey="$T4" --config.label_maps="$TL" --config.phantoms=0 --config.brisque_model="$BRISQUE"
run valid256 $LADDER --config.grey="$G" --config.phantoms=6 --config.phantom_seed=2000 $NO_PEERS
run valid512 $LADDER --config.output_size=512 --config.grey="$G" --config.phantoms=6 --config.phantom_seed=2000 $NO_PEERS
run other512 $LADDER --config.output_size=512 --config.grey="$T4" --config.label_maps="$TL" --config.phantoms=0 $NO_PEERS
