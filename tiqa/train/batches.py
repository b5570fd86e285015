"""Training batches, made on the accelerator from a pool of resized reference slices.

Every step draws its originals from a per-epoch permutation, takes fresh random crops and
fresh noise and ring radii (SPEC.md 1.4), all from `fold_in(key, step)`: a batch is a pure
function of the step, which is what makes resuming exact.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tiqa import acquisition, distortions, errors, filters, io, labels, objects, preprocessing


class ReferencePool(NamedTuple):
    """Resized reference slices padded to one shape, with their true sizes and scores, and
    optionally a bank of simulated acquisition ladders."""

    images: jax.Array  # (S, H_max, W_max) float32 in [0, 1], zero beyond each slice
    heights: jax.Array  # (S,) int32
    widths: jax.Array  # (S,) int32
    scores: jax.Array  # (S,) float32 human (or prior) scores S0
    # (M, F, 6, A, A) ladders of M objects (`acquisition.ladders`), or None.
    ladders: jax.Array | None = None
    ladder_scores: jax.Array | None = None  # (M,) score S0 of each object's ideal acquisition
    # (M, L) 1 where a ladder trains, 0 where it is left out of the losses
    # (`LadderSettings.smooth_factors_left_out`); None: every ladder trains.
    ladder_weights: jax.Array | None = None
    # (M,) int32 side of each object's acquisitions when banks of several sizes share the
    # array (each in its top-left corner, zero beyond); None: every object fills it.
    ladder_sides: jax.Array | None = None


def build_pool(slices: Sequence[np.ndarray], scores: Sequence[float], resize: int, crop: int,
               own_pixels: bool = False) -> ReferencePool:
    """Resizes each slice's shorter side to `resize` (area; with `own_pixels` only the slices
    smaller than that, `preprocessing.model_view`) and pads them to a common shape."""
    if not slices:
        raise errors.InputError("no reference slices to train on")
    resized = [np.asarray(preprocessing.model_view(s, resize, own_pixels)) if resize
               else np.asarray(s) for s in slices]
    too_small = [i for i, r in enumerate(resized) if min(r.shape) < crop]
    if too_small:
        raise errors.InputError(f"slice(s) {too_small} are smaller than the {crop} px crop after resizing")
    height = max(r.shape[0] for r in resized)
    width = max(r.shape[1] for r in resized)
    images = np.zeros((len(resized), height, width), np.float32)
    for index, image in enumerate(resized):
        images[index, :image.shape[0], :image.shape[1]] = image
    return ReferencePool(
        images=jnp.asarray(images),
        heights=jnp.asarray([r.shape[0] for r in resized], jnp.int32),
        widths=jnp.asarray([r.shape[1] for r in resized], jnp.int32),
        scores=jnp.asarray(np.asarray(scores, np.float32)))


def first_originals(pool: ReferencePool, count: int) -> ReferencePool:
    """The pool limited to its first `count` slices (0: all of them).

    The order is `phantom.load_reference_slices`'s: the input's slices in the order listed,
    then the phantom's, so with the phantom mixed in the input's slices are kept first. A
    count beyond the pool keeps the whole pool, with a warning.
    """
    size = pool.images.shape[0]
    if count < 0:
        raise errors.InputError(f"originals must be 0 (all) or a positive number of slices, got {count}")
    if count > size:
        logging.warning("originals=%d but the pool has %d slices; using all of them", count, size)
    if count == 0 or count >= size:
        return pool
    return pool._replace(images=pool.images[:count], heights=pool.heights[:count],
                         widths=pool.widths[:count], scores=pool.scores[:count])


@dataclasses.dataclass(frozen=True)
class LadderSettings:
    """Simulated acquisition ladders of training objects added to every batch (the
    `acquisition` block of configs/common.add_acquisition)."""
    objects_per_batch: int = 0  # 0: no ladders
    grey: str = ""  # comma-separated grey slices
    label_maps: str = ""  # comma-separated label maps
    label_map_slices: int = 4
    # comma-separated label maps drawn as smooth grey slices (objects.smooth_from_labels)
    smooth_label_maps: str = ""
    # Factors whose ladders of smooth objects are simulated but left out of the losses.
    smooth_factors_left_out: tuple[str, ...] = ()
    phantoms: int = 0
    phantom_seed: int = 100
    textures: int = 0  # stochastic textures (objects.texture_image) drawn as grey slices
    # False: the textures are objects of the first bank (output_size) only, not of the
    # extra sizes' banks.
    textures_at_extra_sizes: bool = True
    # Every ladder of a texture object weighs this in the losses, against 1 for the other
    # objects' ladders: below 1, the textures' detail is learnt with less pull on the scale the
    # other objects set (docs/acquisition_ladder.md, "Textures in the 512 px bank only").
    texture_weight: float = 1.0
    factors: tuple[str, ...] = ("photons", "gain_error", "views", "centre_offset", "detector_blur")
    # One loss weight per factor's ladders, in the order of `factors` (empty: 1 each): above 1,
    # a factor the fine-tune would otherwise lose sight of pulls harder.
    factor_weights: tuple[float, ...] = ()
    output_size: int = 256
    # Banks of these sizes too, of the same objects, joined to the first (`with_ladders`): so
    # that training at the scan's own pixels sees 256 and 512 px acquisitions alike. Each
    # extra size is cached beside `cache` as <stem>_<size>px.npz.
    extra_output_sizes: tuple[int, ...] = ()
    # Banks of these sizes too with the grey slices and label maps drawn at the scored scale
    # (objects.SCALES: the whole slice as the scoring path shows it), joined after the others,
    # so that training at own pixels also sees the scale the score is read at. Each is cached
    # beside `cache` as <stem>_<size>px_scored.npz; textures as `textures_at_extra_sizes`.
    scored_output_sizes: tuple[int, ...] = ()
    max_views: int = 720
    cache: str = ""  # an .npz the phases share the simulated bank through
    object_scale: str = "native"  # objects.SCALES: slices drawn at their own or the scored scale
    # How the fine-tune labels each ladder (labels.NORMALISATIONS). "worst_level", as the
    # paper's kinds: every ladder's worst level is labelled 1, however little it changed the
    # object. "fixed": the observers' distances on the fixed scales of the projection, so a
    # factor that barely touches an object keeps a label near the ideal's.
    label_normalisation: str = "worst_level"
    # A denoising ladder per object after its factors' ladders (`denoising_ladders`): a noisy
    # acquisition through the candidate filters, ordered by how close each comes to the ideal.
    denoising_ladder: bool = False
    # The denoising ladder's weight in the losses, against 1 for every factor's ladder: below 1,
    # filter ranking is learnt with less pull on the physics factors' scale.
    denoising_weight: float = 1.0

    @property
    def num_ladders(self) -> int:
        """Ladders per object: one per factor, and the denoising ladder."""
        return len(self.factors) + int(self.denoising_ladder)


# The photon levels (indices into acquisition.LEVELS["photons"]) whose acquisitions the
# denoising ladders start from, one object after another: from mild to heavy noise.
DENOISING_PHOTON_LEVELS = (3, 4, 5)


def denoising_ladders(ladders: np.ndarray, factors: Sequence[str]) -> np.ndarray:
    """(M, 1, 6, A, A): for each object of the (M, F, 6, A, A) bank, its acquisition at photon
    level 3, 4 or 5 (in turn) through `filters.denoising_ladder`, below its ideal acquisition."""
    if "photons" not in factors:
        raise errors.InputError("acquisition.denoising_ladder needs 'photons' among "
                                f"acquisition.factors, got {tuple(factors)}")
    photons = list(factors).index("photons")
    return np.stack([filters.denoising_ladder(
        ladders[m, photons, 0],
        ladders[m, photons, DENOISING_PHOTON_LEVELS[m % len(DENOISING_PHOTON_LEVELS)]])
        for m in range(ladders.shape[0])])[:, None]


def with_ladders(pool: ReferencePool, settings: LadderSettings, seed: int, crop: int,
                 score: float) -> ReferencePool:
    """The pool with the ladder bank of `settings` (each ideal acquisition scored `score`),
    or as it is when `settings.objects_per_batch` is 0."""
    if not settings.objects_per_batch:
        return pool
    sizes = ([(settings.output_size, settings.object_scale)]
             + [(size, settings.object_scale) for size in settings.extra_output_sizes]
             + [(size, "scored") for size in settings.scored_output_sizes])
    for size, _ in sizes:
        if size < crop:
            raise errors.InputError(f"acquisition.output_size={size} is smaller than the {crop} px "
                                    f"crop")
    banks = [ladder_bank(_at_size(settings, size, index, scale), seed)
             for index, (size, scale) in enumerate(sizes)]
    ladders, sides = _joined([bank.ladders for bank in banks])
    names = [name for bank in banks for name in bank.names]
    weights = ladder_weights(names, settings)
    return pool._replace(ladders=jnp.asarray(ladders), ladder_scores=jnp.full(
        (ladders.shape[0],), score, jnp.float32),
        ladder_weights=None if (weights == 1).all() else jnp.asarray(weights),
        ladder_sides=None if len(sizes) == 1 else jnp.asarray(sides))


def _at_size(settings: LadderSettings, size: int, index: int, scale: str) -> LadderSettings:
    """The settings of one bank of `with_ladders`: the first as given, an extra size (at the
    objects' `scale`) cached beside it (<stem>_<size>px.npz, or <stem>_<size>px_scored.npz for
    a scored bank beside native ones), with the textures only where
    `settings.textures_at_extra_sizes`."""
    if index == 0:
        return dataclasses.replace(settings, extra_output_sizes=(), scored_output_sizes=())
    cache = pathlib.Path(settings.cache) if settings.cache else None
    tag = "_scored" if scale != settings.object_scale else ""
    return dataclasses.replace(
        settings, output_size=size, extra_output_sizes=(), scored_output_sizes=(),
        object_scale=scale, textures=settings.textures if settings.textures_at_extra_sizes else 0,
        cache=str(cache.with_name(f"{cache.stem}_{size}px{tag}{cache.suffix}")) if cache else "")


def _joined(banks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Banks (M_i, L, 6, A_i, A_i) as one (sum M_i, L, 6, A, A) array, A the largest side, each
    acquisition in its top-left corner; and each object's side (sum M_i,)."""
    if len(banks) == 1:
        return banks[0], np.full(len(banks[0]), banks[0].shape[-1], np.int32)
    side = max(bank.shape[-1] for bank in banks)
    joined = np.zeros((sum(len(bank) for bank in banks),) + banks[0].shape[1:3] + (side, side),
                      np.float32)
    start = 0
    for bank in banks:
        joined[start:start + len(bank), ..., :bank.shape[-2], :bank.shape[-1]] = bank
        start += len(bank)
    return joined, np.concatenate([np.full(len(bank), bank.shape[-1], np.int32) for bank in banks])


