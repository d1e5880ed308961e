"""next_click against hand-computed cases (RITM's clicker rule)."""

from __future__ import annotations

import numpy as np
import pytest

from histoclick.clicks import Click
from histoclick.evaluation import next_click


def square(shape, top, left, size):
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_first_click_lands_on_the_gt_pixel_farthest_from_its_boundary():
    # 5x5 square at rows 2-6, cols 3-7: only its centre is 3 pixels from the outside.
    gt = square((10, 10), 2, 3, 5)
    assert next_click(gt, np.zeros_like(gt)) == Click(y=4, x=5, is_positive=True)


def test_equal_error_regions_give_a_negative_click():
    gt = square((12, 12), 1, 1, 3)  # missed: false negative, max distance 2 at (2, 2)
    pred = square((12, 12), 7, 7, 3)  # wrong: false positive, max distance 2 at (8, 8)
    assert next_click(gt, pred) == Click(y=8, x=8, is_positive=False)


def test_larger_false_negative_wins_over_smaller_false_positive():
    gt = square((12, 12), 1, 1, 5)  # max distance 3 at (3, 3)
    pred = square((12, 12), 8, 8, 3)  # max distance 2
    assert next_click(gt, pred) == Click(y=3, x=3, is_positive=True)


def test_image_border_counts_as_boundary():
    # gt fills the top 5 rows and touches three borders. With the padding, the farthest pixels
    # are 3 from the border/boundary: row 2, columns 2..7; the first in row-major order is (2, 2).
    # (Without the padding OpenCV treats the border as far away and would pick row 0.)
    gt = np.zeros((10, 10), dtype=bool)
    gt[:5, :] = True
    assert next_click(gt, np.zeros_like(gt)) == Click(y=2, x=2, is_positive=True)


def test_clicked_pixels_are_not_chosen_again():
    gt = square((10, 10), 2, 3, 5)
    not_clicked = np.ones(gt.shape, dtype=bool)
    not_clicked[4, 5] = False  # the centre was clicked already
    # The next largest distance, 2, is first reached at (3, 4) in row-major order.
    assert next_click(gt, np.zeros_like(gt), not_clicked) == Click(y=3, x=4, is_positive=True)


def test_ignored_pixels_are_in_neither_error_map():
    gt = square((16, 16), 0, 0, 9) | square((16, 16), 12, 12, 3)
    ignore = square((16, 16), 0, 0, 10)  # hides the big square
    assert next_click(gt, np.zeros_like(gt), ignore=ignore) == Click(y=13, x=13, is_positive=True)
    # False positives: a big one inside the ignored region (would win with distance 5) and a
    # small one outside it (distance 2 at its centre (13, 2)).
    gt_small = square((16, 16), 12, 12, 3)
    pred = gt_small | square((16, 16), 1, 1, 9) | square((16, 16), 12, 1, 3)
    assert next_click(gt_small, pred) == Click(y=5, x=5, is_positive=False)
    assert next_click(gt_small, pred, ignore=ignore) == Click(y=13, x=2, is_positive=False)


def test_perfect_prediction_gives_a_negative_click_at_the_first_pixel():
    # No error anywhere: both maxima are 0, so (tie) a negative click at the first pixel.
    gt = square((6, 6), 1, 1, 3)
    assert next_click(gt, gt) == Click(y=0, x=0, is_positive=False)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="one shape"):
        next_click(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def ritm_reference(gt, pred, not_clicked, ignore):
    """The rule of RITM's clicker as issue 3 states it, written plainly over the whole padded image
    (no bounding-box shortcut): the reference for next_click's faster version."""
    import cv2

    valid = ~ignore
    fn = np.pad(gt & ~pred & valid, ((1, 1), (1, 1)), "constant")
    fp = np.pad(~gt & pred & valid, ((1, 1), (1, 1)), "constant")
    fn_dt = cv2.distanceTransform(fn.astype(np.uint8), cv2.DIST_L2, 0)[1:-1, 1:-1] * not_clicked
    fp_dt = cv2.distanceTransform(fp.astype(np.uint8), cv2.DIST_L2, 0)[1:-1, 1:-1] * not_clicked
    fn_max, fp_max = np.max(fn_dt), np.max(fp_dt)
    is_positive = fn_max > fp_max
    ys, xs = np.where(fn_dt == fn_max) if is_positive else np.where(fp_dt == fp_max)
    return Click(y=int(ys[0]), x=int(xs[0]), is_positive=bool(is_positive))


def test_matches_ritm_reference_on_random_masks():
    import cv2

    rng = np.random.default_rng(0)
    for i in range(200):
        shape = tuple(rng.integers(3, 40, size=2))
        blobs = [
            cv2.GaussianBlur(rng.random(shape, np.float32), (0, 0), float(rng.uniform(0.5, 3)))
            for _ in range(3)
        ]
        gt, pred = blobs[0] > np.median(blobs[0]), blobs[1] > rng.uniform(0.3, 0.7)
        ignore = blobs[2] > rng.uniform(0.6, 1.0)
        not_clicked = rng.random(shape) > 0.05
        if i % 20 == 0:
            pred = gt.copy()  # no error left: the fallback click
        expected = ritm_reference(gt, pred, not_clicked, ignore)
        assert next_click(gt, pred, not_clicked, ignore) == expected
