"""Shared fixtures: synthetic slides and tile folders written to disk, and the optional real data."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from histoclick.datasets.synthetic import write_pyramidal_slide, write_sample

# Real data lives next to the project (../shared/data), never inside it; tests using it skip without it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class SyntheticSlide(NamedTuple):
    """A written pyramidal TIFF and its level-0 tumour mask."""

    path: Path
    mask: np.ndarray  # (height, width) bool, level-0 pixels


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSlide:
    """Aperio-style TIFF, 2048x1536 at 40x (0.25 um/px), levels at downsamples 1, 4, 16; seed 0."""
    path = tmp_path_factory.mktemp("slides") / "synthetic.tif"
    mask = write_pyramidal_slide(
        path, width=2048, height=1536, downsamples=(1, 4, 16), objective_power=40.0, mpp=0.25, seed=0
    )
    return SyntheticSlide(path, mask)


@pytest.fixture(scope="session")
def synthetic_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder dataset root with images/NNNNN.png and masks/NNNNN.png: 4 tiles of 256x256, seeds 0-3."""
    return write_sample(tmp_path_factory.mktemp("sample"), n=4, size=256, seed=0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (../shared/data); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA
