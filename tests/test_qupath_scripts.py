"""qupath_scripts/*.groovy run for real on QuPath's own core (0.5.1 and 0.6.0), as "Run for project".

tests/qupath_run_for_project.groovy runs a script for every image of a project with QuPath's
core classes; only the four QP/QPEx helpers the scripts call at their top are stood in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import box

from conftest import QUPATH_CORE
from histoclick.datasets.folders import FolderDataset
from histoclick.qupath import open_project, read_geojson, write_geojson
from histoclick.qupath.naming import entry_file_stem

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "qupath_scripts"
ODD_NAME = 'b:odd|name?.png'  # characters QuPath strips from file names


def run_for_project(version: str, script: str, project: Path, *args: str, save: bool = False) -> str:
    runner = REPO / "tests" / "qupath_run_for_project.groovy"
    command = ["bash", str(QUPATH_CORE / "run-groovy.sh"), version, str(runner), str(SCRIPTS / script),
               str(project / "project.qpproj"), "save" if save else "nosave", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture()
def two_images(qupath, tmp_path) -> Path:
    """Image a.png holds a Stroma box of 128x256 pixels; image b (an odd name) a Tumor and a Stroma box."""
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((512, 512, 3), 200, np.uint8))
    project = open_project(tmp_path / "project", mode="x")
    (a,) = project.add_image(tmp_path / "a.png")
    (b,) = project.add_image(tmp_path / "b.png")
    b.entry.image_name = ODD_NAME
    a.add_annotations([(box(64, 64, 192, 320), "Stroma")])
    b.add_annotations([(box(0, 0, 100, 100), "Tumor"), (box(300, 300, 400, 350), "Stroma")])
    project.save()
    return tmp_path / "project"


def test_export_script_names_files_as_histoclick_and_writes_label_masks_on_black(qupath, two_images, tmp_path):
    out = tmp_path / "out"
    run_for_project(qupath, "export_annotations_for_histoclick.groovy", two_images,
                    f"output={out}", "tiles=true", "downsample=1", "tile_size=256")
    project = open_project(two_images)
    stems = [entry_file_stem(image.name, image.entry_id) for image in project.images]
    assert stems == ["a.png-1", "boddname.png-2"]
    assert sorted(path.name for path in out.glob("*.geojson")) == [f"{stem}.geojson" for stem in sorted(stems)]
    for image, stem in zip(project.images, stems):
        exported = read_geojson(out / f"{stem}.geojson")
        assert sorted(exported["id"]) == sorted(image.annotations()["id"])

    # One label per class across images: the project's class list, whatever each image holds.
    labels = [json.loads((out / "tiles" / stem / "labels.json").read_text()) for stem in stems]
    assert labels[0] == labels[1] == {"background": 0, "Stroma": 1, "Tumor": 2}
    values = [set(np.unique(np.concatenate([
        cv2.imread(str(mask), cv2.IMREAD_UNCHANGED).ravel() for mask in (out / "tiles" / stem / "masks").glob("*.png")
    ])).tolist()) for stem in stems]
    assert values == [{0, 1}, {0, 1, 2}]

    # The round trip into histoclick: the labelled fraction is the annotation's area, no more.
    dataset = FolderDataset(out / "tiles" / "a.png-1")
    samples = list(dataset)
    assert len(samples) == 2 and all(sample.gt.shape == (256, 256) for sample in samples)
    assert sum(int(sample.gt.sum()) for sample in samples) == 128 * 256
    assert sum(sample.gt.size for sample in samples) == 2 * 256 * 256


def test_import_script_adds_objects_once_and_classes_to_the_project(qupath, two_images, tmp_path):
    project = open_project(two_images)
    folder = tmp_path / "geojson"
    folder.mkdir()
    target = project.image(1)
    items = [(box(10, 200, 60, 260), "Lymph"), (box(70, 200, 90, 260), "Tumor")]
    written = read_geojson(write_geojson(items, folder / f"{entry_file_stem(target.name, target.entry_id)}.geojson"))
    before = list(target.annotations()["id"])

    out = run_for_project(qupath, "import_histoclick_geojson.groovy", two_images, str(folder), save=True)
    assert f"{ODD_NAME}: added 2 objects" in out and "a.png: no GeoJSON for this image" in out
    out = run_for_project(qupath, "import_histoclick_geojson.groovy", two_images, str(folder), save=True)
    assert "added 0 objects" in out and "(2 already present)" in out

    reopened = open_project(two_images)
    after = reopened.image(1).annotations()
    assert sorted(after["id"]) == sorted(before + list(written["id"]))
    lymph = after[after["classification"] == "Lymph"].geometry.iloc[0]
    assert lymph.equals(box(10, 200, 60, 260))
    assert "Lymph" in reopened.class_colors and len(reopened.image(0).annotations()) == 1
