"""A trained score network as a function, and the evaluation phase built on it.

`make_scorer(checkpoints.load_model(path))` is a jitted `score(images) -> (N,)` for (N, H, W)
crops in [0, 1]; `make_slice_scorer` scores whole slices. The evaluation and scoring phases
built on them are `tiqa.phases.evaluate` and `tiqa.phases.score`.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from tiqa import (centre_check, checkpoints, errors, io, labels, noise_check, penalties,
                  preprocessing, reference_distortions, ring_check, view_check, volumes)
from tiqa.models.forward import eval_forward

Scorer = Callable[[np.ndarray], np.ndarray]
# The score CSV's columns, its angular-sampling ones (launch.score's config.view_check) and its
# rotation-centre one (config.centre_check).
CSV_FIELDS = ("file", "slice", "volume", "score", "spread", "n_crops")
VIEW_FIELDS = ("view_comb", "views")
CENTRE_FIELDS = ("centre_offset",)


def in_fixed_batches(function, images: np.ndarray, batch_size: int):
    """`function` over `images` in batches of exactly min(`batch_size`, number of images), so
    one compiled shape serves every batch: the last batch is padded by repeating its last image
    and the padding's outputs are dropped (never padded past the input). `function` returns an
    array, or a tuple of arrays, with a leading batch axis; so does this, for all the images."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    batch_size = min(batch_size, len(images))
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        count = len(chunk)
        if count < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - count, axis=0)])
        outputs.append(jax.tree.map(lambda x, n=count: np.asarray(x)[:n], function(chunk)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def make_scorer(loaded: checkpoints.LoadedModel, batch_size: int = 64,
                with_ring_check: bool = True, on_scale: bool = True,
                with_noise_check: bool = True) -> Scorer:
    """A function (N, H, W) crops in [0, 1] -> (N,) scores, run in fixed-size jitted batches.

    With `with_ring_check` and a model that has a ring penalty, each crop's score loses the
    penalty of its ring amplitude about the crop's centre (`tiqa.ring_check`): meant for
    centre crops of reconstructed slices, whose rotation axis is there. With
    `with_noise_check` and a model that has a noise penalty, each crop's score loses the
    penalty of its noise (`tiqa.noise_check`). With `on_scale` the scores are kept above the
    scale's 1 in order (`penalties.onto_scale`); without, they are the linear scores, for
    callers that take off more before the end.
    """
    penalty = loaded.ring_penalty if with_ring_check else None
    noise_penalty = loaded.noise_penalty if with_noise_check else None

    def forward(chunk):
        scores = eval_forward(loaded.graphdef, loaded.params, loaded.batch_stats, chunk)
        if penalty is not None:
            scores = scores - penalty(ring_check.ring_amplitude(chunk))
        if noise_penalty is not None:
            scores = scores - noise_penalty(noise_check.correlated_noise(chunk))
        return penalties.onto_scale(scores) if on_scale else scores

    def score(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if not len(images):
            return np.zeros((0,), np.float32)
        return in_fixed_batches(forward, images, batch_size)

    return score


def distorter(backend: str, projection: labels.ProjectionConfig, seed: int):
    """(crops, scores, first index) -> labels.Projection, with the JAX or the scikit-image path.

    'skimage' distorts each crop with scikit-image and the numpy ring loop
    (`tiqa.reference_distortions`), independently of the JAX distortions under test.
    """
    if backend == "jax":
        project = jax.jit(labels.project, static_argnums=3)
        base_key = jax.random.key(seed)

        def jax_path(crops, scores, first):
            keys = jnp.stack([jax.random.fold_in(base_key, first + i) for i in range(len(crops))])
            return project(crops, scores, keys, projection)
        return jax_path
    if backend == "skimage":
        unknown = set(projection.kinds) - set(reference_distortions.KINDS)
        if unknown:
            raise errors.InputError(f"distortion_backend='skimage' has no {sorted(unknown)}; "
                                    f"use kinds from {reference_distortions.KINDS}")

        def skimage_path(crops, scores, first):
            images = np.empty((len(crops), len(projection.kinds), 6) + crops.shape[1:], np.float32)
            for n, crop in enumerate(crops.astype(np.float64)):
                rng = np.random.default_rng([seed, first + n])
                for k, kind in enumerate(projection.kinds):
                    images[n, k, 0] = crop
                    for level in range(1, 6):
                        images[n, k, level] = reference_distortions.distort(kind, crop, level, rng)
            return labels.label_images(images, scores, projection)
        return skimage_path
    raise errors.InputError(f"distortion_backend must be 'jax' or 'skimage', got {backend!r}")


# --- Scoring slices and volumes ---------------------------------------------------------------

CROP_MODES = ("center", "grid")
WHOLE_GRID = "the whole grid"  # what a grid's most_per_side of 0 means


def crop_positions(height: int, width: int, crop: int, mode: str,
                   most_per_side: int = 0) -> list[tuple[int, int]]:
    """Top-left corners of the crops of a (height, width) image: its centre, or an even grid
    of ceil(side / crop) crops per side that covers the whole image (overlapping as needed).
    With `most_per_side` > 0, the grid has at most that many crops per side, still spread
    evenly from edge to edge (a sample of the slice, with gaps between the crops); one crop a
    side is centred."""
    if mode not in CROP_MODES:
        raise errors.InputError(f"crops must be one of {CROP_MODES}, got {mode!r}")
    errors.check_non_negative(most_per_side, "most_per_side", WHOLE_GRID)
    if min(height, width) < crop:
        raise io.ImageError(f"a {height}x{width} image is smaller than the {crop} px crop")
    if mode == "center":
        return [((height - crop) // 2, (width - crop) // 2)]

    def starts(side):
        count = -(-side // crop)
        if most_per_side:
            count = min(count, most_per_side)
        if count == 1:  # one crop a side sits in the middle, as the centre crop does
            return [(side - crop) // 2]
        return np.linspace(0, side - crop, count).round().astype(int)

    return [(int(r), int(c)) for r in starts(height) for c in starts(width)]


def _resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    if height <= width:
        return size, (2 * width * size + height) // (2 * height)
    return (2 * height * size + width) // (2 * width), size


def make_slice_scorer(loaded: checkpoints.LoadedModel, crops: str = "grid",
                      with_ring_check: bool = True, with_view_penalty: bool = True,
                      with_centre_penalty: bool = True, with_centre_offsets: bool = False,
                      own_pixels: bool | None = None, most_per_side: int = 0,
                      with_noise_check: bool = True):
    """`score(slices (B, H, W) in [0, 1]) -> (mean (B,), spread (B,), n_crops)` on the device;
    with `with_centre_offsets`, also each slice's estimated rotation-centre offset in px
    (signed, (B,); None for slices under `centre_check.MIN_SIDE` px), from the same search
    the centre penalty counts.

    The area resize (shorter side to the model's 255), the crops (centre, or the grid) and the
    network run in one jitted call per slice shape; the score of a slice is the mean over its
    crops and the spread their standard deviation. With `with_ring_check` and a model that has
    a ring penalty, the mean loses the penalty of the ring amplitude about the slice's centre,
    where a reconstruction's rotation axis is (`tiqa.ring_check`). With `with_view_penalty`
    and a model that has a view penalty, it loses the penalty of the comb of sparse views in
    the slice's centred square of up to `view_check.PENALTY_SIDE` px at its own pixels
    (`tiqa.view_check`; slices under `view_check.MIN_SIDE` px are not measured). With
    `with_centre_penalty` and a model that has a centre penalty, it loses the penalty of the
    rotation-centre offset estimated on its centred square of up to `centre_check.PENALTY_SIDE`
    px, as fitted for that square's size (`tiqa.centre_check`; slices under
    `centre_check.MIN_SIDE` px are not measured). With `with_noise_check` and a model that
    has a noise penalty, it loses the mean over its crops of each crop's noise penalty
    (`tiqa.noise_check`, measured on the crops the network scores). The mean
    is then kept above the scale's 1, in order (`penalties.onto_scale`).

    With `own_pixels` (None: as the model was trained, `LoadedModel.own_pixels`), a slice
    whose shorter side is at least the model's resize is not resized: its crops are taken at
    its own pixels, so the network sees blur and noise at the scan's pixels (the resize halves
    a 512 px slice and shrinks a 2048 px one 8 times, and a pixel or two of blur goes unseen;
    docs/acquisition_ladder.md, "Scoring at the slice's own pixels"). The grid then has about
    (side / crop)^2 crops, run `OWN_PIXEL_CHUNK` at a time. Smaller slices are enlarged to the
    resize as without it. `most_per_side` > 0 caps the grid at that many crops per side, spread
    over the slice (`crop_positions`): faster on large slices, a sample of the full grid's mean
    (docs/acquisition_ladder.md, "A sampled grid").
    """
    own_pixels = checkpoints.scores_at_own_pixels(loaded.own_pixels, own_pixels)
    penalty = loaded.ring_penalty if with_ring_check else None
    view_penalty = loaded.view_penalty if with_view_penalty else None
    centre_penalty = loaded.centre_penalty if with_centre_penalty else None
    noise_penalty = loaded.noise_penalty if with_noise_check else None
    forward_cache = {}

    def compiled(height, width):
        if (height, width) not in forward_cache:
            keep = preprocessing.keeps_own_pixels(height, width, loaded.resize, own_pixels)
            out_h, out_w = ((height, width) if keep
                            else _resized_shape(height, width, loaded.resize))
            positions = crop_positions(out_h, out_w, loaded.crop, crops, most_per_side)
            # Rings are measured at the slice's own pixels (the resize would average
            # one-pixel rings away), on the centred crop-sized square about the axis, as
            # calibrated; a slice smaller than that is measured resized.
            side = loaded.crop
            top, left = (height - side) // 2, (width - side) // 2
            at_own_pixels = min(height, width) >= side
            measure_views = view_check.measurable(height, width)
            measure_centre = centre_check.measurable(height, width)
            # The centre penalty fitted for the square the offset is measured on.
            centre_fit = (centre_penalty.at(centre_check.measured_side(height, width))
                          if centre_penalty is not None and measure_centre else None)

            def ring_square(slices, resized):
                if at_own_pixels:
                    return slices[:, top:top + side, left:left + side]
                return preprocessing.center_crop(resized, side)

            if not keep:
                rows = jnp.asarray(preprocessing.area_weights(height, out_h))
                cols = jnp.asarray(preprocessing.area_weights(width, out_w))

            find_offsets = measure_centre and (centre_fit is not None or with_centre_offsets)

            def network(params, batch_stats, patches):
                if not keep:
                    return eval_forward(loaded.graphdef, params, batch_stats, patches)
                # A large slice's own-pixel grid: at most OWN_PIXEL_CHUNK crops at a time bounds
                # the memory. The chunks are as even as they can be, so the last one is padded
                # (with copies of the last crop, whose scores are dropped) by fewer crops than
                # there are chunks: a full chunk for one crop would cost 64 crops' time.
                count = patches.shape[0]
                chunks, size = own_pixel_chunks(count)
                padded = jnp.concatenate([patches, jnp.repeat(
                    patches[-1:], chunks * size - count, axis=0)])
                scores = jax.lax.map(
                    lambda chunk: eval_forward(loaded.graphdef, params, batch_stats, chunk),
                    padded.reshape((chunks, size) + patches.shape[1:]))
                return scores.reshape(-1)[:count]

            @jax.jit
            def forward(params, batch_stats, slices):
                resized = slices if keep else jnp.einsum("ih,bhw,jw->bij", rows, slices, cols,
                                                         precision=jax.lax.Precision.HIGHEST)
                patches = jnp.stack([resized[:, r:r + loaded.crop, c:c + loaded.crop]
                                     for r, c in positions], axis=1)
                scores = network(params, batch_stats,
                                 patches.reshape((-1, loaded.crop, loaded.crop)))
                scores = scores.reshape(slices.shape[0], len(positions))
                mean = scores.mean(axis=1)
                if noise_penalty is not None:
                    mean = mean - noise_penalty(noise_check.correlated_noise(patches)).mean(axis=1)
                if penalty is not None:
                    mean = mean - penalty(ring_check.ring_amplitude(ring_square(slices, resized)))
                if view_penalty is not None and measure_views:
                    mean = mean - view_penalty(view_check.penalty_comb(slices))
                offsets = centre_check.penalty_offset(slices) if find_offsets else None
                if centre_fit is not None:
                    mean = mean - centre_fit(jnp.abs(offsets))
                return penalties.onto_scale(mean), scores.std(axis=1), offsets

            forward_cache[(height, width)] = (forward, len(positions))
        return forward_cache[(height, width)]

    def score(slices: np.ndarray):
        forward, count = compiled(*slices.shape[-2:])
        mean, spread, offsets = forward(loaded.params, loaded.batch_stats,
                                        jnp.asarray(slices, jnp.float32))
        if with_centre_offsets:
            offsets = None if offsets is None else np.asarray(offsets)
            return np.asarray(mean), np.asarray(spread), count, offsets
        return np.asarray(mean), np.asarray(spread), count

    return score


# Crops per network call in a slice scored at its own pixels (`make_slice_scorer`'s
# own_pixels): a 2048 px slice has 100 crops of 224 px, a batch of 16 such slices 1600.
OWN_PIXEL_CHUNK = 64


def own_pixel_chunks(count: int) -> tuple[int, int]:
    """(chunks, crops per chunk) for `count` crops run at most OWN_PIXEL_CHUNK at a time, the
    chunks as even as they can be (padding fewer crops than there are chunks)."""
    chunks = -(-count // OWN_PIXEL_CHUNK)
    return chunks, -(-count // chunks)


# Slices shrunk this many times or more before the network sees them get `resize_note`: at
# 512 px (twice the resize) the network already orders detector blur poorly on objects unlike
# B's (docs/acquisition_ladder.md, "A 512 px centre fit chosen on the validation set").
SHRINK_NOTE = 2.0


def resize_note(shapes, resize: int) -> str | None:
    """A line for reports where some (height, width) slices are shrunk `SHRINK_NOTE` times or
    more by the area resize (shorter side to `resize`) before the network scores them: a
    pixel or two of blur at their own pixels is averaged away first, so the score barely
    weighs it. None where no slice is."""
    shrinks = [min(height, width) / resize for height, width in shapes]
    large = [shrink for shrink in shrinks if shrink >= SHRINK_NOTE]
    if not large:
        return None
    lo, hi = min(large), max(large)
    by = f"{lo:.1f} times" if round(lo, 1) == round(hi, 1) else f"{lo:.1f} to {hi:.1f} times"
    return (f"{len(large)} of {len(shrinks)} slice(s) are shrunk {by} (shorter side to "
            f"{resize} px) before the network scores them, so a blur of a pixel or two at their "
            "own pixels is averaged away first and barely moves their score. To compare blur, "
            "detector or PSF settings, score them at their own pixels (--config.own_pixels=True; "
            "README, 'What the score cannot see in a large slice').")


def penalty_notes(ring_check_asked: bool, view_penalty_asked: bool, checkpoint,
                  centre_penalty_asked: bool = True, noise_penalty_asked: bool = True) -> str:
    """What the score's penalties did, in words: a config can ask for them, but only a
    calibrated model has them."""
    found = checkpoints.model_penalties(checkpoint)
    said = []
    for name, asked, penalty, unit in (
            ("ring check", ring_check_asked, found["ring_check"], ring_check.UNIT),
            ("view penalty", view_penalty_asked, found["view_check"], view_check.UNIT),
            ("centre penalty", centre_penalty_asked, found["centre_check"], centre_check.UNIT),
            ("noise penalty", noise_penalty_asked, found["noise_check"], noise_check.UNIT)):
        state = ("off" if not asked else "none in this model" if penalty is None
                 else f"on ({penalty.describe(unit)})")
        said.append(f"{name}: {state}")
    return ", ".join(said)


def _volume_name(source: pathlib.Path, index, given: pathlib.Path) -> str:
    if index is not None:
        return str(source)  # a page of a volume
    return str(given) if given.is_dir() else str(source)


def _thumbnail(image: np.ndarray, size: int = 240) -> np.ndarray:
    scale = size / max(image.shape)
    if scale >= 1:
        return image
    shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return np.asarray(preprocessing.area_resize(image, shape))


@dataclasses.dataclass(frozen=True)
class _Work:
    """One slice to score: its place in the output, where it comes from and its shape."""
    order: int
    volume: str
    source: pathlib.Path
    index: int | None
    shape: tuple[int, int]


def plan_slices(inputs: str, slices, tiff_planes: str) -> list[_Work]:
    """Every slice to score, in output order, from the headers only: each input's items (an
    image, the slices of a volume, a folder's items) of the comma-separated `inputs`, narrowed
    by `slices` (checked as config.slices) when the input lists more than one."""
    work, shapes = [], {}
    for given in [pathlib.Path(p) for p in io.split_paths(inputs)]:
        items = io.list_inputs(given, tiff_planes=tiff_planes)
        if len(items) > 1:
            items = [items[i] for i in volumes.parse_slices(slices, len(items),
                                                            "config.slices", str(given))]
        for source, index in items:
            if source not in shapes:
                if index is None and not volumes.is_container(source):
                    shape, _ = io._header(io._check_file(source), tiff_planes)
                else:
                    with volumes.open_volume(source, tiff_planes) as volume:
                        shape = volume.shape
                shapes[source] = tuple(int(n) for n in shape[-2:])
            work.append(_Work(len(work), _volume_name(source, index, given), source, index,
                              shapes[source]))
    return work


def cut_batches(work: list[_Work], batch_size: int) -> list[list[_Work]]:
    """The slices of each shape, in order, cut into batches of `batch_size` (the last of each
    shape shorter), ordered by their first slice. The cut depends on the plan alone, so every
    process of a distributed run scores exactly the batches a single process would, and its
    scores are the same numbers."""
    by_shape: dict = {}
    for item in work:
        by_shape.setdefault(item.shape, []).append(item)
    batches = [group[start:start + batch_size] for group in by_shape.values()
               for start in range(0, len(group), batch_size)]
    return sorted(batches, key=lambda batch: batch[0].order)


def share(batches: list, process: int, processes: int) -> list:
    """Process `process`'s contiguous share of `batches` (sizes differ by at most one)."""
    count = len(batches)
    return batches[process * count // processes:(process + 1) * count // processes]


class _Reader:
    """Reads the slices of batches, keeping each volume open (with its shared normalisation,
    measured once) until the last batch that needs it."""

    def __init__(self, normalisation: str, tiff_planes: str, batches: list[list[_Work]]):
        self.tiff_planes = tiff_planes
        self.normalisation = io.Normalisation(mode=normalisation)
        self.open: dict = {}
        self.last_use = {item.source: b for b, batch in enumerate(batches) for item in batch}

    def _volume(self, source) -> volumes.StreamedVolume:
        if source not in self.open:
            self.open[source] = volumes.StreamedVolume(
                volumes.open_volume(source, self.tiff_planes), self.normalisation)
        return self.open[source]

    def read(self, batch: list[_Work], position: int | None = None) -> np.ndarray:
        images = np.empty((len(batch),) + batch[0].shape, np.float32)
        k = 0
        while k < len(batch):
            item = batch[k]
            if item.index is None and not volumes.is_container(item.source):
                images[k] = io.read_slice(item.source, normalisation=self.normalisation,
                                          tiff_planes=self.tiff_planes)
                k += 1
                continue
            # The batch's run of slices of this volume, read together.
            run = k + 1
            while run < len(batch) and batch[run].source == item.source:
                run += 1
            indices = [0 if w.index is None else w.index for w in batch[k:run]]
            images[k:run] = self._volume(item.source).read(indices)
            k = run
        if position is not None:
            for source in {item.source for item in batch}:
                if self.last_use.get(source) == position and source in self.open:
                    self.open.pop(source).close()
        return images

    def close(self) -> None:
        for volume in self.open.values():
            volume.close()
        self.open.clear()


def view_record(image: np.ndarray) -> dict:
    """The angular-sampling columns of one slice (tiqa.view_check): its comb strength, and its
    views where it looks undersampled (else None)."""
    strength, views = view_check.view_comb(image)
    return {"view_comb": round(strength, 2),
            "views": views if view_check.undersampled(strength) else None}


def centre_records(offsets: np.ndarray | None, count: int) -> list[dict]:
    """The rotation-centre column of `count` slices (tiqa.centre_check) from the slice scorer's
    offsets: in px, rounded to 0.1 px; None where the slices were too small to be searched."""
    if offsets is None:
        return [{"centre_offset": None} for _ in range(count)]
    return [{"centre_offset": round(float(offset), 1)} for offset in offsets]


def score_batches(loaded: checkpoints.LoadedModel, batches: list[list[_Work]], *, crops: str,
                  batch_size: int, own_pixels: bool | None = None, most_per_side: int = 0,
                  normalisation: str,
                  tiff_planes: str,
                  desc: str = "scoring", with_ring_check: bool = True,
                  with_view_penalty: bool = True,
                  with_view_check: bool = False, with_centre_penalty: bool = True,
                  with_centre_check: bool = False,
                  with_noise_penalty: bool = True) -> list[tuple[int, dict]]:
    """(order, record) of every slice of `batches`, read a batch at a time and scored
    `batch_size` slices per call on `crops` ('center' or 'grid'), with the model's ring and
    view penalties unless `with_ring_check` or `with_view_penalty` is False; with
    `with_view_check`, each record also has the slice's angular sampling (VIEW_FIELDS); with
    `with_centre_check`, its estimated rotation-centre offset in px (CENTRE_FIELDS, signed;
    empty for slices under `centre_check.MIN_SIDE` px). The centre penalty is taken off unless
    `with_centre_penalty` is False, the noise penalty unless `with_noise_penalty` is False.
    `own_pixels`, `most_per_side`: as `make_slice_scorer`'s."""
    score = make_slice_scorer(loaded, crops, with_ring_check, with_view_penalty,
                              with_centre_penalty, with_centre_offsets=with_centre_check,
                              own_pixels=own_pixels, most_per_side=most_per_side,
                              with_noise_check=with_noise_penalty)
    reader = _Reader(normalisation, tiff_planes, batches)
    records = []
    # Closed however the loop ends, so an error is printed on a line of its own.
    with tqdm.tqdm(total=sum(len(b) for b in batches), desc=desc, unit="slice") as progress:
        try:
            for position, batch in enumerate(batches):
                images = reader.read(batch, position)
                counts = []

                def score_chunk(chunk):
                    means, spreads, count, *offsets = score(chunk)
                    counts.append(count)
                    return means, spreads, *offsets

                means, spreads, *offsets = in_fixed_batches(score_chunk, images, batch_size)
                sampling = ([view_record(image) for image in images] if with_view_check
                            else [{} for _ in batch])
                if with_centre_check:  # the offsets the centre penalty counted, searched once
                    for record, offset in zip(sampling, centre_records(offsets[0], len(batch))):
                        record.update(offset)
                del images
                for offset, item in enumerate(batch):
                    records.append((item.order, {
                        "file": str(item.source), "slice": item.index, "volume": item.volume,
                        "score": float(means[offset]), "spread": float(spreads[offset]),
                        "n_crops": counts[0], **sampling[offset]}))
                progress.update(len(batch))
        finally:
            reader.close()
    return records


def report_thumbnails(records: list[dict], work: list[_Work], *, normalisation: str,
                      tiff_planes: str) -> dict:
    """Thumbnails of the slices the report shows (the lowest- and highest-scoring), read again
    after scoring, so no more than those are ever held."""
    from tiqa import report

    ranked = sorted(range(len(records)), key=lambda i: records[i]["score"])
    shown = sorted(set(ranked[:report.MAX_THUMBNAILS] + ranked[-report.MAX_THUMBNAILS:]))
    chosen = [work[i] for i in shown]
    reader = _Reader(normalisation, tiff_planes, [[item] for item in chosen])
    try:
        # One at a time: the slices may differ in shape; each volume is opened once.
        return {(str(item.source), item.index): _thumbnail(reader.read([item], position)[0])
                for position, item in enumerate(chosen)}
    finally:
        reader.close()


def csv_fields(records: list[dict]) -> list[str]:
    """The CSV columns of `records`: the angular-sampling and centre ones only where they were
    measured."""
    return list(CSV_FIELDS) + [k for k in VIEW_FIELDS + CENTRE_FIELDS
                               if records and k in records[0]]


def write_scores_csv(records: list[dict], path: str | pathlib.Path) -> None:
    """The records as CSV (columns: `csv_fields`), written whole or not at all."""
    fields = csv_fields(records)
    with io.atomic_write(pathlib.Path(path)) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            for record in records:
                writer.writerow({k: ("" if record[k] is None else record[k]) for k in fields})
