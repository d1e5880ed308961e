"""QuPath projects via paquo, the missing-QuPath error, and datasets built from annotations.

The project tests use the ``qupath`` fixture: QuPath's own core (../shared/qupath-core, 0.5.1 here
and 0.6.0 through tests/test_qupath_versions.py); they skip locally without it and fail in CI.
Without QuPath, every project entry point must raise the one QuPathNotFoundError that says how
to install QuPath for paquo: checked in a second process whose paquo finds no QuPath.
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
    default_class_color,
    open_project,
    write_geojson,
)
from histoclick.slides import Tile, open_slide

REPO = Path(__file__).resolve().parents[1]


def assert_install_hint(error: Exception | str) -> None:
    message = str(error)
    assert message.startswith("QuPath not found")
    assert "python -m paquo get_qupath --install-path DIR" in message
    assert "PAQUO_QUPATH_DIR" in message


def run_without_qupath(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """A fresh interpreter whose paquo is pointed at an empty folder: QuPath is missing there."""
    empty = tmp_path / "no-qupath"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "PAQUO_QUPATH_DIR": str(empty), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done


# --- without QuPath (a second process, so these run where QuPath is installed too) --------------


def test_every_project_entry_point_without_qupath_says_how_to_install_it(tmp_path):
    """open_project in every mode and QuPathDataset.from_project: one error, and no Java on import."""
    script = (
        "import sys\n"
        "import histoclick, histoclick.qupath, histoclick.datasets.qupath, histoclick.cli.qupath\n"
        "assert not [m for m in sys.modules if m.startswith(('paquo.java', 'paquo.projects', 'jpype'))]\n"
        "from histoclick.datasets.qupath import QuPathDataset\n"
        "from histoclick.qupath import QuPathNotFoundError, open_project\n"
        "calls = [lambda mode=mode: open_project(sys.argv[1], mode=mode) for mode in ('r', 'r+', 'a', 'x')]\n"
        "calls.append(lambda: QuPathDataset.from_project(sys.argv[1], 'Tumor'))\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except QuPathNotFoundError as error:\n"
        "        print(error)\n"
        "    else:\n"
        "        raise SystemExit('no QuPathNotFoundError')\n"
    )
    done = run_without_qupath(tmp_path, script.replace("sys.argv[1]", repr(str(tmp_path / "project"))))
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 5
    for line in lines:
        assert_install_hint(line)
    assert not (tmp_path / "project").exists()


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


def test_dataset_places_a_tile_on_the_boundary_of_an_annotation_larger_than_the_tile(tmp_path, synthetic_slide):
    """Region-level protocol: a centred tile would be tumour only; the tile holds the boundary instead."""
    large = box(200, 200, 1800, 1300)
    geojson = write_geojson([(large, "Tumor")], tmp_path / "large.geojson")
    (sample,) = QuPathDataset.from_geojson(synthetic_slide.path, geojson, "Tumor", tile_size=64, downsample=4)
    assert sample.meta["placement"] == "boundary"
    assert sample.gt.any() and not sample.gt.all()
    np.testing.assert_array_equal(sample.gt, geometry_to_mask(large, (64, 64), sample.meta["origin"], 4.0))


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
def project_path(qupath, tmp_path, synthetic_slide):
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


def test_lists_images_with_slide_path_size_and_levels(project_path):
    project = open_project(project_path)
    images = project.list_images()
    assert list(images["name"]) == ["synthetic.tif"]
    row = images.iloc[0]
    assert (row["width"], row["height"], row["readable"]) == (2048, 1536, True)
    # QuPath's reader decides the levels (the stand-in reader of the test core gives one).
    assert row["downsamples"][0] == pytest.approx(1.0)
    assert (row["problem"], row["entry_id"]) == (None, project.image(0).entry_id)
    assert row["slide_path"].resolve() == (project_path.parent / "slides" / "synthetic.tif").resolve()
    with project.image("synthetic.tif").open_slide() as slide:
        assert slide.dimensions == (2048, 1536)
    with pytest.raises(KeyError, match="no image named"):
        project.image("missing.svs")


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
        project._new_classes.clear()
    slide.with_suffix(".moved").rename(slide)
    assert open_project(project_path).image(0).annotations().empty


def test_read_only_projects_refuse_writes(project_path):
    project = open_project(project_path)
    with pytest.raises(PermissionError, match="mode='r\\+'"):
        project.image(0).add_annotations([(box(0, 0, 5, 5), "Tumor")])


def test_dataset_from_a_project(project_path):
    with open_project(project_path, mode="r+") as project:
        project.image(0).add_annotations([(TUMOUR_A, "Tumor"), (STROMA, "Stroma")])
        project.save()
    dataset = QuPathDataset.from_project(project_path, "Tumor", tile_size=128, magnification=10)
    (sample,) = list(dataset)
    np.testing.assert_array_equal(sample.gt, geometry_to_mask(TUMOUR_A, (128, 128), sample.meta["origin"], 4.0))


# --- geometry that reaches QuPath, all-or-nothing adds, image type, classes only on save --------


def test_one_part_mask_lands_in_the_project_and_reads_back(project_path):
    """A single blob is a one-part MultiPolygon; QuPath 0.5's from_shapely threw a NullPointerException."""
    mask = np.zeros((64, 64), bool)
    mask[8:30, 10:44] = True
    tile = Tile(np.zeros((64, 64, 3), np.uint8), (512.0, 256.0), 4.0)
    with open_project(project_path, mode="r+") as project:
        added = project.image(0).add_annotations([Annotation(mask, "Tumor")], tile=tile)
        assert project.unsaved == 1
        project.save()
    (saved,) = open_project(project_path).image(0).annotations().itertuples()
    assert saved.id == added["id"].iloc[0] and saved.geometry.geom_type == "Polygon"
    np.testing.assert_array_equal(geometry_to_mask(saved.geometry, mask.shape, tile.origin, tile.downsample), mask)


