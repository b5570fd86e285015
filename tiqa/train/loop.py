"""The training machinery every phase shares.

- `TrainState`: step, parameters, BatchNorm statistics and optimiser state, one pytree (the
  model's graph stays outside, from `nnx.split`), so it can be sharded, donated and saved.
- `make_train_step`: a pure `(state, batch, key) -> (state, metrics)` function under `jax.jit`
  with the state donated; the step's key is `fold_in(key, step)`, so a resumed run draws the
  same numbers.
- Data parallelism with `jax.sharding`: a 1-D mesh named `data` over every device (every host's
  with `jax.distributed.initialize`), batches split along it, the state replicated.
- `run`: the loop: Orbax checkpoints (keep N, asynchronous), exact resume from the latest one,
  metrics every N steps to the log, a JSONL file and a progress bar. Reading a finished run's
  network back is `tiqa.checkpoints`'s job.
"""

from __future__ import annotations

import json
import logging
import pathlib
import time
from typing import Any, Callable, Iterable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tiqa import checkpoints, errors, io

DATA_AXIS = "data"
METRICS_FILE = "metrics.jsonl"

Batch = Mapping[str, jax.Array]
LossFn = Callable[[jax.Array, Batch], tuple[jax.Array, dict]]


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState


def step_decay(learning_rate: float, decay_every: int, factor: float) -> optax.Schedule:
    """lr x factor^(step // decay_every): the paper's "decayed every N epochs"."""
    if decay_every <= 0:
        return optax.constant_schedule(learning_rate)
    return optax.exponential_decay(learning_rate, transition_steps=decay_every,
                                   decay_rate=factor, staircase=True)


def _states_of(kind: type, opt_state: optax.OptState) -> list:
    is_kind = lambda node: isinstance(node, kind)
    return [node for node in jax.tree.leaves(opt_state, is_leaf=is_kind) if is_kind(node)]


def applied_learning_rate(opt_state: optax.OptState) -> jax.Array:
    """The learning rate of the update that produced `opt_state`.

    Read from the state, not recomputed from a schedule, so that a reduce-on-plateau scale
    counts: the optimiser must inject its `learning_rate` (`optax.inject_hyperparams`).
    """
    injected = _states_of(optax.InjectStatefulHyperparamsState, opt_state)
    if len(injected) != 1 or "learning_rate" not in injected[0].hyperparams:
        raise ValueError("build the optimiser with optax.inject_hyperparams(...)(learning_rate=...)"
                         f" once, so the loop can log the rate it used ({len(injected)} found)")
    rate = injected[0].hyperparams["learning_rate"]
    for plateau in _states_of(optax.contrib.ReduceLROnPlateauState, opt_state):
        rate = rate * plateau.scale  # reduce_on_plateau scales by its new state's scale
    return rate


def init_state(model: nnx.Module, optimizer: optax.GradientTransformation
               ) -> tuple[nnx.GraphDef, TrainState]:
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    # An abstract model (weights to come from a checkpoint) still needs a concrete optimiser
    # state, and inject_hyperparams reads the weights' dtype from real arrays.
    concrete = jax.tree.map(
        lambda x: jnp.zeros(x.shape, x.dtype) if isinstance(x, jax.ShapeDtypeStruct) else x, params)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                       opt_state=optimizer.init(concrete))
    return graphdef, state


def make_train_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation,
                    loss_fn: LossFn, *, frozen_batch_norm: bool = False,
                    trained: Any = None) -> Callable:
    """The jitted, state-donating train step of a model whose call is `model(images, train, key)`.

    `optimizer` injects its learning rate (see `applied_learning_rate`), which is logged.

    `frozen_batch_norm`: the model normalises with its stored statistics while it trains (and
    keeps them), so the loss is computed on the function that evaluation runs. Needed when a
    batch is not a fair sample of the data: a batch of one original's distortions would teach
    the network to rely on statistics that a single slice at scoring time does not have.

    `trained`: a pytree of bools like the parameters (`training.trained_parameters`); the others
    get no gradient and no update. Stopping their gradient also spares the backward pass
    through layers that nothing trained depends on.
    """
    call_options = {"frozen_batch_norm": True} if frozen_batch_norm else {}
    held = ((lambda params: params) if trained is None else
            (lambda params: jax.tree.map(lambda t, p: p if t else jax.lax.stop_gradient(p),
                                         trained, params)))

    def train_step(state: TrainState, batch: Batch, key: jax.Array):
        step_key = jax.random.fold_in(key, state.step)

        def compute_loss(params):
            # copy=True: BatchNorm updates its statistics on a fresh graph inside this trace.
            model = nnx.merge(graphdef, held(params), state.batch_stats, copy=True)
            predictions = model(batch["images"], train=True, key=step_key, **call_options)
            loss, metrics = loss_fn(predictions, batch)
            return loss, (metrics, nnx.state(model, nnx.BatchStat))

        (loss, (metrics, batch_stats)), grads = jax.value_and_grad(
            compute_loss, has_aux=True)(state.params)
        # `value` feeds loss-aware transformations (reduce-on-plateau); others ignore it.
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params, value=loss)
        if trained is not None:  # a zero gradient still moves a parameter under weight decay
            updates = jax.tree.map(lambda t, u: u if t else jnp.zeros_like(u), trained, updates)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss, learning_rate=applied_learning_rate(opt_state),
                       grad_norm=optax.tree.norm(grads))
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state)
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=(0,))


