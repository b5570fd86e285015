"""A trained score network as a function, and the evaluation phase built on it.

`make_scorer(checkpoints.load_model(path))` is a jitted `score(images) -> (N,)` for (N, H, W)
crops in [0, 1]; `make_slice_scorer` scores whole slices. `evaluate_checkpoint(config)` scores held-out slices distorted at every kind and level
and compares the scores with the projected labels (PLCC, SROCC, KROCC, RMSE per kind and
overall), writing the table as CSV and Markdown, the per-image scores and a scatter plot.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from tiqa import (checkpoints, errors, evaluation, io, labels, phantom, reference_distortions,
                  volumes)
from tiqa.models.forward import eval_forward

Scorer = Callable[[np.ndarray], np.ndarray]


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


def make_scorer(loaded: checkpoints.LoadedModel, batch_size: int = 64) -> Scorer:
    """A function (N, H, W) crops in [0, 1] -> (N,) scores, run in fixed-size jitted batches."""

    def score(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if not len(images):
            return np.zeros((0,), np.float32)
        return in_fixed_batches(
            lambda chunk: eval_forward(loaded.graphdef, loaded.params, loaded.batch_stats, chunk),
            images, batch_size)

    return score


def evaluate_checkpoint(config) -> dict:
    """Runs the evaluation phase described by configs/evaluate.py; returns the table rows."""
    errors.check_sizes(config, "batch_size", "projection_batch", "resize", "crop")
    output = io.check_output(config.output, "config.output", folder=True)
    output.mkdir(parents=True, exist_ok=True)
    loaded = checkpoints.load_model(config.checkpoint)  # empty: the shipped default model
    score = make_scorer(loaded, config.batch_size)
    projection = labels.ProjectionConfig.from_mapping(config.projection)
    crops, sources, reference_scores = heldout_references(config)
    distort_and_label = distorter(config.distortion_backend, projection, config.seed)
    rows = []
    # A `with` closes the bar however the loop ends, so an error gets a line of its own.
    with tqdm.trange(0, len(crops), config.projection_batch, desc="evaluate",
                     unit="batch") as progress:
        for start in progress:
            stop = min(start + config.projection_batch, len(crops))
            result = distort_and_label(crops[start:stop], reference_scores[start:stop], start)
            images = np.asarray(result.images)
            predicted = score(images.reshape((-1,) + images.shape[-2:])).reshape(images.shape[:3])
            for n in range(stop - start):
                for k, kind in enumerate(projection.kinds):
                    for level in range(images.shape[2]):
                        if level == 0 and k > 0:
                            continue  # the reference is one image, listed once
                        rows.append({"source": sources[start + n], "index": start + n,
                                     "kind": "reference" if level == 0 else kind, "level": level,
                                     "label": float(result.labels[n, k, level]),
                                     "score": float(predicted[n, k, level])})
    # The table is over the distorted images (the references' labels are the prior or human
    # scores, constant within a kind); the level table below includes them as level 0.
    distorted = [r for r in rows if r["kind"] != "reference"]
    predicted = np.asarray([r["score"] for r in distorted])
    reference = np.asarray([r["label"] for r in distorted])
    kinds = np.asarray([r["kind"] for r in distorted])
    table = evaluation.correlation_table(predicted, reference, kinds)
    level_rows = _level_correlations(rows, projection.kinds)
    evaluation.write_table(table, output / "correlations.csv", output / "correlations.md")
    evaluation.write_table(level_rows, output / "score_vs_level.csv", output / "score_vs_level.md")
    with io.atomic_write(output / "scores.csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    evaluation.scatter_plot(predicted, reference, kinds, output / "scatter.png",
                            title=f"TIQA scores against projected labels ({pathlib.Path(config.checkpoint).name if config.checkpoint else 'default model'})")
    print("score against projected label\n" + evaluation.format_table(table))
    print("\nscore against distortion level (1 = the score falls with every level)\n"
          + evaluation.format_table(level_rows))
    print(f"\nwritten to {output}: correlations.csv/.md, score_vs_level.csv/.md, scores.csv, scatter.png")
    return {"correlations": table, "levels": level_rows}


def heldout_references(config) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The evaluation's reference crops (the centre crop of each slice after the paper's
    resize), their sources and their reference scores (human, or the documented prior)."""
    slices, sources = phantom.load_reference_slices(config)
    annotations = labels.read_annotations(config.annotations) if config.annotations else {}
    reference_scores = labels.reference_scores_for(sources, annotations,
                                                   config.default_reference_score)
    crops = np.stack([np.asarray(io.preprocess(s, key=None, resize=config.resize, crop=config.crop))
                      for s in slices])
    return crops, sources, np.asarray(reference_scores, np.float32)


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


