"""Trained networks on disk: the one loader, export and the checkpoint restore.

A network lives in a training work directory (`model.json` with its config, Orbax checkpoints
under `checkpoints/`) or in an exported folder (`model.json` + `params.npz`, float32, a few MB;
the shipped default model is one). `load_model` (score network) and `load_segmenter` (D-LinkNet)
read either through the same code path, `_load_network`; `export_model` writes the second
form from the first. Nothing here imports the training package: inference needs none of it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from tiqa import errors, io, penalties
from tiqa.models.dlinknet import DLinkNet, DLinkNetConfig
from tiqa.models.forward import eval_forward
from tiqa.models.iqa import IQAConfig, IQANet

CHECKPOINTS = "checkpoints"
RUN_INFO = "model.json"
MODEL_INFO_KEY = "model"  # the score network's config in model.json
SEGMENTATION_INFO_KEY = "segmentation_model"
EXPORTED_PARAMS = "params.npz"
DEFAULT_MODEL = pathlib.Path(__file__).resolve().parent / "assets" / "default_model"


def write_run_info(workdir: pathlib.Path, info: dict) -> None:
    """What a later phase needs to rebuild the model (its config), written whole."""
    workdir.mkdir(parents=True, exist_ok=True)
    io.write_json(workdir / RUN_INFO, info)


def read_run_info(workdir: str | pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(workdir) / RUN_INFO
    if not path.exists():
        raise FileNotFoundError(f"{workdir}: no model.json; is this a training work directory?")
    return json.loads(path.read_text())


# A checkpoint is an Orbax composite of these named items, so that a reader restores only
# what it needs by name (the weights, without the optimiser state that made them).
PARAMS, BATCH_STATS, OPT_STATE, STEP = "params", "batch_stats", "opt_state", "step"


def restore_target(tree):
    """`tree` (concrete or abstract) as the shapes, dtypes and shardings to restore into; a leaf
    without a sharding (an abstract network's) goes to the first device."""
    first_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def leaf(x):
        x = ocp.utils.to_shape_dtype_struct(x)
        if x.sharding is None:
            x = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=first_device)
        return x

    return jax.tree.map(leaf, tree)


def save_items(manager: ocp.CheckpointManager, step: int, trees: dict[str, Any],
               others: dict[str, ocp.args.CheckpointArgs]) -> None:
    """Saves checkpoint `step` (asynchronously): each named tree, and the `others` args. A tree
    without arrays is left out (Orbax refuses an empty item; a network without BatchNorm has
    no statistics)."""
    args = {name: ocp.args.StandardSave(tree) for name, tree in trees.items() if jax.tree.leaves(tree)}
    manager.save(step, args=ocp.args.Composite(**args, **others))


def restore_items(manager: ocp.CheckpointManager, step: int, trees: dict[str, Any],
                  others: dict[str, ocp.args.CheckpointArgs] | None = None) -> dict[str, Any]:
    """Checkpoint `step`'s named trees, each restored by name onto the structure and shardings
    of its entry in `trees` (one without arrays comes back as given), and the `others` args.
    Items not asked for (say, the optimiser state) stay on disk."""
    others = others or {}
    args = {name: ocp.args.StandardRestore(restore_target(tree))
            for name, tree in trees.items() if jax.tree.leaves(tree)}
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**args, **others))
    except (KeyError, ValueError, FileNotFoundError) as error:
        raise errors.InputError(f"{manager.directory}: checkpoint {step} does not fit the network, "
                                f"or predates the named-item layout ({error})") from error
    return {name: restored[name] if name in args else tree for name, tree in trees.items()
            } | {name: restored[name] for name in others}


def restore_variables(checkpoint_dir: str | pathlib.Path, params: nnx.State,
                      batch_stats: nnx.State) -> tuple[nnx.State, nnx.State]:
    """Parameters and statistics of the latest checkpoint, whatever optimiser made it.

    `params` and `batch_stats` (abstract or concrete) give the structure to fill; the
    optimiser state stays on disk.
    """
    path = pathlib.Path(checkpoint_dir)
    if (path / CHECKPOINTS).is_dir():
        path = path / CHECKPOINTS
    manager = ocp.CheckpointManager(path.absolute())
    try:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{checkpoint_dir}: no checkpoint found")
        restored = restore_items(manager, step, {PARAMS: params, BATCH_STATS: batch_stats})
    finally:
        manager.close()
    return restored[PARAMS], restored[BATCH_STATS]


def abstract_network(network_type: type[nnx.Module], config) -> nnx.Module:
    """The network's structure, shapes only: nothing computed and no file read, to fill."""
    return nnx.eval_shape(lambda: network_type(config, rngs=nnx.Rngs(0)))


