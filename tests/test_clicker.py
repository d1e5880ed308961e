"""next_click: hand-computed cases, a plain whole-image statement of RITM's rule in exact
arithmetic (brute force), RITM's own clicker, fresh processes and a hypothesis fuzz."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

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


RITM_CLICKER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "ritm" / "isegm" / "inference" / "clicker.py"


def exact_rule(gt, pred, not_clicked=None, ignore=None):
    """RITM's rule stated plainly over the whole padded image, in exact integers (brute force:
    every error pixel against every background pixel of the padded map; no crop, no scipy)."""
    valid = np.ones(gt.shape, bool) if ignore is None else ~ignore
    maps = []
    for region in (gt & ~pred & valid, ~gt & pred & valid):
        background = np.argwhere(~np.pad(region, 1)) - 1  # image coordinates of the padded map
        squared = np.zeros(gt.shape, np.int64)
        for y, x in np.argwhere(region):
            squared[y, x] = ((background - (y, x)) ** 2).sum(axis=1).min()
        maps.append(squared if not_clicked is None else squared * not_clicked)
    fn, fp = maps
    is_positive = fn.max() > fp.max()
    chosen = fn if is_positive else fp
    ys, xs = np.nonzero(chosen == chosen.max())  # row-major order; all pixels when max is 0
    return Click(y=int(ys[0]), x=int(xs[0]), is_positive=bool(is_positive))


def disc(shape, cy, cx, r2, x_weight=1):
    yy, xx = np.indices(shape)
    return (yy - cy) ** 2 + x_weight * (xx - cx) ** 2 <= r2


# A disc with a small ellipse predicted inside it: the false-negative ring has several pixels
# exactly 10 px (squared 100) from its boundary. OpenCV's float32 distances ranked (11, 12)
# first; the first exact maximum in row-major order is (10, 12).
TIE_GT = disc((31, 20), 15, 12, 149)
TIE_PRED = disc((31, 20), 15, 3, 11, x_weight=2)


def test_exact_ties_go_to_the_first_pixel_in_row_major_order():
    assert exact_rule(TIE_GT, TIE_PRED) == Click(y=10, x=12, is_positive=True)
    assert next_click(TIE_GT, TIE_PRED) == Click(y=10, x=12, is_positive=True)


def test_symmetric_shapes_tie_exactly_and_the_first_maximum_wins():
    # A plus sign: its four arms' ends are symmetric, and its centre is the unique maximum once
    # clicked away; then the four points at distance 2 on the arms tie exactly.
    gt = np.zeros((21, 21), bool)
    gt[8:13, 2:19] = True
    gt[2:19, 8:13] = True
    assert next_click(gt, np.zeros_like(gt)) == exact_rule(gt, np.zeros_like(gt))
    not_clicked = np.ones_like(gt)
    first = next_click(gt, np.zeros_like(gt))
    not_clicked[first.y, first.x] = False
    assert next_click(gt, np.zeros_like(gt), not_clicked) == exact_rule(gt, np.zeros_like(gt), not_clicked)
    # Equal false-negative and false-positive squares: exact tie, so negative.
    gt2, pred2 = square((20, 20), 1, 1, 6), square((20, 20), 12, 12, 6)
    assert next_click(gt2, pred2) == Click(y=14, x=14, is_positive=False)


@pytest.mark.parametrize("offset", [(0, 0), (1, 0), (0, 3), (7, 5), (13, 29)])
def test_the_click_moves_with_the_masks(offset):
    # Exact integer distances make the bounding-box crop translation-invariant.
    dy, dx = offset
    shape = (TIE_GT.shape[0] + 14, TIE_GT.shape[1] + 30)
    gt, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    gt[dy : dy + TIE_GT.shape[0], dx : dx + TIE_GT.shape[1]] = TIE_GT
    pred[dy : dy + TIE_GT.shape[0], dx : dx + TIE_GT.shape[1]] = TIE_PRED
    assert next_click(gt, pred) == Click(y=10 + dy, x=12 + dx, is_positive=True)


def random_case(rng, max_side=40):
    import cv2

    shape = tuple(int(s) for s in rng.integers(3, max_side, size=2))
    blobs = [
        cv2.GaussianBlur(rng.random(shape, np.float32), (0, 0), float(rng.uniform(0.5, 3)))
        for _ in range(3)
    ]
    gt, pred = blobs[0] > np.median(blobs[0]), blobs[1] > rng.uniform(0.3, 0.7)
    ignore = blobs[2] > rng.uniform(0.6, 1.0)
    not_clicked = rng.random(shape) > 0.05
    return gt, pred, not_clicked, ignore


def test_matches_the_exact_rule_on_random_masks_and_discs():
    rng = np.random.default_rng(0)
    for i in range(150):
        gt, pred, not_clicked, ignore = random_case(rng)
        if i % 20 == 0:
            pred = gt.copy()  # no error left: the fallback click
        assert next_click(gt, pred, not_clicked, ignore) == exact_rule(gt, pred, not_clicked, ignore)
    for _ in range(150):  # discs and ellipses with integer centres: many exact ties
        shape = tuple(int(s) for s in rng.integers(8, 32, size=2))
        gt = disc(shape, *rng.integers(0, shape), rng.integers(4, 150))
        pred = disc(shape, *rng.integers(0, shape), rng.integers(4, 150), x_weight=2)
        assert next_click(gt, pred) == exact_rule(gt, pred)


def _ritm_clicker():
    if not RITM_CLICKER.is_file():
        pytest.skip(f"needs RITM's clicker at {RITM_CLICKER} (../shared/peers)")
    spec = importlib.util.spec_from_file_location("ritm_inference_clicker", RITM_CLICKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equals_ritms_own_clicker_wherever_its_float_answer_is_unambiguous():
    ritm = _ritm_clicker()
    rng = np.random.default_rng(1)
    compared = 0
    for _ in range(300):
        gt, pred, not_clicked, ignore = random_case(rng)
        gt_mask = np.where(ignore, -1, gt.astype(np.int32))  # RITM's ignore label is -1
        clicker = ritm.Clicker(gt_mask=gt_mask)
        clicker.not_clicked_map = not_clicked.copy()
        theirs = clicker._get_next_click(pred)
        # Unambiguous: positive/negative decided by a margin, the chosen maximum unique by one.
        fn = np.pad(gt & ~pred & ~ignore, 1).astype(np.uint8)
        fp = np.pad(~gt & pred & ~ignore, 1).astype(np.uint8)
        import cv2

        dts = [cv2.distanceTransform(m, cv2.DIST_L2, 0)[1:-1, 1:-1] * not_clicked for m in (fn, fp)]
        chosen = np.sort(dts[0 if theirs.is_positive else 1], axis=None)
        if abs(dts[0].max() - dts[1].max()) < 1e-3 or chosen[-1] == 0 or chosen[-1] - chosen[-2] < 1e-3:
            continue
        compared += 1
        ours = next_click(gt, pred, not_clicked, ignore)
        assert ours == Click(y=int(theirs.coords[0]), x=int(theirs.coords[1]), is_positive=bool(theirs.is_positive))
    assert compared > 100  # most random cases have a unique maximum


def test_one_answer_in_every_fresh_process():
    code = (
        "import numpy as np; from histoclick.evaluation import next_click; "
        "yy, xx = np.indices((31, 20)); gt = (yy - 15) ** 2 + (xx - 12) ** 2 <= 149; "
        "pred = (yy - 15) ** 2 + 2 * (xx - 3) ** 2 <= 11; "
        "big = np.zeros((600, 700), bool); big[300:331, 400:420] = gt; bp = np.zeros_like(big); "
        "bp[300:331, 400:420] = pred; print(next_click(gt, pred), next_click(big, bp))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    answers = {p.communicate(timeout=120)[0] for p in processes}
    assert all(p.returncode == 0 for p in processes)
    assert answers == {
        "Click(y=10, x=12, is_positive=True) Click(y=310, x=412, is_positive=True)\n"
    }


masks = arrays(bool, st.tuples(st.integers(1, 14), st.integers(1, 14)))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_fuzz_against_the_exact_rule(data):
    gt = data.draw(masks)
    same_shape = arrays(bool, gt.shape)
    pred, not_clicked, ignore = data.draw(same_shape), data.draw(same_shape), data.draw(same_shape)
    assert next_click(gt, pred, ~not_clicked, ignore) == exact_rule(gt, pred, ~not_clicked, ignore)
