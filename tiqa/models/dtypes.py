"""Compute dtypes by name, as configs and model.json files write them."""

from typing import Any

import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(value: Any) -> Any:
    """'float32' / 'bfloat16' -> the jnp dtype; a dtype passes through unchanged."""
    if not isinstance(value, str):
        return value
    if value not in COMPUTE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {value!r}")
    return COMPUTE_DTYPES[value]
