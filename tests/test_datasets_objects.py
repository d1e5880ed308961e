"""Object mode: one sample per connected component or instance label of a tile, the rest ignored."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from histoclick.datasets.folders import FolderDataset
from histoclick.datasets.objects import ObjectDataset, objects
from histoclick.datasets.synthetic import make_tile
from histoclick.evaluation.baselines import RegionGrowing
from histoclick.evaluation.clicker import next_click
from histoclick.evaluation.protocol import run_sample


def labelled_tile() -> np.ndarray:
    """128x128 instance labels: 1 and 2 touch (one component), 3 apart, 4 a 9-pixel speck."""
    labels = np.zeros((128, 128), np.uint8)
    labels[10:40, 10:40] = 1
    labels[10:40, 40:70] = 2  # shares an edge with label 1
    labels[80:120, 60:110] = 3
    labels[100:103, 10:13] = 4
    return labels


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image, _ = make_tile(seed=3, size=128)
    cv2.imwrite(str(tmp_path / "images" / "t1.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "masks" / "t1.png"), labelled_tile())
    return FolderDataset(tmp_path, name="tiles")


def test_mask_mode_is_the_tile_dataset_unchanged(folder):
    assert objects(folder) is folder and objects(folder, "mask") is folder
    assert folder.sample_ids == ["t1"]


def test_components_are_samples_with_the_other_objects_ignored(folder):
    dataset = objects(folder, "components", min_area=10)  # tile pixels: drops the 9-pixel speck
    assert dataset.sample_ids == ["t1#c1", "t1#c2"]
    labels = labelled_tile()
    first, second = (dataset.load(i) for i in dataset.sample_ids)
    np.testing.assert_array_equal(first.gt, (labels == 1) | (labels == 2))
    np.testing.assert_array_equal(first.ignore, (labels == 3) | (labels == 4))
    np.testing.assert_array_equal(second.gt, labels == 3)
    np.testing.assert_array_equal(second.ignore, (labels == 1) | (labels == 2) | (labels == 4))
    assert second.meta["object_id"] == "c2" and second.meta["tile_id"] == "t1"
    assert second.meta["object_area_px"] == 40 * 50 and second.meta["object_mode"] == "components"
    assert second.meta["image"].endswith("t1.png")  # the tile's own meta is kept
    np.testing.assert_array_equal(first.image, second.image)
    # Without a minimum area the speck is an object of its own.
    assert objects(folder, "components").sample_ids == ["t1#c1", "t1#c2", "t1#c3"]


def test_each_object_gets_its_own_clicks(folder):
    dataset = objects(folder, "components", min_area=10)
    for sample in dataset:
        # The first click is the gt pixel farthest from the gt's border: inside this object.
        click = next_click(sample.gt, np.zeros_like(sample.gt), None, sample.ignore)
        assert click.is_positive and sample.gt[click.y, click.x]
        run = run_sample(RegionGrowing(), sample, max_clicks=3)
        assert all(not sample.ignore[c.y, c.x] for c in run.clicks)  # never on another object


def test_instances_split_touching_objects(folder):
    dataset = objects(folder, "instances", min_area=10)
    assert dataset.sample_ids == ["t1#1", "t1#2", "t1#3"]
    labels = labelled_tile()
    sample = dataset.load("t1#2")
    np.testing.assert_array_equal(sample.gt, labels == 2)
    np.testing.assert_array_equal(sample.ignore, np.isin(labels, (1, 3, 4)))
    assert sample.meta["object_id"] == "2"


def test_minimum_area_in_square_micrometres(folder):
    # At 2 um per pixel, 40 um^2 is 10 pixels: the speck (9 px = 36 um^2) is dropped.
    assert objects(folder, "components", min_area=40, area_unit="um2", mpp=2.0).sample_ids == [
        "t1#c1", "t1#c2"
    ]
    with pytest.raises(ValueError, match="micrometres per pixel"):
        objects(folder, "components", min_area=40, area_unit="um2").sample_ids


def test_bad_object_settings_are_clear_errors(folder):
    with pytest.raises(ValueError, match="object mode must be one of"):
        objects(folder, "blobs")
    with pytest.raises(ValueError, match="min_area applies to the components"):
        objects(folder, "mask", min_area=5)
    other = ObjectDataset(folder, "components")
    with pytest.raises(ValueError, match="no instance labels"):
        ObjectDataset(other, "instances")
