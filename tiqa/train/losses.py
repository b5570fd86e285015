"""Losses of the two training phases."""

import jax.numpy as jnp


def _ordered_pairs(levels: jnp.ndarray, group_ids: jnp.ndarray,
                   weights: jnp.ndarray | None) -> jnp.ndarray:
    """(N, N) True where i and j are in one group, i at a lower level, and both weighted."""
    ordered = (group_ids[:, None] == group_ids[None, :]) & (levels[:, None] < levels[None, :])
    if weights is not None:
        ordered = ordered & (weights[:, None] > 0) & (weights[None, :] > 0)
    return ordered


def hinge_rank_loss(scores: jnp.ndarray, levels: jnp.ndarray, group_ids: jnp.ndarray,
                    margin: float, weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Pairwise hinge rank loss (the paper's eq. 1, RankIQA style), averaged over pairs.

    For every ordered pair (i, j) in the same group with level_i < level_j (i is the less
    distorted image), the loss is max(0, margin - (score_i - score_j)): the better image must
    score higher by at least `margin`. Pairs across groups or with equal levels do not count,
    nor pairs with an image of weight 0 (a ladder left out of training). With `weights`, each
    pair counts w_i * w_j in a weighted mean: the pairs of a ladder of weight 1/2 (its
    images all weigh the same) count 1/4 each.
    """
    ordered = _ordered_pairs(levels, group_ids, weights)
    hinge = jnp.maximum(0.0, margin - (scores[:, None] - scores[None, :]))
    pair_weights = ordered.astype(jnp.float32)
    if weights is not None:
        pair_weights = pair_weights * weights[:, None] * weights[None, :]
    return jnp.sum(pair_weights * hinge) / jnp.maximum(jnp.sum(pair_weights), 1e-12)


def pair_accuracy(scores: jnp.ndarray, levels: jnp.ndarray, group_ids: jnp.ndarray,
                  weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Fraction of the ordered pairs of `hinge_rank_loss` that the scores already order right."""
    ordered = _ordered_pairs(levels, group_ids, weights)
    right = scores[:, None] > scores[None, :]
    return jnp.sum(ordered & right) / jnp.maximum(jnp.sum(ordered), 1)


def mse_loss(scores: jnp.ndarray, targets: jnp.ndarray,
             weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean squared error of the fine-tune phase (weighted by `weights` when given)."""
    if weights is None:
        return jnp.mean((scores - targets) ** 2)
    return jnp.sum(weights * (scores - targets) ** 2) / jnp.maximum(jnp.sum(weights), 1e-12)


def rank_loss_fn(margin: float):
    def loss_fn(scores, batch):
        weights = batch.get("weights")
        loss = hinge_rank_loss(scores, batch["levels"], batch["group_ids"], margin, weights)
        return loss, {"score_mean": scores.mean(), "pair_accuracy": pair_accuracy(
            scores, batch["levels"], batch["group_ids"], weights)}
    return loss_fn


def mse_loss_fn(scores, batch):
    return mse_loss(scores, batch["labels"], batch.get("weights")), {"score_mean": scores.mean()}


def mse_rank_loss_fn(rank_weight: float, margin: float):
    """The fine-tune's MSE plus `rank_weight` times the hinge rank loss over the batch's groups
    (each original under one kind, each object under one factor). The labels of neighbouring
    levels can be close, and MSE spends little on ordering them; the hinge asks for the order
    itself, by `margin` on the label scale."""
    def loss_fn(scores, batch):
        weights = batch.get("weights")
        mse = mse_loss(scores, batch["labels"], weights)
        rank = hinge_rank_loss(scores, batch["levels"], batch["group_ids"], margin, weights)
        return mse + rank_weight * rank, {"score_mean": scores.mean(), "mse": mse,
                                          "rank_loss": rank}
    return loss_fn


def anchored_loss_fn(loss_fn, anchor_weight: float):
    """`loss_fn` plus `anchor_weight` times the mean squared difference between the scores and
    `batch["anchors"]`, the starting network's scores of the same images, over the images that
    weigh fully in the losses (weight 1: the originals' kinds and the physics ladders of plain
    objects; every image of a batch without weights). Ladders that weigh less (textures,
    denoising) stay free to move: the anchor holds the rest of the function, its scale with
    it, where the fine-tune's other terms would pull it (docs/acquisition_ladder.md, "An anchor
    to the starting network: round 90")."""
    def anchored(scores, batch):
        loss, metrics = loss_fn(scores, batch)
        weights = batch.get("weights")
        held = (jnp.ones_like(scores) if weights is None
                else (weights >= 1.0).astype(scores.dtype))
        anchor = mse_loss(scores, batch["anchors"], held)
        return loss + anchor_weight * anchor, dict(metrics, anchor_loss=anchor)
    return anchored