def population_batch_stats(graphdef: nnx.GraphDef, params: nnx.State, batch_stats: nnx.State,
                           image_batches: Iterable[jax.Array], key: jax.Array) -> nnx.State:
    """BatchNorm statistics of all the given images together ("precise BatchNorm").

    The running averages that training leaves are averages of per-batch statistics: when every
    batch holds one original's distortions, their variance misses the variation between
    originals. Here each layer's per-batch mean and variance are taken (momentum 0 makes the
    layer store them) and pooled exactly for equal-size batches: the mean of the means, and the
    mean of the variances plus the variance of the means. Later layers see the statistics of the
    earlier layers as they were, which is close enough for the usual few dozen batches.
    """
    model = nnx.merge(graphdef, params, batch_stats)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            module.momentum = 0.0
    measuring_graph, _, _ = nnx.split(model, nnx.Param, nnx.BatchStat)

    @jax.jit
    def batch_statistics(images, step_key):
        measured = nnx.merge(measuring_graph, params, batch_stats, copy=True)
        measured(images, train=True, key=step_key)
        return nnx.state(measured, nnx.BatchStat)

    per_batch = [nnx.to_pure_dict(batch_statistics(images, jax.random.fold_in(key, index)))
                 for index, images in enumerate(image_batches)]
    if not per_batch:
        raise ValueError("population_batch_stats: no batches given")
    pooled = _pool_statistics(per_batch)
    result = jax.tree.map(lambda x: x, batch_stats)
    nnx.replace_by_pure_dict(result, pooled)
    return result


def with_population_statistics(graphdef, state: TrainState, pool, make_batch,
                               batches_to_measure: int, key: jax.Array) -> TrainState:
    """The state with BatchNorm statistics measured on `batches_to_measure` training batches."""
    batch_fn = jax.jit(make_batch)
    images = (batch_fn(pool, jax.numpy.int32(step))["images"] for step in range(batches_to_measure))
    stats = population_batch_stats(graphdef, state.params, state.batch_stats, images, key)
    logging.info("BatchNorm statistics measured on %d batches, then frozen", batches_to_measure)
    return state.replace(batch_stats=stats)


def _pool_statistics(per_batch: list[dict]) -> dict:
    """Pools per-batch BatchNorm {'mean', 'var'} dicts (nested by layer) over equal-size batches."""
    first = per_batch[0]
    if isinstance(first, dict) and set(first) == {"mean", "var"}:
        means = jnp.stack([b["mean"] for b in per_batch])
        variances = jnp.stack([b["var"] for b in per_batch])
        return {"mean": means.mean(0), "var": variances.mean(0) + means.var(0)}
    if isinstance(first, dict):
        return {name: _pool_statistics([b[name] for b in per_batch]) for name in first}
    raise ValueError(f"unexpected BatchNorm statistics entry {type(first).__name__}")


# --- Devices ---------------------------------------------------------------------------------

def initialise_distributed(enabled: bool) -> None:
    """Joins the other hosts (coordinator from the environment, e.g. a cluster's launcher)."""
    if enabled and jax.process_count() == 1:
        jax.distributed.initialize()


def data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over every device (or the first `num_devices`), axis `data`."""
    devices = jax.devices() if num_devices in (None, 0) else jax.devices()[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
    if batch_size % mesh.size:
        raise errors.InputError(f"batch of {batch_size} images does not split over {mesh.size} devices; "
                                "change the number of originals per batch")


# --- Checkpoints -----------------------------------------------------------------------------

def checkpoint_manager(workdir: pathlib.Path, keep: int) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        (workdir / checkpoints.CHECKPOINTS).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def has_checkpoint(workdir: str | pathlib.Path) -> bool:
    """Whether `workdir` holds a finished checkpoint (Orbax names each step's folder by number)."""
    directory = pathlib.Path(workdir) / checkpoints.CHECKPOINTS
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


RUN_CONFIG = "config.json"
# Keys (last name) that only say how long, how visibly or where a run goes, not what each
# step computes: they may change on resume (a longer run continues the same schedule, and a
# work directory that was moved or copied resumes where it is).
RUNTIME_KEYS = frozenset({"log_every", "checkpoint_every", "keep_checkpoints",
                          "resume_with_changes", "epochs", "workdir"})


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items()
                for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def check_resume(workdir: str | pathlib.Path, settings: dict, allow_changes: bool) -> None:
    """Refuses to resume a run whose configuration differs from the one it started with.

    Call it before writing anything in `workdir`. A work directory with a checkpoint and a
    `config.json` is resumed only when every key outside RUNTIME_KEYS is the same, or when
    `allow_changes` says so (the new configuration is then recorded); a new run records its
    configuration.
    """
    path = pathlib.Path(workdir) / RUN_CONFIG
    current = {k: v for k, v in _flatten(json.loads(json.dumps(settings, default=str))).items()
               if k.split(".")[-1] not in RUNTIME_KEYS}
    if has_checkpoint(workdir) and path.exists():
        stored = {k: v for k, v in _flatten(json.loads(path.read_text())).items()
                  if k.split(".")[-1] not in RUNTIME_KEYS}
        changed = sorted(set(stored) | set(current), key=str)
        changed = [key for key in changed if stored.get(key, "<absent>") != current.get(key, "<absent>")]
        if changed and not allow_changes:
            listed = "; ".join(f"{key}: {stored.get(key, '<absent>')!r} -> "
                               f"{current.get(key, '<absent>')!r}" for key in changed[:10])
            more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
            raise errors.InputError(
                f"{workdir} holds a run made with another configuration ({listed}{more}); use "
                "another workdir, or --config.resume_with_changes=True to resume it anyway")
        if not changed:
            return
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    io.write_json(path, settings)


def _trees(state: TrainState) -> dict[str, Any]:
    return {checkpoints.PARAMS: state.params, checkpoints.BATCH_STATS: state.batch_stats,
            checkpoints.OPT_STATE: state.opt_state}


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state: TrainState) -> None:
    """Saves `state` (asynchronously) as the named items of `tiqa.checkpoints`."""
    checkpoints.save_items(manager, step, _trees(state),
                           {checkpoints.STEP: ocp.args.ArraySave(state.step)})


