"""The data phase: a labelled training set from a folder of slices or volumes.

For every slice: normalise to [0, 1], resize the shorter side to 255 (area), take random
224x224 crops, then distort and label the crops in batches on the accelerator
(`labels.project`). Each crop becomes one group: its reference and the five levels of every
kind, written as 8-bit PNG, and one manifest row per image.

Every random number is drawn from `fold_in(seed, slice index, crop)`, so a resumed or
re-batched run makes exactly the same images. Rows go to `manifest.partial.csv` as batches
finish; only a complete run renames it to `manifest.csv`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import pathlib
import shutil
from typing import Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from tiqa import annotations, distortions, errors, io, labels, preprocessing, volumes
from tiqa.phases import settings

MANIFEST = "manifest.csv"
PARTIAL_MANIFEST = "manifest.partial.csv"
RUN_CONFIG = "config.json"
SUMMARY = "summary.json"
IMAGES = "images"
MANIFEST_FIELDS = ("file", "group", "source", "slice", "crop", "crop_top", "crop_left", "kind",
                   "level", "label", "reference_score", "seed") + labels.OBSERVERS
REFERENCE_KIND = "reference"


class OutputExistsError(errors.InputError):
    """The output folder holds something this run must not overwrite."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """One crop to distort: where it came from and its pixels."""

    group: str
    source: str
    slice_index: int | None
    crop: int
    top: int
    left: int
    image: np.ndarray  # (crop, crop) float32 in [0, 1]
    score: float


def _config_to_dict(config) -> dict:
    return json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)


def _prepare_output(output: pathlib.Path, config_dict: dict, overwrite: bool) -> set[str] | None:
    """Checks the output folder and returns the groups a previous identical run completed, or
    None when that run completed the manifest but not the summary."""
    if output.exists() and any(output.iterdir()):
        saved_path = output / RUN_CONFIG
        same_config = False
        if saved_path.exists():
            try:
                same_config = json.loads(saved_path.read_text()) == config_dict
            except json.JSONDecodeError:
                same_config = False
        if overwrite:
            if not saved_path.exists():
                # Never delete a folder this program did not make.
                raise OutputExistsError(
                    f"{output} is not empty and holds no {RUN_CONFIG} from the data phase; "
                    "refusing to delete it even with overwrite")
            shutil.rmtree(output)
        elif (output / MANIFEST).exists():
            if same_config and not (output / SUMMARY).exists():
                return None  # killed between the manifest's rename and the summary: finish it
            raise OutputExistsError(
                f"{output} already holds a complete data set ({MANIFEST}); "
                "choose another output or set --config.overwrite=True")
        elif not same_config:
            raise OutputExistsError(
                f"{output} is not empty and was not made by this configuration; "
                "choose another output or set --config.overwrite=True")
        else:
            # Temporaries of writes a kill interrupted; this run makes its own.
            for folder in (output, output / IMAGES):
                if folder.is_dir():
                    io.remove_temporaries(folder)
            return _completed_groups(output, config_dict)
    (output / IMAGES).mkdir(parents=True, exist_ok=True)
    io.write_json(output / RUN_CONFIG, config_dict)
    return set()


def _rows_per_group(config_dict: dict) -> int:
    return 1 + len(config_dict["projection"]["kinds"]) * (distortions.NUM_LEVELS - 1)


def _completed_groups(output: pathlib.Path, config_dict: dict) -> set[str]:
    """Groups whose every row reached the partial manifest; a torn tail is dropped."""
    partial = output / PARTIAL_MANIFEST
    if not partial.exists():
        return set()
    with open(partial, newline="") as handle:
        text = handle.read()
    # A row is whole only with its line end: a kill mid-write can cut its last field short.
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = [row for row in csv.DictReader(text.splitlines(keepends=True))
            if None not in row.values() and None not in row]  # missing or extra fields
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["group"]] = counts.get(row["group"], 0) + 1
    complete = {g for g, n in counts.items() if n == _rows_per_group(config_dict)}
    kept = [row for row in rows if row["group"] in complete]
    # Rewrite without incomplete groups, so appending continues from a clean state.
    with io.atomic_write(partial) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
    return complete


def _normalisation(config: GenerateSettings) -> io.Normalisation:
    return io.Normalisation(mode=config.normalisation, low_percentile=config.low_percentile,
                            high_percentile=config.high_percentile)


def _slices(config: GenerateSettings, items, done: Callable[[int], bool]
            ) -> Iterator[tuple[int, str, int | None, np.ndarray]]:
    """(slice number, source, index in volume, image) for every slice of the input, in order,
    except those `done` says a resumed run already finished (they are not even read)."""
    normalisation = _normalisation(config)
    # One volume open at a time, read a slice at a time (its shared normalisation measured
    # once on a bounded sample, tiqa.volumes): memory is one slice, not the volume.
    current: tuple = (None, None)
    try:
        for number, (source, index) in enumerate(items):
            if done(number):
                continue
            if index is None and not volumes.is_container(source):
                image = io.read_slice(source, normalisation=normalisation)
            else:
                if current[0] != source:
                    if current[1] is not None:
                        current[1].close()
                    current = (source, None)
                    current = (source, volumes.StreamedVolume(volumes.open_volume(source),
                                                              normalisation))
                image = current[1].read([index or 0])[0]
            yield number, str(source), index, np.asarray(image, np.float32)
    finally:
        if current[1] is not None:
            current[1].close()


def _crop_key(seed: int, number: int, crop: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), number), crop)


def _references(config: GenerateSettings, items, completed: set[str], scores: Mapping[str, float]
                ) -> Iterator[tuple[Reference, jax.Array]]:
    def done(number: int) -> bool:
        return all(f"{number:06d}-{crop}" in completed for crop in range(config.crops_per_image))

    for number, source, index, image in _slices(config, items, done):
        resized = preprocessing.resize_short_side(image, config.resize)
        for crop in range(config.crops_per_image):
            group = f"{number:06d}-{crop}"
            if group in completed:
                continue
            key = _crop_key(config.seed, number, crop)
            crop_key, distortion_key = jax.random.split(key)
            pixels, (top, left) = preprocessing.random_crop(crop_key, resized, config.crop)
            yield Reference(group=group, source=source, slice_index=index, crop=crop,
                            top=int(top), left=int(left), image=np.asarray(pixels),
                            score=scores[source]), distortion_key


def _batched(iterable, size: int):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _file_name(group: str, kind: str, level: int) -> str:
    if kind == REFERENCE_KIND:
        return f"{IMAGES}/{group}_reference.png"
    return f"{IMAGES}/{group}_{kind}_{level}.png"


def _write_batch(output: pathlib.Path, batch: list[Reference], projection: labels.Projection,
                 config: GenerateSettings) -> list[dict]:
    images = np.asarray(projection.images)
    label_values = np.asarray(projection.labels)
    raw = np.asarray(projection.observer_scores)
    kinds = tuple(config.projection.kinds)
    observer_names = tuple(config.projection.observers)
    rows = []
    for n, reference in enumerate(batch):
        common = dict(group=reference.group, source=reference.source,
                      slice="" if reference.slice_index is None else reference.slice_index,
                      crop=reference.crop, crop_top=reference.top, crop_left=reference.left,
                      reference_score=f"{reference.score:.6g}", seed=config.seed)
        io.write_png(output / _file_name(reference.group, REFERENCE_KIND, 0), images[n, 0, 0])
        rows.append(dict(common, file=_file_name(reference.group, REFERENCE_KIND, 0),
                         kind=REFERENCE_KIND, level=0, label=f"{reference.score:.6g}",
                         **{o: "" for o in labels.OBSERVERS}))
        for k, kind in enumerate(kinds):
            for level in range(1, distortions.NUM_LEVELS):
                name = _file_name(reference.group, kind, level)
                io.write_png(output / name, images[n, k, level])
                scores = {o: "" for o in labels.OBSERVERS}
                scores.update({o: f"{raw[n, k, level, i]:.9g}" for i, o in enumerate(observer_names)})
                rows.append(dict(common, file=name, kind=kind, level=level,
                                 label=f"{label_values[n, k, level]:.6f}", **scores))
    return rows


def _append_rows(path: pathlib.Path, rows: list[dict]) -> None:
    new_file = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def _summary(manifest: pathlib.Path, kinds) -> dict:
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    summary = {"groups": len({r["group"] for r in rows}), "images": len(rows), "mean_label": {}}
    for kind in kinds:
        summary["mean_label"][kind] = [
            float(np.mean([float(r["label"]) for r in rows if r["kind"] == kind and int(r["level"]) == level]))
            for level in range(1, distortions.NUM_LEVELS)]
    return summary


@dataclasses.dataclass(frozen=True)
class GenerateSettings:
    """configs/generate.py, read once."""
    input: str
    output: str
    annotations: str
    default_reference_score: float
    seed: int
    crops_per_image: int
    resize: int
    crop: int
    batch_size: int
    normalisation: str
    low_percentile: float
    high_percentile: float
    overwrite: bool
    projection: labels.ProjectionConfig


def read_settings(config) -> GenerateSettings:
    """configs/generate.py as frozen settings, with every check that needs no pixels, made
    before anything is written: a failed run must not leave a config.json that refuses the
    corrected one."""
    if not config.input:
        raise errors.InputError("config.input is empty: give a slice, a volume or a folder of slices")
    if not config.output:
        raise errors.InputError("config.output is empty: give a folder for the generated data set")
    settings.check_sizes(config, "crops_per_image", "resize", "crop", "batch_size")
    if config.crop > config.resize:
        raise errors.InputError(f"config.crop={config.crop} is larger than config.resize="
                                f"{config.resize}, the shorter side of every resized slice")
    generation = settings.block(GenerateSettings, config, projection=settings.projection(config))
    _normalisation(generation)  # a bad mode or percentiles
    return generation


def run(config) -> pathlib.Path:
    """Runs the data phase described by `config` (configs/generate.py); returns the output folder."""
    generation = read_settings(config)
    config_dict = _config_to_dict(config)  # what config.json records, to resume by
    config_dict.pop("overwrite", None)  # not part of what defines the data set
    return _generate(generation, config_dict)


def _generate(config: GenerateSettings, config_dict: dict) -> pathlib.Path:
    projection_config = config.projection
    output = io.check_output(config.output, "config.output", folder=True)
    items = io.list_inputs(config.input)  # fails early, naming the input, when it is unusable
    human_scores = annotations.read_annotations(config.annotations) if config.annotations else {}
    sources = sorted({str(source) for source, _ in items})
    scores = dict(zip(sources, annotations.reference_scores_for(sources, human_scores,
                                                                config.default_reference_score)))
    completed = _prepare_output(output, config_dict, config.overwrite)
    if completed is None:
        logging.info("%s: the manifest is complete; writing the missing %s", output, SUMMARY)
        io.remove_temporaries(output)
        io.write_json(output / SUMMARY, _summary(output / MANIFEST, projection_config.kinds))
        return output
    if completed:
        logging.info("resuming: %d group(s) already done in %s", len(completed), output)

    project = jax.jit(labels.project, static_argnums=3)
    total = len(items) * config.crops_per_image
    # A fixed batch shape avoids recompiling; never larger than the whole input.
    batch_shape = min(config.batch_size, total)
    # A `with` closes the bar however the loop ends, so an error gets a line of its own.
    with tqdm.tqdm(total=total, initial=len(completed), unit="crop",
                   desc="data phase") as progress:
        for chunk in _batched(_references(config, items, completed, scores), config.batch_size):
            batch = [reference for reference, _ in chunk]
            keys = jnp.stack([key for _, key in chunk])
            pad = batch_shape - len(batch)
            pixels = np.stack([r.image for r in batch] + [batch[0].image] * pad)
            keys = jnp.concatenate([keys, jnp.stack([keys[0]] * pad)]) if pad else keys
            reference_scores = np.asarray([r.score for r in batch] + [batch[0].score] * pad,
                                          np.float32)
            projection = project(pixels, reference_scores, keys, projection_config)
            projection = labels.Projection(*(x[:len(batch)] for x in projection))
            rows = _write_batch(output, batch, projection, config)
            _append_rows(output / PARTIAL_MANIFEST, rows)
            progress.update(len(batch))

    os.replace(output / PARTIAL_MANIFEST, output / MANIFEST)
    io.write_json(output / SUMMARY, _summary(output / MANIFEST, projection_config.kinds))
    return output
