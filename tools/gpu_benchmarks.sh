#!/bin/bash
# Every GPU benchmark of the project in one call of about 9 minutes (the suites' time limits
# add up to 540 s), for a session lent the GPU machine (README, Benchmarks). Run from the
# repository root there:
#     bash tools/gpu_benchmarks.sh [OUTPUT_FOLDER]        (default: $OUT, else runs/gpu_benchmarks)
# It uses the machine's own JAX, flax and optax (the pinned flax does not import with a newer
# JAX there) and needs dm-pix and ml-collections, which that machine lacks, as wheels in .whl/:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp -d .whl dm-pix==0.4.5 ml-collections==1.1.0
# Each suite has its own time limit and log, so one slow suite does not cost the others; the
# train suite prints each network's row as it is measured.
set -o pipefail
OUTPUT=${1:-${OUT:-runs/gpu_benchmarks}}
mkdir -p "$OUTPUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.6  # the rest is PyTorch's
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/tiqa_site \
    .whl/dm_pix*.whl .whl/ml_collections*.whl || exit 1
  export PYTHONPATH=/tmp/tiqa_site:$PWD
else
  export PYTHONPATH=$PWD
fi
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }
python3 -m pip list 2>/dev/null | grep -i -E "^(jax|jaxlib|flax|optax|torch|timm|torchmetrics|torchvision) " \
  | tee "$OUTPUT/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUTPUT/versions.txt"
bench() {  # NAME SECONDS FLAGS...
  local name=$1 seconds=$2; shift 2
  stamp "$name"
  timeout "$seconds" python3 -m launch.benchmark --config.suite="$name" "$@" 2>&1 \
    | grep -v -E "cuda_timer|UserWarning" | tee "$OUTPUT/$name.txt"
}
bench train 290 --config.train.batch=256 --config.train.inference_batch=1024 \
  --config.train.dtype=bfloat16 --config.train.steps=5
bench segmentation 100 --config.segmentation.batch=8 --config.segmentation.dtype=bfloat16 \
  --config.segmentation.steps=5
bench datagen 60 --config.datagen.originals=256 --config.datagen.reference_originals=2
bench acquisition 40 --config.acquisition.objects=16 --config.acquisition.repeats=3
bench score 50 --config.score.crop_batch=1024 --config.score.batch_size=64
stamp done