def _flat(tree) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _read_exported(file: pathlib.Path, params: nnx.State, batch_stats: nnx.State
                   ) -> tuple[nnx.State, nnx.State]:
    """`params` and `batch_stats` (abstract) filled from an exported `params.npz`, each array
    checked by name and shape."""
    try:
        stored = np.load(file)
    except (OSError, ValueError) as error:
        raise errors.InputError(f"{file}: unreadable parameter file ({error})") from error

    def fill(prefix, abstract):
        leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
        values = []
        for key_path, leaf in leaves:
            name = prefix + jax.tree_util.keystr(key_path)
            if name not in stored:
                raise errors.InputError(f"{file}: missing {name}")
            value = stored[name]
            if value.shape != leaf.shape:
                raise errors.InputError(f"{file}: {name} has shape {value.shape}, "
                                        f"the network needs {leaf.shape}")
            values.append(jnp.asarray(value, leaf.dtype))
        return jax.tree_util.tree_unflatten(treedef, values)

    return fill("params", params), fill("batch_stats", batch_stats)


def _load_network(path: pathlib.Path, info_key: str, config_type, network_type):
    """(graphdef, params, batch_stats, config, model.json) of the network in `path`: an
    exported folder or a training work directory (its latest checkpoint)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model folder or training work directory")
    info = read_run_info(path)
    config = config_type.from_mapping(info[info_key])
    graphdef, params, batch_stats = nnx.split(abstract_network(network_type, config),
                                              nnx.Param, nnx.BatchStat)
    if (path / EXPORTED_PARAMS).exists():
        params, batch_stats = _read_exported(path / EXPORTED_PARAMS, params, batch_stats)
    else:
        params, batch_stats = restore_variables(path, params, batch_stats)
    return graphdef, params, batch_stats, config, info


# --- The score network --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LoadedModel:
    graphdef: nnx.GraphDef
    params: nnx.State
    batch_stats: nnx.State
    config: IQAConfig
    crop: int
    resize: int
    # True: trained on slices kept at their own pixels (configs/common.py `own_pixels`), so
    # it scores a slice at least `resize` at its own pixels too (preprocessing.model_view).
    own_pixels: bool = False
    # Score points taken off for rings (tiqa.ring_check), for sparse views (tiqa.view_check),
    # for a rotation-centre offset (tiqa.centre_check) and for photon noise past the
    # network's floor (tiqa.noise_check) beyond the network; None: the network's score alone.
    ring_penalty: penalties.Penalty | None = None
    view_penalty: penalties.Penalty | None = None
    centre_penalty: penalties.Penalty | None = None
    noise_penalty: penalties.Penalty | None = None


def model_folder(path: str | pathlib.Path | None) -> pathlib.Path:
    """The folder of a score model given as a config does: a path, or None / '' for the shipped
    default."""
    return pathlib.Path(path) if path else DEFAULT_MODEL


def load_model(path: str | pathlib.Path | None = None) -> LoadedModel:
    """The score network of an exported folder, a training work directory (rank or fine-tune,
    at its latest checkpoint), or (None / '') the shipped default."""
    folder = model_folder(path)
    graphdef, params, batch_stats, config, info = _load_network(folder, MODEL_INFO_KEY,
                                                                IQAConfig, IQANet)
    return LoadedModel(graphdef, params, batch_stats, config, int(info.get("crop", 224)),
                       _resize(info), bool(info.get("own_pixels", False)),
                       **{PENALTY_FIELDS[key]: penalty
                          for key, penalty in _penalties(info, folder).items()})


# model.json's key of each penalty -> the LoadedModel field that holds it.
PENALTY_FIELDS = {"ring_check": "ring_penalty", "view_check": "view_penalty",
                  "centre_check": "centre_penalty", "noise_check": "noise_penalty"}


def _resize(info: dict) -> int:
    """The side a model's inputs are area-resized to (model.json's `resize`; 255 before it
    was written)."""
    return int(info.get("resize", 255))


def model_view(path: str | pathlib.Path | None = None) -> tuple[int, bool]:
    """(`load_model(path).resize`, `load_model(path).own_pixels`), read from one model.json
    without the weights."""
    info = read_run_info(model_folder(path))
    return _resize(info), bool(info.get("own_pixels", False))


def scores_at_own_pixels(trained: bool, asked: bool | None) -> bool:
    """Whether slices of at least a model's resize are scored at their own pixels: `asked` (a
    phase's `own_pixels`), or as the model was trained (`trained`) where it is None."""
    return trained if asked is None else bool(asked)


def model_penalties(path: str | pathlib.Path | None = None) -> dict[str, penalties.Penalty | None]:
    """The penalties of a score model (as `load_model` takes it) by model.json key, read
    without its weights; None for one the model does not have."""
    folder = model_folder(path)
    return _penalties(read_run_info(folder), folder)


