"""Benchmarks: python -m launch.benchmark --config=configs/benchmark.py --config.suite=datagen"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.suite = "datagen"
    config.seed = 0
    # Where the originals come from: empty = phantom slices the project makes itself,
    # otherwise a slice, volume or folder (e.g. ../shared/data/nmc532_nanoct/images).
    config.input = ""
    config.crop = 224

    config.datagen = ml_collections.ConfigDict()
    # Originals labelled per batched call (15 distorted images each).
    config.datagen.originals = 32
    # Originals run through the per-image numpy/scikit-image path; it is slow, and its rate
    # does not depend on how many are run, so a few are enough.
    config.datagen.reference_originals = 4
    config.datagen.repeats = 3
    config.datagen.kinds = ("blur", "noise", "ring")
    # On the GPU, two of the generator's operations beside their PyTorch peers (SPEC.md
    # section 7): SSIM of this many pairs (torchmetrics), a sigma 6.5 blur of this many
    # images (torchvision).
    config.datagen.peer_ssim_pairs = 1024
    config.datagen.peer_blur_images = 256

    config.train = ml_collections.ConfigDict()
    config.train.variants = ("b0", "lite0")
    # Images per train step, rounded down to whole groups of 18 (an original, 3 kinds x 6
    # levels). The GPU comparison uses 256 (the timm peer's batch) and inference 1024.
    config.train.batch = 18
    config.train.inference_batch = 18
    config.train.size = 224
    config.train.dtype = "float32"  # bfloat16 on the GPU
    config.train.steps = 3
    # The GPU peers (timm, bf16 autocast, channels-last): each runs eager; the compiled ones
    # also run under torch.compile.
    config.train.timm_peers = ("efficientnet_b0", "tf_efficientnet_lite0")
    config.train.timm_compiled = ("efficientnet_b0",)

    config.score = ml_collections.ConfigDict()
    config.score.checkpoint = ""  # empty: the shipped default model
    config.score.crop_batch = 64
    # The paper's volumes: 594 slices of 720x720.
    config.score.volume_slices = 594
    config.score.volume_size = 720
    config.score.batch_size = 16  # slices per call
    config.score.repeats = 3

    config.segmentation = ml_collections.ConfigDict()
    # The PyTorch peer's setting is batch 8 at 1024x1024 (SPEC.md section 7); a 2-core CPU
    # gets through batch 1 in a few seconds.
    config.segmentation.batch = 1
    config.segmentation.size = 1024
    config.segmentation.dtype = "float32"  # bfloat16 on the GPU
    config.segmentation.steps = 2

    config.acquisition = ml_collections.ConfigDict()
    # Phantom objects scanned along every factor's ladder (tiqa.acquisition) in one call.
    config.acquisition.objects = 4
    config.acquisition.factors = ("photons", "gain_error", "views", "centre_offset",
                                  "detector_blur")
    config.acquisition.output_size = 256
    config.acquisition.max_views = 720
    config.acquisition.repeats = 1
    # Acquisitions through scikit-image's radon + iradon, one image at a time (slow).
    config.acquisition.reference_acquisitions = 3

    config.scale = ml_collections.ConfigDict()
    # Synthetic uint16 TIFF volumes of these sizes (GiB on disk), each scored by launch.score
    # in a child process: slices/s and peak RSS per size (a flat curve: memory is set by the
    # batch, not the volume). They are written to a temporary folder under `folder` (empty:
    # the system's) and removed.
    config.scale.sizes_gb = (0.25, 1.0, 4.0)
    config.scale.slice_size = 1024
    config.scale.batch_size = 8
    config.scale.crops = "center"
    config.scale.checkpoint = ""  # empty: the shipped default model
    config.scale.folder = ""
    return config
