"""The weight-free baselines, the isegm adapter and (slow, vit_tiny) the SAM method."""

from __future__ import annotations

import numpy as np
import pytest

from histoclick.clicks import Click
from histoclick.datasets.synthetic import make_tile
from histoclick.evaluation import GrabCut, IsegmMethod, RegionGrowing, Sample, iou, run_sample

WHITE, GREY, GREY2 = (255, 255, 255), (100, 100, 100), (108, 108, 108)


def stripes_image():
    """64x64 white image with two touching grey squares of nearly equal shade."""
    image = np.full((64, 64, 3), WHITE, np.uint8)
    image[8:24, 8:24] = GREY
    image[8:24, 24:40] = GREY2
    return image


def test_region_growing_fills_the_clicked_colour_region():
    method = RegionGrowing(sigma=0, window=1.0)
    method.set_image(stripes_image())
    probs = method.predict([Click(16, 16, True)], None).probs
    expected = np.zeros((64, 64), bool)
    expected[8:24, 8:40] = True  # both greys lie within the tolerance of the seed
    np.testing.assert_array_equal(probs > 0.5, expected)
    assert probs.dtype == np.float32


def test_negative_click_carves_out_the_pixels_closer_to_its_seed():
    method = RegionGrowing(sigma=0, window=1.0)
    method.set_image(stripes_image())
    probs = method.predict([Click(16, 16, True), Click(16, 32, False)], None).probs
    expected = np.zeros((64, 64), bool)
    expected[8:24, 8:24] = True
    np.testing.assert_array_equal(probs > 0.5, expected)


def synthetic_sample(seed=0, size=128):
    image, mask = make_tile(seed, size)
    return Sample(f"tile{seed}", image, mask)


@pytest.mark.parametrize("method_type", [RegionGrowing, GrabCut])
def test_baselines_are_deterministic_and_useful(method_type):
    sample = synthetic_sample()
    first = run_sample(method_type(), sample, max_clicks=4)
    second = run_sample(method_type(), sample, max_clicks=4)
    assert first.clicks == second.clicks
    np.testing.assert_array_equal(first.ious, second.ious)
    np.testing.assert_array_equal(first.probs, second.probs)
    assert first.ious.max() > 0.5  # much better than nothing on a clear synthetic tumour
    assert first.probs.shape == sample.gt.shape and first.probs.dtype == np.float32


def test_grabcut_segments_a_dark_disk_from_one_click():
    import cv2

    image = np.full((200, 300, 3), 235, np.uint8)
    cv2.circle(image, (150, 100), 50, (90, 40, 120), -1)
    gt = np.zeros((200, 300), np.uint8)
    cv2.circle(gt, (150, 100), 50, 1, -1)
    method = GrabCut()
    method.set_image(image)
    probs = method.predict([Click(100, 150, True)], None).probs
    assert probs.shape == (200, 300)
    assert iou(gt > 0, probs > 0.49) > 0.85


def test_baselines_reject_non_rgb_images():
    with pytest.raises(ValueError, match="uint8"):
        RegionGrowing().set_image(np.zeros((8, 8), np.float32))


# The isegm adapter runs the peers' real code in tests/test_peers.py.


def test_isegm_adapter_explains_a_missing_isegm():
    method = IsegmMethod(object(), clicker_module="histoclick_no_such_module.clicker")
    with pytest.raises(ImportError, match="RITM, FocalClick or SimpleClick"):
        method.predict([Click(1, 1, True)], None)


@pytest.mark.slow
def test_sam_vit_tiny_method_runs_the_protocol(tmp_path):
    from histoclick import load_model
    from histoclick.evaluation import SamMethod

    method = SamMethod(load_model("vit_tiny", device="cpu"))
    assert method.name == "sam:vit_tiny@random-seed-0"
    sample = synthetic_sample(seed=1, size=128)
    run = run_sample(method, sample, max_clicks=2)
    assert len(run.ious) == 2 and run.probs.dtype == np.float32
    assert 0.0 <= run.probs.min() and run.probs.max() <= 1.0
    assert (run.model_seconds > 0).all()
    # A new click sequence on the same image replays every click instead of appending.
    replayed = method.predict([run.clicks[0]], None)
    method.set_image(sample.image)
    fresh = method.predict([run.clicks[0]], None)
    np.testing.assert_array_equal(replayed.probs, fresh.probs)