def ladder_weights(names: Sequence[str], settings: LadderSettings) -> np.ndarray:
    """(M, L) weights of the bank's ladders: 0 for the factors of
    `settings.smooth_factors_left_out` on smooth objects (names "smooth:..."),
    `settings.denoising_weight` for the denoising ladder, each factor's weight in
    `settings.factor_weights` (1 where it is empty) elsewhere; every ladder of a texture object
    (names "texture:...") times `settings.texture_weight`."""
    left_out = np.array([factor in settings.smooth_factors_left_out for factor in settings.factors]
                        + [False] * int(settings.denoising_ladder))
    weight = np.array(list(settings.factor_weights or [1.0] * len(settings.factors))
                      + [settings.denoising_weight] * int(settings.denoising_ladder))
    smooth = np.array([str(name).startswith("smooth:") for name in names])
    texture = np.array([str(name).startswith("texture:") for name in names])
    weights = np.where(smooth[:, None] & left_out[None, :], 0.0, weight[None, :])
    weights = np.where(texture[:, None], settings.texture_weight * weights, weights)
    return weights.astype(np.float32)


def training_objects(settings: LadderSettings, seed: int) -> tuple[np.ndarray, list[str]]:
    """The attenuation objects of the ladder settings, and a name for each."""
    found = objects.collect(settings.grey, settings.label_maps, settings.phantoms,
                            settings.phantom_seed, acquisition.object_size(settings.output_size),
                            seed, label_map_slices=settings.label_map_slices,
                            scale=settings.object_scale, scored_size=settings.output_size,
                            smooth_label_maps=settings.smooth_label_maps,
                            textures=settings.textures)
    if not found.kinds:
        raise errors.InputError("acquisition.objects_per_batch is set but acquisition.grey, "
                                "acquisition.label_maps, acquisition.smooth_label_maps, "
                                "acquisition.phantoms and acquisition.textures give no objects")
    prefixes = {"grey": "grey", "label_map": "labels", "smooth": "smooth", "phantom": "phantom",
                "texture": "texture"}
    return found.attenuation, [f"{prefixes[kind]}:{source}"
                               for kind, source in zip(found.kinds, found.sources)]


