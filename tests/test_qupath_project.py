"""QuPath projects via paquo, the missing-QuPath error, and datasets built from annotations.

The project tests need a QuPath installation found by paquo's own lookup (PAQUO_QUPATH_DIR,
.paquo.toml, or its search folders) and are skipped otherwise. Without QuPath, every project
entry point must raise the one QuPathNotFoundError that says how to install QuPath for paquo.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point, Polygon, box

from histoclick.datasets.qupath import QuPathDataset
from histoclick.geometry import geometry_to_mask
from histoclick.qupath import (
    Annotation,
    ImageUnreachableError,
    QuPathNotFoundError,
    default_class_color,
    find_qupath,
    open_project,
    write_geojson,
)
from histoclick.slides import Tile, open_slide

REPO = Path(__file__).resolve().parents[1]


def _lookup() -> tuple[Path | None, str]:
    try:
        return find_qupath(), ""
    except QuPathNotFoundError as error:
        return None, str(error)


QUPATH, NOT_FOUND = _lookup()
needs_qupath = pytest.mark.skipif(
    QUPATH is None, reason=f"needs QuPath for paquo; {NOT_FOUND}"
)
without_qupath = pytest.mark.skipif(
    QUPATH is not None, reason=f"QuPath is installed ({QUPATH}); see the subprocess test instead"
)


def assert_install_hint(error: Exception) -> None:
    message = str(error)
    assert message.startswith("QuPath not found")
    assert "python -m paquo get_qupath --install-path DIR" in message
    assert "PAQUO_QUPATH_DIR" in message


# --- without QuPath -----------------------------------------------------------------------------


@without_qupath
@pytest.mark.parametrize("mode", ["r", "r+", "a", "x"])
def test_opening_a_project_without_qupath_says_how_to_install_it(tmp_path, mode):
    with pytest.raises(QuPathNotFoundError) as caught:
        open_project(tmp_path / "project", mode=mode)
    assert_install_hint(caught.value)


@without_qupath
def test_dataset_from_a_project_without_qupath_says_how_to_install_it(tmp_path):
    with pytest.raises(QuPathNotFoundError) as caught:
        QuPathDataset.from_project(tmp_path / "project", "Tumor")
    assert_install_hint(caught.value)


def test_missing_qupath_error_even_where_qupath_is_installed(tmp_path):
    """A fresh interpreter pointed at an empty QuPath folder: the same error, and no Java on import."""
    script = (
        "import sys\n"
        "import histoclick, histoclick.qupath, histoclick.datasets.qupath, histoclick.cli.qupath\n"
        "assert not [m for m in sys.modules if m.startswith(('paquo.java', 'paquo.projects', 'jpype'))]\n"
        "from histoclick.qupath import QuPathNotFoundError, open_project\n"
        "try:\n"
        f"    open_project({str(tmp_path / 'project')!r}, mode='x')\n"
        "except QuPathNotFoundError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "PAQUO_QUPATH_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_install_hint(RuntimeError(done.stdout.strip()))


def test_truncating_mode_is_not_offered(tmp_path):
    with pytest.raises(ValueError, match="'r', 'r\\+', 'a' or 'x'"):
        open_project(tmp_path, mode="w")


# --- datasets from annotations (GeoJSON: no QuPath needed) ---------------------------------------

TUMOUR_A = Polygon(
    [(600, 400), (900, 400), (900, 640), (600, 640)], [[(700, 480), (760, 480), (760, 540), (700, 540)]]
)
TUMOUR_B = box(950, 450, 1100, 560)
STROMA = box(100, 100, 300, 300)


@pytest.fixture()
def annotated_slide(tmp_path, synthetic_slide):
    # A point annotation has no region to segment: the dataset leaves it out.
    items = [(TUMOUR_A, "Tumor"), (TUMOUR_B, "Tumor"), (STROMA, "Stroma"), (Point(10, 10), "Tumor")]
    return synthetic_slide.path, write_geojson(items, tmp_path / "slide.geojson")


def test_dataset_gives_a_tile_around_each_annotation_of_the_class(annotated_slide):
    slide_path, geojson = annotated_slide
    dataset = QuPathDataset.from_geojson(slide_path, geojson, "Tumor", tile_size=128, magnification=10)
    assert len(dataset) == 2 and dataset.sample_ids[0].startswith("synthetic.tif/")
    samples = list(dataset)
    assert len(samples) == 2
    with open_slide(slide_path) as slide:
        for sample, polygon in zip(samples, [TUMOUR_A, TUMOUR_B]):
            meta = sample.meta
            assert meta["downsample"] == 4.0 and meta["magnification"] == 10.0
            assert meta["classification"] == "Tumor" and meta["image"] == "synthetic.tif"
            minx, miny, maxx, maxy = polygon.bounds
            assert meta["origin"] == (round((minx + maxx - 512) / 2), round((miny + maxy - 512) / 2))
            expected = slide.read_region(*meta["origin"], 128, 128, downsample=4.0)
            np.testing.assert_array_equal(sample.image, expected.image)
            np.testing.assert_array_equal(sample.gt, geometry_to_mask(polygon, (128, 128), meta["origin"], 4.0))
            assert sample.gt.any() and not sample.gt.all()
    # The other tumour inside the first tile is ignored, not background.
    first = samples[0]
    others = geometry_to_mask(TUMOUR_B, (128, 128), first.meta["origin"], 4.0)
    assert others.any()
    np.testing.assert_array_equal(first.ignore, others & ~first.gt)


def test_dataset_can_keep_other_objects_as_background(annotated_slide):
    slide_path, geojson = annotated_slide
    dataset = QuPathDataset.from_geojson(
        slide_path, geojson, "Stroma", tile_size=64, downsample=8, ignore_others=False
    )
    (sample,) = list(dataset)
    assert sample.ignore is None and sample.image.shape == (64, 64, 3)
    assert sample.meta["annotation_id"] == dataset.sample_ids[0].split("/")[1]


# --- with QuPath -------------------------------------------------------------------------------


@pytest.fixture()
def project_path(tmp_path, synthetic_slide):
    """A new project holding a copy of the synthetic slide (so a test may move the copy away)."""
    slide = tmp_path / "slides" / "synthetic.tif"
    slide.parent.mkdir()
    shutil.copy(synthetic_slide.path, slide)
    project = open_project(tmp_path / "project", mode="x")
    project.add_image(slide)
    project.save()
    return tmp_path / "project"


def tumour_mask() -> tuple[np.ndarray, Tile]:
    mask = np.zeros((64, 64), bool)
    mask[10:40, 12:50] = True
    mask[20:25, 20:30] = False
    return mask, Tile(np.zeros((64, 64, 3), np.uint8), (512.0, 256.0), 4.0)


@needs_qupath
def test_lists_images_with_slide_path_size_and_levels(project_path):
    project = open_project(project_path)
    images = project.list_images()
    assert list(images["name"]) == ["synthetic.tif"]
    row = images.iloc[0]
    assert (row["width"], row["height"], row["readable"]) == (2048, 1536, True)
    assert row["downsamples"][0] == pytest.approx(1.0) and len(row["downsamples"]) >= 2
    assert row["slide_path"].resolve() == (project_path.parent / "slides" / "synthetic.tif").resolve()
    with project.image("synthetic.tif").open_slide() as slide:
        assert slide.dimensions == (2048, 1536)
    with pytest.raises(KeyError, match="no image named"):
        project.image("missing.svs")


@needs_qupath
def test_added_annotations_are_saved_with_class_name_and_measurements(project_path):
    mask, tile = tumour_mask()
    with open_project(project_path, mode="r+") as project:
        image = project.image(0)
        added = image.add_annotations(
            [
                Annotation(
                    mask,
                    "Lymphocytes",
                    name="clicked",
                    measurements={"histoclick clicks": 3, "histoclick predicted IoU": 0.9},
                ),
                (box(1000, 1000, 1100, 1050), "Tumor"),
            ],
            tile=tile,
        )
        assert project.unsaved == 2
        backups = project.save()
    assert backups[image.entry_id].is_dir()

    project = open_project(project_path)
    frame = project.image(0).annotations()
    assert sorted(frame["id"]) == sorted(added["id"])
    lymph = frame[frame["classification"] == "Lymphocytes"].iloc[0]
    np.testing.assert_array_equal(geometry_to_mask(lymph.geometry, mask.shape, tile.origin, tile.downsample), mask)
    assert lymph["name"] == "clicked"
    assert lymph["measurements"] == {"histoclick clicks": 3.0, "histoclick predicted IoU": pytest.approx(0.9)}
    assert lymph["color"] == default_class_color("Lymphocytes")
    assert project.class_colors["Lymphocytes"] == default_class_color("Lymphocytes")
    assert len(project.image(0).annotations("Tumor")) == 1


@needs_qupath
def test_existing_annotations_stay_untouched_and_repeats_are_refused(project_path):
    with open_project(project_path, mode="r+") as project:
        first = project.image(0).add_annotations([(box(10, 10, 50, 50), "Tumor")])
        project.save()
    before = open_project(project_path).image(0).annotations()
    data_file = Path(open_project(project_path).image(0).entry.entry_path) / "data.qpdata"
    saved_bytes = data_file.read_bytes()

    with open_project(project_path, mode="r+") as project:
        image = project.image(0)
        with pytest.raises(ValueError, match="already holds"):
            image.add_annotations(first)
        image.add_annotations(
            [(box(60, 60, 90, 90), "Mitosis"), (box(95, 95, 99, 99), "Tumor")],
            class_colors={"Mitosis": (1, 2, 3), "Tumor": (9, 9, 9)},
        )
        backups = project.save()
    # The backup taken before this session's first write holds the previous data file.
    assert (backups[image.entry_id] / "data.qpdata").read_bytes() == saved_bytes

    after = open_project(project_path).image(0).annotations()
    kept = after[after["id"] == first["id"].iloc[0]].iloc[0]
    original = before.iloc[0]
    assert kept.geometry.equals(original.geometry)
    assert (kept["classification"], kept["name"], kept["measurements"]) == (
        original["classification"], original["name"], original["measurements"])
    assert len(after) == 3
    colors = open_project(project_path).class_colors
    assert colors["Mitosis"] == (1, 2, 3)  # a new class takes the given colour
    assert colors["Tumor"] == (200, 0, 0)  # an existing project class keeps its own


@needs_qupath
def test_unreachable_slide_raises_instead_of_skipping_silently(project_path):
    slide = project_path.parent / "slides" / "synthetic.tif"
    with open_project(project_path, mode="r+") as project:
        image = project.image(0)
        image.add_annotations([(box(10, 10, 50, 50), "Tumor")])
        slide.rename(slide.with_suffix(".moved"))
        with pytest.raises(ImageUnreachableError, match="update_image_paths"):
            project.save()
        with pytest.raises(ImageUnreachableError):
            image.add_annotations([(box(60, 60, 90, 90), "Tumor")])
        project._pending.clear()  # leave the block without the unsaved-changes warning
    slide.with_suffix(".moved").rename(slide)
    assert open_project(project_path).image(0).annotations().empty


@needs_qupath
def test_read_only_projects_refuse_writes(project_path):
    project = open_project(project_path)
    with pytest.raises(PermissionError, match="mode='r\\+'"):
        project.image(0).add_annotations([(box(0, 0, 5, 5), "Tumor")])


@needs_qupath
def test_dataset_from_a_project(project_path):
    with open_project(project_path, mode="r+") as project:
        project.image(0).add_annotations([(TUMOUR_A, "Tumor"), (STROMA, "Stroma")])
        project.save()
    dataset = QuPathDataset.from_project(project_path, "Tumor", tile_size=128, magnification=10)
    (sample,) = list(dataset)
    np.testing.assert_array_equal(sample.gt, geometry_to_mask(TUMOUR_A, (128, 128), sample.meta["origin"], 4.0))
