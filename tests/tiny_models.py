"""A small random score network, for tests that need a model but not a good one."""

import pathlib

import jax
from flax import nnx

from tiqa import scoring
from tiqa.models.iqa import IQAConfig
from tiqa.train import phases

TINY = IQAConfig(backbone="b0", pretrained=False, hidden=(8,),
                 trunk_overrides=(("depth", 0.25), ("width", 0.25)))


def export_tiny_score_model(folder: pathlib.Path) -> scoring.LoadedModel:
    """Exports TINY with random weights to `folder` (crop 64 after resizing to 72)."""
    graphdef, params, stats = nnx.split(phases.build_model(TINY, jax.random.key(0)),
                                        nnx.Param, nnx.BatchStat)
    loaded = scoring.LoadedModel(graphdef, params, stats, TINY, crop=64, resize=72)
    scoring.save_exported(loaded, folder, card={"purpose": "tests"})
    return loaded