def test_a_failed_add_leaves_nothing_in_memory(project_path):
    """A row QuPath refuses (a blank derived class) fails the whole call: unsaved counts what is in memory."""
    with open_project(project_path, mode="r+") as project:
        image = project.image(0)
        with pytest.raises(ValueError, match="annotation 1: QuPath refuses the class name 'Tumor:'"):
            image.add_annotations([(box(10, 10, 50, 50), "Stroma"), (box(60, 60, 90, 90), "Tumor:")])
        assert project.unsaved == len(image.annotations()) == 0
        assert "Stroma" not in project.class_colors
        image.add_annotations([(box(10, 10, 50, 50), "Stroma")])
        assert project.unsaved == len(image.annotations()) == 1
        project.save()
    assert len(open_project(project_path).image(0).annotations()) == 1


def test_add_image_returns_every_entry_and_leaves_the_image_type_alone(qupath, tmp_path, synthetic_slide):
    from paquo.images import QuPathImageType

    project = open_project(tmp_path / "project", mode="x")
    added = project.add_image(synthetic_slide.path)
    assert [image.entry_id for image in added] == [image.entry_id for image in project.images]
    typed = project.add_image(synthetic_sample_png(tmp_path), image_type="FLUORESCENCE")
    with pytest.raises(ValueError, match="unknown QuPath image type 'H&E'.*BRIGHTFIELD_H_E"):
        project.add_image(synthetic_slide.path, image_type="H&E")
    project.save()
    reopened = open_project(tmp_path / "project")
    assert [image.name for image in reopened.images] == ["synthetic.tif", "tile.png"]
    assert reopened.image(added[0].index).entry.image_type == QuPathImageType.UNSET
    assert reopened.image(typed[0].index).entry.image_type == QuPathImageType.FLUORESCENCE


def synthetic_sample_png(tmp_path: Path) -> Path:
    import cv2

    path = tmp_path / "tile.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 200, np.uint8))
    return path


def test_new_classes_reach_disk_only_on_save(project_path):
    classes_file = project_path / "classifiers" / "classes.json"
    assert not classes_file.exists()
    with open_project(project_path, mode="r+") as project:
        project.image(0).add_annotations([(box(10, 10, 50, 50), "Tumor")])
        assert not classes_file.exists()  # paquo's class setter would have written it here
        project.save()
    before = classes_file.read_bytes()
    with open_project(project_path, mode="r+") as project:
        project.image(0).add_annotations([(box(60, 60, 90, 90), "Lymph")], class_colors={"Lymph": (1, 2, 3)})
        assert project.class_colors["Lymph"] == (1, 2, 3)  # known in memory ...
        assert classes_file.read_bytes() == before  # ... not on disk
        assert "Lymph" not in open_project(project_path).class_colors
        project.save()
    assert open_project(project_path).class_colors["Lymph"] == (1, 2, 3)
    (backup,) = (project_path / "histoclick_backups").glob("*-classes.json")  # QuPath's list, kept aside
    assert backup.read_bytes() == before