def _penalties(info: dict, folder: pathlib.Path) -> dict[str, penalties.Penalty | None]:
    found = {}
    for key in PENALTY_FIELDS:
        entry = info.get(key)
        if entry is None:
            found[key] = None
            continue
        try:
            found[key] = penalties.Penalty.from_dict(entry)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise errors.InputError(f"{folder / RUN_INFO}: {key} needs a slope and a cap (and "
                                    f"optionally a floor), and each of its `larger` fits a side "
                                    f"too, got {entry!r}") from error
    return found


def save_exported(loaded: LoadedModel, destination: str | pathlib.Path,
                  card: dict | None = None) -> pathlib.Path:
    """Writes a network as `model.json` + `params.npz` (float32): all `load_model` needs, no
    optimiser state and no Orbax layout, a few MB."""
    destination = pathlib.Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    arrays = {f"params{k}": v for k, v in _flat(loaded.params).items()}
    arrays.update({f"batch_stats{k}": v for k, v in _flat(loaded.batch_stats).items()})
    with io.atomic_write(destination / EXPORTED_PARAMS) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    info = {MODEL_INFO_KEY: loaded.config.to_dict(), "crop": loaded.crop,
            "resize": loaded.resize, "card": card or {}}
    if loaded.own_pixels:  # written only when set, so older models' files stay as they were
        info["own_pixels"] = True
    for key, field in PENALTY_FIELDS.items():
        if getattr(loaded, field) is not None:
            info[key] = getattr(loaded, field).to_dict()
    io.write_json(destination / RUN_INFO, info)
    return destination


def export_model(workdir: str | pathlib.Path, destination: str | pathlib.Path,
                 card: dict | None = None) -> pathlib.Path:
    """A training run's latest network, exported with `save_exported`."""
    return save_exported(load_model(workdir), destination, card)


def average_models(sources: list[str | pathlib.Path], weights: list[float],
                   destination: str | pathlib.Path, card: dict | None = None) -> pathlib.Path:
    """The weighted mean of the parameters and BatchNorm statistics of score networks of one
    architecture (a "model soup", Wortsman et al. 2022), exported with `save_exported`.

    Meant for fine-tunes of one ancestor, which share a basin of the loss: the mean keeps
    what each learnt better than either endpoint alone. The weights are normalised to sum 1.
    """
    if not sources or len(sources) != len(weights):
        raise errors.InputError(f"average_models needs one weight per model, got {len(sources)} "
                                f"models and {len(weights)} weights")
    total = float(np.sum(weights))
    if min(weights) < 0 or total <= 0:
        raise errors.InputError(f"average_models weights must be >= 0 with a positive sum, got "
                                f"{list(weights)}")
    models = [load_model(source) for source in sources]
    first = models[0]
    for source, model in zip(sources[1:], models[1:]):
        if ((model.config, model.crop, model.resize, model.own_pixels)
                != (first.config, first.crop, first.resize, first.own_pixels)):
            raise errors.InputError(f"{source}: its network, crop, resize or own_pixels differ "
                                    f"from those of {sources[0]}; only one architecture can be "
                                    f"averaged")
    mean = lambda *leaves: sum(w / total * np.asarray(leaf, np.float64)
                               for w, leaf in zip(weights, leaves)).astype(np.float32)
    params = jax.tree.map(mean, *[model.params for model in models])
    batch_stats = jax.tree.map(mean, *[model.batch_stats for model in models])
    return save_exported(dataclasses.replace(first, params=params, batch_stats=batch_stats),
                         destination, card)


# --- The segmentation network -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Segmenter:
    graphdef: nnx.GraphDef
    params: nnx.State
    batch_stats: nnx.State
    config: DLinkNetConfig

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) slices in [0, 1] -> class probabilities (N, H, W, C) (C = 2 for binary:
        [rest, positive]); slices are padded to a multiple of 32 by edge replication."""
        images = np.asarray(images, np.float32)
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % 32, -width % 32
        padded = np.pad(images, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")
        logits = np.asarray(eval_forward(self.graphdef, self.params, self.batch_stats, padded))
        logits = logits[:, :height, :width]
        if logits.shape[-1] == 1:
            positive = 1.0 / (1.0 + np.exp(-logits[..., 0]))
            return np.stack([1.0 - positive, positive], axis=-1)
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)


def load_segmenter(workdir: str | pathlib.Path) -> Segmenter:
    """The D-LinkNet of a segmentation work directory (or an exported folder)."""
    graphdef, params, batch_stats, config, _ = _load_network(
        pathlib.Path(workdir), SEGMENTATION_INFO_KEY, DLinkNetConfig, DLinkNet)
    return Segmenter(graphdef, params, batch_stats, config)


def positive_class(workdir: str | pathlib.Path) -> int:
    """The label a run segments against the rest (particle = 0 by default)."""
    return int(read_run_info(workdir).get("positive_class", 0))
