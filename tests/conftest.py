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
