"""Shared fixtures: the real data beside the project, skipped cleanly when absent."""

import os
import pathlib
import shutil
import tempfile

import pytest

# Tests run on the CPU whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Phases rebuild their jitted steps on every call, and many tests run the same smoke phases:
# a persistent compilation cache compiles each program once per test session. It must be set
# before JAX compiles anything (JAX reads it once, at the first compile), so it goes in the
# environment here, at conftest import; pytest-xdist workers and the subprocesses that tests
# start inherit it and share the cache.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiqa-test-jax-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Most of a test's time is XLA:CPU compiling small programs, not running them. LLVM's
# optimisation level 0 compiles them about a third faster, and the older fusion emitters
# compile the smoke train step in 2.7 s instead of 7.6 s (the smoke rank phase: 20 s -> 13 s);
# both run the programs slower only where no test spends long. The projectors' loops of gathers
# would run 5 to 7 times slower at level 0, so their jits pin their own level
# (tomography.COMPILER_OPTIONS). The suite's comparisons with MATLAB and scikit-image values
# pass either way. A user's own XLA_FLAGS win.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                                   "--xla_llvm_disable_expensive_passes=true "
                                   "--xla_cpu_use_fusion_emitters=false")

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


def pytest_unconfigure(config):
    # Only the process that made the cache removes it (not an xdist worker).
    if _OWN_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
