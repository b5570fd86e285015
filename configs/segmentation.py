"""D-LinkNet training: python -m launch.train_segmentation --config=configs/segmentation.py[:smoke]"""

import ml_collections

from configs import common

NANOCT = "../shared/data/nmc532_nanoct"
GROUP_A = ",".join(f"{NANOCT}/images/{n}.tif" for n in (1, 100, 200, 300, 400))


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.workdir = "runs/segmentation"
    # Slices (comma-separated) and the folder of their label maps <stem><label_suffix>; empty
    # images: the phantom below, with its ground truth. The default trains on sub-volume A of
    # the real nano-CT data and leaves sub-volume B for evaluation.
    config.images = GROUP_A
    config.labels = f"{NANOCT}/labels"
    config.label_suffix = "_label.tif"
    # Binary segmentation (num_classes 1): this label against the rest (0 = NMC particle).
    config.positive_class = 0
    common.add_phantom(config, size=256)

    config.model = ml_collections.ConfigDict()
    config.model.encoder = "resnet34"  # or resnet18 for small data
    config.model.num_classes = 1  # 1: sigmoid, particle vs rest; 3: softmax over the labels
    config.model.dtype = "float32"

    config.crop = 256  # a multiple of 32
    config.batch_size = 4
    config.intensity_jitter = 0.1
    config.epochs = 40
    config.steps_per_epoch = 25
    config.loss = ml_collections.ConfigDict({"bce_weight": 1.0, "dice_weight": 1.0})
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 1e-4
    config.optimizer.lr_drop_factor = 0.2  # lr / 5
    config.optimizer.lr_drop_steps = (600, 900)  # at fixed steps; () for none
    config.optimizer.plateau_patience = 0  # > 0: also lr / 5 after this many epochs without progress

    common.add_runtime(config)  # seed, devices, and the resume check's resume_with_changes
    config.log_every = 25
    config.checkpoint_every = 250
    config.keep_checkpoints = 2
    if variant == "smoke":
        config.workdir = "runs/smoke/segmentation"
        config.images = ""
        config.phantom.slices = 2
        config.phantom.size = 96
        config.model.encoder = "resnet18"
        config.crop = 64
        config.batch_size = 2
        config.epochs = 2
        config.steps_per_epoch = 1
        config.log_every = 1
        config.checkpoint_every = 2
        config.optimizer.lr_drop_steps = (1,)
    elif variant:
        raise ValueError(f"unknown segmentation config variant {variant!r}; known: smoke")
    return config