def _level_correlations(rows: list[dict], kinds) -> list[dict]:
    """Rank correlation of score with -level (0..5, the reference as 0) within each kind.

    The sign is turned so that 1 means the score falls with every heavier level.
    """
    by_index = {}
    for row in rows:
        by_index.setdefault(row["index"], {})[(row["kind"], row["level"])] = row["score"]
    out = []
    for kind in kinds:
        scores, levels = [], []
        for per_image in by_index.values():
            for level in range(6):
                key = ("reference", 0) if level == 0 else (kind, level)
                if key in per_image:
                    scores.append(per_image[key])
                    levels.append(level)
        scores, minus_levels = np.asarray(scores), -np.asarray(levels, np.float64)
        # Also within each original: its own series, free of differences between slices.
        within = [evaluation.srocc(np.asarray([per_image[("reference", 0)]] +
                                              [per_image[(kind, level)] for level in range(1, 6)]),
                                   -np.arange(6.0))
                  for per_image in by_index.values()
                  if all((kind, level) in per_image for level in range(1, 6))]
        out.append({"kind": kind, "n": len(scores),
                    "srocc_vs_level": evaluation.srocc(scores, minus_levels),
                    "krocc_vs_level": evaluation.krocc(scores, minus_levels),
                    "srocc_within_image_mean": float(np.mean(within)) if within else float("nan")})
    return out


# --- Scoring slices and volumes ---------------------------------------------------------------

CROP_MODES = ("center", "grid")