def restore_latest(manager: ocp.CheckpointManager, state: TrainState) -> TrainState | None:
    """The latest checkpoint laid onto `state`'s structure and shardings, or None."""
    step = manager.latest_step()
    if step is None:
        return None
    restored = checkpoints.restore_items(manager, step, _trees(state), {
        checkpoints.STEP: ocp.args.ArrayRestore(restore_args=ocp.ArrayRestoreArgs(
            sharding=state.step.sharding, global_shape=(), dtype=state.step.dtype))})
    return TrainState(step=restored[checkpoints.STEP], params=restored[checkpoints.PARAMS],
                      batch_stats=restored[checkpoints.BATCH_STATS],
                      opt_state=restored[checkpoints.OPT_STATE])


# --- The loop --------------------------------------------------------------------------------

def _write_metrics(path: pathlib.Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _trim_metrics(path: pathlib.Path, step: int) -> None:
    """Keeps the records up to `step`, where the run resumes: a killed run logged the steps
    after its last checkpoint, which the resumed run logs again; a torn last line goes too."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    if kept != lines:
        io.write_text(path, "".join(line + "\n" for line in kept))


def run(*, workdir: pathlib.Path, state: TrainState, train_step: Callable,
        make_batch: Callable[[Any, jax.Array], Batch], batch_inputs: Any, num_steps: int,
        key: jax.Array,
        mesh: Mesh, images_per_step: int, log_every: int, checkpoint_every: int,
        keep_checkpoints: int, description: str) -> TrainState:
    """Trains from the latest checkpoint in `workdir` (or from `state`) up to `num_steps`.

    `make_batch(batch_inputs, step)` must be a pure function of its inputs and the step (a
    `jnp.int32`), so the resumed run sees the same batches as an uninterrupted one; it runs
    jitted on the devices, its output split on the `data` axis; the state is replicated.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    state = jax.device_put(state, replicated(mesh))
    manager = checkpoint_manager(workdir, keep_checkpoints)
    restored = restore_latest(manager, state)
    if restored is not None:
        state = restored
        logging.info("%s: resumed from step %d in %s", description, int(state.step), workdir)
    start = int(state.step)
    batch_inputs = jax.device_put(batch_inputs, replicated(mesh))
    batch_fn = jax.jit(make_batch, out_shardings=batch_sharded(mesh))
    metrics_path = workdir / METRICS_FILE
    _trim_metrics(metrics_path, start)
    progress = tqdm.tqdm(total=num_steps, initial=start, desc=description, unit="step")
    window_start, window_steps = time.perf_counter(), 0
    for step in range(start, num_steps):
        batch = batch_fn(batch_inputs, jnp.int32(step))
        state, metrics = train_step(state, batch, key)
        done = step + 1
        if step == start:
            # The first step compiles; images/s counts from the end of it.
            jax.block_until_ready(state)
            window_start = time.perf_counter()
        else:
            window_steps += 1
        if done % log_every == 0 or done == num_steps:
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            elapsed = time.perf_counter() - window_start
            if window_steps:
                metrics["images_per_s"] = images_per_step * window_steps / max(elapsed, 1e-9)
            record = {"step": done, **metrics}
            _write_metrics(metrics_path, record)
            logging.info("%s step %d: %s", description, done,
                         ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            progress.set_postfix(loss=f"{metrics['loss']:.4f}",
                                 img_s=f"{metrics.get('images_per_s', 0.0):.1f}")
            window_start, window_steps = time.perf_counter(), 0
        if done % checkpoint_every == 0 or done == num_steps:
            save_checkpoint(manager, done, state)
        progress.update(1)
    progress.close()
    manager.wait_until_finished()
    manager.close()
    return state