class LadderBank(NamedTuple):
    ladders: np.ndarray  # (M, L, 6, A, A)
    names: list[str]  # one per object, "kind:source" (`training_objects`)


def ladder_bank(settings: LadderSettings, seed: int) -> LadderBank:
    """(M, L, 6, A, A) acquisition ladders of the training objects, simulated once: one per
    factor, then the denoising ladder when `settings.denoising_ladder` is set; and the
    objects' names.

    With `settings.cache` set, the bank is read from that .npz when it was made from the same
    settings, and written there otherwise, so the rank and fine-tune phases share one. A bank
    of the same physics without the denoising ladders is extended rather than simulated anew.
    """
    physics = {key: getattr(settings, key) for key in (
        "grey", "label_maps", "label_map_slices", "phantoms", "phantom_seed", "output_size",
        "max_views")}
    # Banks made before these options stay valid while the options keep their defaults.
    if settings.object_scale != "native":
        physics["object_scale"] = settings.object_scale
    if settings.smooth_label_maps:
        physics["smooth_label_maps"] = settings.smooth_label_maps
    if settings.textures:
        physics["textures"] = settings.textures
    physics.update(factors=list(settings.factors), seed=seed)
    # Banks of an earlier model (version 1 stored none) differ here, so they are simulated anew.
    physics["acquisition_model"] = acquisition.MODEL_VERSION
    description = dict(physics, denoising_ladder=True) if settings.denoising_ladder else physics
    cache = pathlib.Path(settings.cache) if settings.cache else None
    ladders = None
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            found = json.loads(str(stored["description"]))
            if found == description:
                logging.info("acquisition ladders read from %s", cache)
                return LadderBank(stored["ladders"], [str(name) for name in stored["names"]])
            if found == physics:  # the same physics: only the denoising ladders are new
                ladders, names = stored["ladders"], [str(name) for name in stored["names"]]
        if ladders is None:
            logging.warning("%s was made from other acquisition settings; simulating anew", cache)
    if ladders is None:
        attenuation, names = training_objects(settings, seed)
        logging.info("simulating %d acquisitions of %d objects", attenuation.shape[0] * (
            1 + 5 * len(settings.factors)), attenuation.shape[0])
        ladders = acquisition.ladders(attenuation, tuple(settings.factors), jax.random.key(seed),
                                      output_size=settings.output_size,
                                      max_views=settings.max_views)
    if settings.denoising_ladder:
        logging.info("filtering %d noisy acquisitions for the denoising ladders", len(ladders))
        ladders = np.concatenate([ladders, denoising_ladders(ladders, settings.factors)], axis=1)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_write(cache) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, ladders=ladders, names=np.asarray(names),
                         description=json.dumps(description))
    return LadderBank(ladders, list(names))


