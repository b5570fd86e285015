"""Compute dtypes by name, as configs and model.json files write them, and the model configs'
shared reading of a ConfigDict block."""

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from tiqa import errors

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(value: Any) -> Any:
    """'float32' / 'bfloat16' -> the jnp dtype; a dtype passes through unchanged."""
    if not isinstance(value, str):
        return value
    if value not in COMPUTE_DTYPES:
        raise errors.InputError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {value!r}")
    return COMPUTE_DTYPES[value]


def model_config_values(cls: type, values: Mapping) -> dict:
    """`values` (a ConfigDict or dict) as keyword arguments of the model config dataclass
    `cls`: an unknown key is a ValueError naming it, and `dtype` may be given by name."""
    fields = {field.name for field in dataclasses.fields(cls)}
    values = dict(values)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise errors.InputError(f"unknown model config key(s) {unknown}; known: {sorted(fields)}")
    if "dtype" in values:
        values["dtype"] = compute_dtype(values["dtype"])
    return values