def crop_positions(height: int, width: int, crop: int, mode: str) -> list[tuple[int, int]]:
    """Top-left corners of the crops of a (height, width) image: its centre, or an even grid
    of ceil(side / crop) crops per side that covers the whole image (overlapping as needed)."""
    if mode not in CROP_MODES:
        raise errors.InputError(f"crops must be one of {CROP_MODES}, got {mode!r}")
    if min(height, width) < crop:
        raise io.ImageError(f"a {height}x{width} image is smaller than the {crop} px crop")
    if mode == "center":
        return [((height - crop) // 2, (width - crop) // 2)]
    rows = np.linspace(0, height - crop, -(-height // crop)).round().astype(int)
    cols = np.linspace(0, width - crop, -(-width // crop)).round().astype(int)
    return [(int(r), int(c)) for r in rows for c in cols]


def _resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    if height <= width:
        return size, (2 * width * size + height) // (2 * height)
    return (2 * height * size + width) // (2 * width), size


def make_slice_scorer(loaded: checkpoints.LoadedModel, crops: str = "grid"):
    """`score(slices (B, H, W) in [0, 1]) -> (mean (B,), spread (B,), n_crops)` on the device.

    The area resize (shorter side to the model's 255), the crops (centre, or the grid) and the
    network run in one jitted call per slice shape; the score of a slice is the mean over its
    crops and the spread their standard deviation.
    """
    forward_cache = {}

    def compiled(height, width):
        if (height, width) not in forward_cache:
            out_h, out_w = _resized_shape(height, width, loaded.resize)
            positions = crop_positions(out_h, out_w, loaded.crop, crops)
            rows = jnp.asarray(io.area_weights(height, out_h))
            cols = jnp.asarray(io.area_weights(width, out_w))

            @jax.jit
            def forward(params, batch_stats, slices):
                resized = jnp.einsum("ih,bhw,jw->bij", rows, slices, cols,
                                     precision=jax.lax.Precision.HIGHEST)
                patches = jnp.stack([resized[:, r:r + loaded.crop, c:c + loaded.crop]
                                     for r, c in positions], axis=1)
                scores = eval_forward(loaded.graphdef, params, batch_stats,
                                      patches.reshape((-1, loaded.crop, loaded.crop)))
                scores = scores.reshape(slices.shape[0], len(positions))
                return scores.mean(axis=1), scores.std(axis=1)

            forward_cache[(height, width)] = (forward, len(positions))
        return forward_cache[(height, width)]

    def score(slices: np.ndarray):
        forward, count = compiled(*slices.shape[-2:])
        mean, spread = forward(loaded.params, loaded.batch_stats, jnp.asarray(slices, jnp.float32))
        return np.asarray(mean), np.asarray(spread), count

    return score


def _volume_name(source: pathlib.Path, index, given: pathlib.Path) -> str:
    if index is not None:
        return str(source)  # a page of a volume
    return str(given) if given.is_dir() else str(source)


def _thumbnail(image: np.ndarray, size: int = 240) -> np.ndarray:
    scale = size / max(image.shape)
    if scale >= 1:
        return image
    shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return np.asarray(io.area_resize(image, shape))


@dataclasses.dataclass(frozen=True)
class _Work:
    """One slice to score: its place in the output, where it comes from and its shape."""
    order: int
    volume: str
    source: pathlib.Path
    index: int | None
    shape: tuple[int, int]


def _plan(config) -> list[_Work]:
    """Every slice to score, in output order, from the headers only: each input's items (an
    image, the slices of a volume, a folder's items), narrowed by `config.slices` when the
    input lists more than one."""
    work, shapes = [], {}
    for given in [pathlib.Path(p) for p in io.split_paths(config.input)]:
        items = io.list_inputs(given, tiff_planes=config.tiff_planes)
        if len(items) > 1:
            items = [items[i] for i in volumes.parse_slices(config.slices, len(items),
                                                            "config.slices", str(given))]
        for source, index in items:
            if source not in shapes:
                if index is None and not volumes.is_container(source):
                    shape, _ = io._header(io._check_file(source), config.tiff_planes)
                else:
                    with volumes.open_volume(source, config.tiff_planes) as volume:
                        shape = volume.shape
                shapes[source] = tuple(int(n) for n in shape[-2:])
            work.append(_Work(len(work), _volume_name(source, index, given), source, index,
                              shapes[source]))
    return work


def _batches(work: list[_Work], batch_size: int) -> list[list[_Work]]:
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


def _share(batches: list, process: int, processes: int) -> list:
    """Process `process`'s contiguous share of `batches` (sizes differ by at most one)."""
    count = len(batches)
    return batches[process * count // processes:(process + 1) * count // processes]


class _Reader:
    """Reads the slices of batches, keeping each volume open (with its shared normalisation,
    measured once) until the last batch that needs it."""

    def __init__(self, config, batches: list[list[_Work]]):
        self.config = config
        self.normalisation = io.Normalisation(mode=config.normalisation)
        self.open: dict = {}
        self.last_use = {item.source: b for b, batch in enumerate(batches) for item in batch}

    def _volume(self, source) -> volumes.StreamedVolume:
        if source not in self.open:
            self.open[source] = volumes.StreamedVolume(
                volumes.open_volume(source, self.config.tiff_planes), self.normalisation)
        return self.open[source]

    def read(self, batch: list[_Work], position: int | None = None) -> np.ndarray:
        images = np.empty((len(batch),) + batch[0].shape, np.float32)
        k = 0
        while k < len(batch):
            item = batch[k]
            if item.index is None and not volumes.is_container(item.source):
                images[k] = io.read_slice(item.source, normalisation=self.normalisation,
                                          tiff_planes=self.config.tiff_planes)
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


def _score_batches(config, loaded: checkpoints.LoadedModel, batches: list[list[_Work]],
                   desc: str = "scoring") -> list[tuple[int, dict]]:
    """(order, record) of every slice of `batches`, read a batch at a time."""
    score = make_slice_scorer(loaded, config.crops)
    reader = _Reader(config, batches)
    records = []
    # Closed however the loop ends, so an error is printed on a line of its own.
    with tqdm.tqdm(total=sum(len(b) for b in batches), desc=desc, unit="slice") as progress:
        try:
            for position, batch in enumerate(batches):
                images = reader.read(batch, position)
                counts = []

                def score_chunk(chunk):
                    means, spreads, count = score(chunk)
                    counts.append(count)
                    return means, spreads

                means, spreads = in_fixed_batches(score_chunk, images, config.batch_size)
                del images
                for offset, item in enumerate(batch):
                    records.append((item.order, {
                        "file": str(item.source), "slice": item.index, "volume": item.volume,
                        "score": float(means[offset]), "spread": float(spreads[offset]),
                        "n_crops": counts[0]}))
                progress.update(len(batch))
        finally:
            reader.close()
    return records


def report_thumbnails(config, records: list[dict], work: list[_Work]) -> dict:
    """Thumbnails of the slices the report shows (the lowest- and highest-scoring), read again
    after scoring, so no more than those are ever held."""
    from tiqa import report

    ranked = sorted(range(len(records)), key=lambda i: records[i]["score"])
    shown = sorted(set(ranked[:report.MAX_THUMBNAILS] + ranked[-report.MAX_THUMBNAILS:]))
    chosen = [work[i] for i in shown]
    reader = _Reader(config, [[item] for item in chosen])
    try:
        # One at a time: the slices may differ in shape; each volume is opened once.
        return {(str(item.source), item.index): _thumbnail(reader.read([item], position)[0])
                for position, item in enumerate(chosen)}
    finally:
        reader.close()


def _check_config(config) -> None:
    """Every check that needs no pixels, before any work."""
    if not config.input:
        raise errors.InputError("config.input is empty: give an image, a folder of slices or a volume")
    errors.check_sizes(config, "batch_size")
    volumes.check_slices(config.slices, "config.slices")
    if config.distributed:
        if config.num_processes < 0:
            raise errors.InputError(f"config.num_processes must be >= 0 (0: from the "
                                    f"environment), got {config.num_processes}")
        if config.num_processes and not -1 <= config.process_id < config.num_processes:
            raise errors.InputError(f"config.process_id={config.process_id} is not in "
                                    f"0..{config.num_processes - 1} (config.num_processes)")
        if config.merge_timeout <= 0:
            raise errors.InputError(f"config.merge_timeout must be positive, got "
                                    f"{config.merge_timeout}")


def score_inputs(config, process: int = 0, processes: int = 1) -> tuple[list[dict], dict]:
    """Scores every selected slice of every input (comma-separated paths, `\\,` for a comma in
    a path) that falls to process `process` of `processes`; returns (records, thumbnails).

    Slices are read a batch at a time (`tiqa.volumes`), so memory is set by the batch, not the
    volume. Thumbnails (only with `config.report`, and only in a single process) are those of
    the slices the report shows."""
    _check_config(config)
    loaded = checkpoints.load_model(config.checkpoint)
    work = _plan(config)
    batches = _share(_batches(work, config.batch_size), process, processes)
    desc = "scoring" if processes == 1 else f"scoring (process {process} of {processes})"
    records = [record for _, record in
               sorted(_score_batches(config, loaded, batches, desc), key=lambda item: item[0])]
    thumbnails = {}
    if config.report and processes == 1 and records:
        thumbnails = report_thumbnails(config, records, work)
    return records, thumbnails


def write_scores_csv(records: list[dict], path: str | pathlib.Path) -> None:
    fields = ["file", "slice", "volume", "score", "spread", "n_crops"]
    with io.atomic_write(pathlib.Path(path)) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            for record in records:
                writer.writerow({k: ("" if record[k] is None else record[k]) for k in fields})


# --- More than one process ----------------------------------------------------------------------

_PART_FIELDS = ["order", "file", "slice", "volume", "score", "spread", "n_crops"]


def _join_processes(config) -> tuple[int, int]:
    """(this process, number of processes): (0, 1) unless `config.distributed`, when
    jax.distributed is started from the config's keys (those left empty or -1 come from the
    environment jax.distributed reads: Slurm, Open MPI, a TPU pod...)."""
    if not config.distributed:
        return 0, 1
    import jax

    if not jax.distributed.is_initialized():
        arguments = {}
        if config.coordinator_address:
            arguments["coordinator_address"] = config.coordinator_address
        if config.num_processes:
            arguments["num_processes"] = config.num_processes
        if config.process_id >= 0:
            arguments["process_id"] = config.process_id
        jax.distributed.initialize(**arguments, initialization_timeout=int(config.merge_timeout))
    return jax.process_index(), jax.process_count()


def _part_path(output: pathlib.Path, process: int, processes: int) -> pathlib.Path:
    return output.with_name(f".{output.name}.part-{process:05d}-of-{processes:05d}")


def _write_part(path: pathlib.Path, records: list[dict], orders: list[int]) -> None:
    with io.atomic_write(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=_PART_FIELDS)
            writer.writeheader()
            for order, record in zip(orders, records):
                writer.writerow({"order": order, **{k: ("" if record[k] is None else record[k])
                                                    for k in _PART_FIELDS[1:]}})


def _read_part(path: pathlib.Path) -> list[tuple[int, dict]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # str(float) is the shortest repr that reads back the same number, so nothing is lost.
    return [(int(row["order"]), {"file": row["file"],
                                 "slice": None if row["slice"] == "" else int(row["slice"]),
                                 "volume": row["volume"], "score": float(row["score"]),
                                 "spread": float(row["spread"]), "n_crops": int(row["n_crops"])})
            for row in rows]


def _merge_parts(output: pathlib.Path, processes: int, expected: int,
                 timeout: float) -> list[dict]:
    """Process 0, after the barrier: every part (waiting up to `timeout` s for a slow shared
    file system to show them), merged in output order; the parts are then removed."""
    parts = [_part_path(output, p, processes) for p in range(processes)]
    deadline = time.monotonic() + timeout
    while not all(part.exists() for part in parts):
        if time.monotonic() > deadline:
            missing = [str(part) for part in parts if not part.exists()]
            raise errors.InputError(f"config.output={output}: part file(s) {', '.join(missing)} "
                                    f"did not appear within config.merge_timeout={timeout} s; is "
                                    "the output on a file system every host shares?")
        time.sleep(0.5)
    merged = sorted((item for part in parts for item in _read_part(part)), key=lambda x: x[0])
    if [order for order, _ in merged] != list(range(expected)):
        raise RuntimeError(f"{output}: the parts hold {len(merged)} slices, expected {expected}")
    return [record for _, record in merged]


def _score_distributed(config, output: pathlib.Path, process: int, processes: int) -> list[dict] | None:
    """This process's share scored and written as a part file; after a barrier across all
    processes, process 0 merges the parts into `output` (atomically) and removes them. Returns
    the merged records on process 0, None elsewhere."""
    from jax.experimental import multihost_utils

    _check_config(config)
    loaded = checkpoints.load_model(config.checkpoint)
    work = _plan(config)
    batches = _share(_batches(work, config.batch_size), process, processes)
    scored = sorted(_score_batches(config, loaded, batches,
                                   f"scoring (process {process} of {processes})"),
                    key=lambda item: item[0])
    part = _part_path(output, process, processes)
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_part(part, [record for _, record in scored], [order for order, _ in scored])
    multihost_utils.sync_global_devices("tiqa-score-parts-written")
    if process != 0:
        print(f"process {process} of {processes}: {len(scored)} slice(s) scored; process 0 "
              f"writes {output}")
        return None
    records = _merge_parts(output, processes, len(work), config.merge_timeout)
    write_scores_csv(records, output)
    for p in range(processes):
        _part_path(output, p, processes).unlink(missing_ok=True)
    return records


def run_scoring(config) -> dict:
    """The scoring phase (configs/score.py): CSV of scores, optionally the report."""
    from tiqa import report  # matplotlib is only needed for reports
    # The outputs are checked first, so a bad one fails before the scoring, not after it.
    output = io.check_output(config.output, "config.output")
    if config.report:
        io.check_output(config.report, "config.report", folder=True)
    _check_config(config)
    process, processes = _join_processes(config)
    if processes > 1:
        records = _score_distributed(config, output, process, processes)
        if records is None:
            return {"records": None, "process": process, "processes": processes}
        thumbnails = report_thumbnails(config, records, _plan(config)) if config.report else {}
    else:
        records, thumbnails = score_inputs(config)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_scores_csv(records, output)
    summary = report.summarise(records)
    for row in summary:
        print(f"{row['volume']}: {row['slices']} slice(s), median score {row['median']:.2f} "
              f"(min {row['min']:.2f}, max {row['max']:.2f})")
    print(f"scores written to {output}")
    result = {"records": records, "summary": summary, "csv": output}
    if config.report:
        model = str(config.checkpoint) if config.checkpoint else "the shipped default model"
        index = report.write_report(records, config.report, thumbnails,
                                    notes=(f"Scored with {model}, crops: {config.crops}.",))
        print(f"report: {index}")
        result["report"] = index
    return result