def _random_crop(key: jax.Array, image: jax.Array, height: jax.Array, width: jax.Array,
                 size: int) -> jax.Array:
    top_key, left_key = jax.random.split(key)
    top = jax.random.randint(top_key, (), 0, height - size + 1)
    left = jax.random.randint(left_key, (), 0, width - size + 1)
    return jax.lax.dynamic_slice(image, (top, left), (size, size))


def _turned(images: jax.Array, key: jax.Array) -> jax.Array:
    """(G, ..., S, S) -> each of the G flipped and turned (`preprocessing.random_dihedral`, one
    draw for all of an item's images), from `key`."""
    keys = jax.random.split(key, (images.shape[0], 3))
    return jax.vmap(lambda item_keys, item: preprocessing.random_dihedral(tuple(item_keys), item)
                    )(keys, images)


def _originals(pool: ReferencePool, step: jax.Array, key: jax.Array, originals_per_batch: int,
               crop: int, turns: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(crops (G, crop, crop), scores (G,), distortion keys (G,)) for this step; with `turns`
    each crop flipped and turned (one of 8)."""
    count = pool.images.shape[0]
    steps_per_epoch = -(-count // originals_per_batch)
    epoch, position = step // steps_per_epoch, step % steps_per_epoch
    order = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 0), epoch), count)
    index = order[(position * originals_per_batch + jnp.arange(originals_per_batch)) % count]
    step_key = jax.random.fold_in(jax.random.fold_in(key, 1), step)
    crop_key, distortion_key = jax.random.split(step_key)
    crops = jax.vmap(functools.partial(_random_crop, size=crop))(
        jax.random.split(crop_key, originals_per_batch), pool.images[index],
        pool.heights[index], pool.widths[index])
    if turns:  # a key of its own, so the crops and distortions are those drawn without turns
        crops = _turned(crops, jax.random.fold_in(jax.random.fold_in(key, 4), step))
    return crops, pool.scores[index], jax.random.split(distortion_key, originals_per_batch)


def steps_per_epoch(pool_size: int, originals_per_batch: int) -> int:
    return -(-pool_size // originals_per_batch)


def ladder_crops(pool: ReferencePool, step: jax.Array, key: jax.Array, objects_per_batch: int,
                 crop: int, turns: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(G, F, 6, crop, crop), the (G,) scores S0 and the (G, F) ladder weights: the ladders of
    G objects of this step, each cut at one random place (the same for all its acquisitions,
    so they differ only by the acquisition) and, with `turns`, flipped and turned together."""
    count, _, _, height, width = pool.ladders.shape
    # A per-epoch permutation of the objects, as for the originals.
    epoch_steps = steps_per_epoch(count, objects_per_batch)
    order = jax.random.permutation(
        jax.random.fold_in(jax.random.fold_in(key, 2), step // epoch_steps), count)
    index = order[((step % epoch_steps) * objects_per_batch + jnp.arange(objects_per_batch))
                  % count]
    corner_key = jax.random.fold_in(jax.random.fold_in(key, 3), step)
    # Banks of several sizes share the array: each object's crop stays inside its own side.
    heights, widths = ((height, width) if pool.ladder_sides is None
                       else (pool.ladder_sides[index], pool.ladder_sides[index]))
    tops = jax.random.randint(jax.random.fold_in(corner_key, 0), (objects_per_batch,), 0,
                              heights - crop + 1)
    lefts = jax.random.randint(jax.random.fold_in(corner_key, 1), (objects_per_batch,), 0,
                               widths - crop + 1)
    cut = lambda ladder, top, left: jax.lax.dynamic_slice(
        ladder, (0, 0, top, left), ladder.shape[:2] + (crop, crop))
    weights = (jnp.ones(pool.ladders.shape[:2], jnp.float32) if pool.ladder_weights is None
               else pool.ladder_weights)
    ladders = jax.vmap(cut)(pool.ladders[index], tops, lefts)
    if turns:
        ladders = _turned(ladders, jax.random.fold_in(jax.random.fold_in(key, 5), step))
    return ladders, pool.ladder_scores[index], weights[index]


def _with_ladders(batch: dict, ladders: jax.Array, weights: jax.Array, extra: dict) -> dict:
    """`batch` with the ladder images (G, F, 6, h, w) appended, one group per object and factor,
    and a weight per image (`losses`): the ladder's (G, F) weight for its images, 1 for the
    batch's own."""
    extra = dict(extra, weights=jnp.broadcast_to(weights[:, :, None], ladders.shape[:3]))
    batch = dict(batch, weights=jnp.ones(batch["levels"].shape, jnp.float32))
    appended = _levels_and_groups(*ladders.shape[:3])
    appended["group_ids"] = appended["group_ids"] + batch["group_ids"].max() + 1
    appended.update((name, value.reshape(-1)) for name, value in extra.items())
    appended["images"] = ladders.reshape((-1,) + ladders.shape[-2:])
    return {name: jnp.concatenate([batch[name], value]) for name, value in appended.items()}


def trained_images(batch: dict) -> np.ndarray:
    """(N,) True for the images of a batch that train: weight above 0 (every image of a batch
    without weights). What fits to the training labels beside the losses leaves the rest out."""
    return np.asarray(batch.get("weights", np.ones(len(batch["images"])))) > 0


def _levels_and_groups(groups: int, num_kinds: int, num_levels: int) -> dict[str, jax.Array]:
    """Flat levels and group ids of (groups, kinds, levels) images: one group per original and
    kind, so a rank loss only orders images whose order is known."""
    levels = jnp.broadcast_to(jnp.arange(num_levels), (groups, num_kinds, num_levels))
    group_ids = jnp.broadcast_to(jnp.arange(groups * num_kinds).reshape(groups, num_kinds, 1),
                                 (groups, num_kinds, num_levels))
    return {"levels": levels.reshape(-1), "group_ids": group_ids.reshape(-1)}


def rank_batch(pool: ReferencePool, step: jax.Array, *, key: jax.Array, originals_per_batch: int,
               crop: int, kinds: tuple[str, ...], objects_per_batch: int = 0,
               turns: bool = False) -> dict[str, jax.Array]:
    """Each original with its levels 0..5 of every kind: (G K 6) images, their levels and groups.

    A group is one original under one kind (its reference and five levels), so the rank loss
    only orders images whose order is known. With `objects_per_batch`, the acquisition ladders
    of that many objects follow, one group per object and factor. With `turns`, every crop is
    flipped and turned at random (`DataSource.random_turns`).
    """
    crops, _, keys = _originals(pool, step, key, originals_per_batch, crop, turns)
    images = labels.distort_all_levels(crops, keys, labels.ProjectionConfig(kinds=kinds))
    batch = {"images": images.reshape((-1,) + images.shape[-2:]),
             **_levels_and_groups(*images.shape[:3])}
    if objects_per_batch:
        ladders, _, weights = ladder_crops(pool, step, key, objects_per_batch, crop, turns)
        batch = _with_ladders(batch, ladders, weights, {})
    return batch


def finetune_batch(pool: ReferencePool, step: jax.Array, *, key: jax.Array,
                   originals_per_batch: int, crop: int,
                   projection: labels.ProjectionConfig, objects_per_batch: int = 0,
                   ladder_normalisation: str = "worst_level", turns: bool = False
                   ) -> dict[str, jax.Array]:
    """Each original with its distorted versions and their projected labels (the MSE targets),
    and the groups of the rank term (`losses.mse_rank_loss_fn`), as in `rank_batch`.

    Acquisition ladders (`objects_per_batch`) are labelled by the same observers, which compare
    each acquisition with the ideal acquisition of the same object (it keeps S0), normalised
    by `ladder_normalisation` (`LadderSettings.label_normalisation`). `turns`: as `rank_batch`'s.
    """
    crops, scores, keys = _originals(pool, step, key, originals_per_batch, crop, turns)
    result = labels.project(crops, scores, keys, projection)
    batch = {"images": result.images.reshape((-1,) + result.images.shape[-2:]),
             "labels": result.labels.reshape(-1), **_levels_and_groups(*result.labels.shape)}
    if objects_per_batch:
        ladders, ladder_scores, weights = ladder_crops(pool, step, key, objects_per_batch, crop,
                                                       turns)
        if projection.quantize_8bit:
            ladders = jnp.round(ladders * 255.0) / 255.0
        ladder_projection = dataclasses.replace(projection, normalisation=ladder_normalisation)
        ladder_labels = labels.label_images(ladders, ladder_scores, ladder_projection).labels
        batch = _with_ladders(batch, ladders, weights, {"labels": ladder_labels})
    return batch


def images_per_batch(originals_per_batch: int, num_kinds: int, objects_per_batch: int = 0,
                     num_factors: int = 0) -> int:
    return (originals_per_batch * num_kinds + objects_per_batch * num_factors
            ) * distortions.NUM_LEVELS
