"""How every suite times a call: one warm-up (compilation), then the best of several runs."""

import time

import jax


def best_seconds(function, repeats: int) -> float:
    """Seconds per call of `function()` after one warm-up call, the best of `repeats`, waiting
    for JAX's asynchronous results each time."""
    jax.block_until_ready(function())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function())
        best = min(best, time.perf_counter() - start)
    return best
