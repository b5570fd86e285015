"""Benchmarks: the batched JAX paths timed against their peers in the same run."""
