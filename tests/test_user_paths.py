"""A path written with ``~`` means the user's home everywhere a path is taken, never a literal ``~`` folder."""

from __future__ import annotations

import shutil

import pytest
from shapely.geometry import box

from histoclick.datasets.folders import FolderDataset
from histoclick.datasets.qupath import QuPathDataset
from histoclick.evaluation.baselines import RegionGrowing
from histoclick.evaluation.runner import evaluate
from histoclick.qupath import read_geojson, write_geojson
from histoclick.slides import open_slide


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A fresh home folder; the test runs from another folder so a literal ``~`` would show."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    yield home
    assert not (work / "~").exists(), "a literal ~ folder was created"


def test_datasets_and_evaluation_outputs_expand_the_home_folder(home, synthetic_sample):
    shutil.copytree(synthetic_sample, home / "sample")
    dataset = FolderDataset("~/sample")
    assert dataset.root == home / "sample" and len(dataset.sample_ids) == 4
    evaluate(RegionGrowing(), dataset, "~/runs/zero-shot", max_clicks=2, limit=1, plot=False, verbose=False)
    assert (home / "runs" / "zero-shot" / "records.csv").is_file()


def test_slides_and_geojson_expand_the_home_folder(home, synthetic_slide):
    shutil.copy(synthetic_slide.path, home / "slide.tif")
    write_geojson([(box(600, 400, 900, 640), "Tumor")], "~/slide.geojson")
    assert len(read_geojson(home / "slide.geojson")) == 1
    with open_slide("~/slide.tif") as slide:
        assert slide.dimensions == (2048, 1536)
    dataset = QuPathDataset.from_geojson("~/slide.tif", "~/slide.geojson", "Tumor", tile_size=32, downsample=16)
    assert len(list(dataset)) == 1
