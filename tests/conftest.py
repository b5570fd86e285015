"""Shared fixtures: the real data beside the project, skipped cleanly when absent."""

import os
import pathlib

import pytest

# Tests run on the CPU whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _require(path: pathlib.Path) -> pathlib.Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent "
                    "(it lives beside the project in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def iqa_reference_dir() -> pathlib.Path:
    return _require(SHARED_DATA / "iqa_reference")


@pytest.fixture(scope="session")
def nanoct_dir() -> pathlib.Path:
    return _require(SHARED_DATA / "nmc532_nanoct")


@pytest.fixture(scope="session")
def tomobank_png() -> pathlib.Path:
    return _require(SHARED_DATA / "tomobank" / "tomo_00097.png")


@pytest.fixture(scope="session")
def tomoiqa_bmp() -> pathlib.Path:
    return _require(SHARED_DATA / "tomoiqa" / "195.bmp")


@pytest.fixture(scope="session")
def electrode_tiff() -> pathlib.Path:
    return _require(SHARED_DATA / "taufactor" / "electrode.tiff")


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """Phases rebuild their jitted steps on every call; identical programs compile once a session."""
    import jax
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
