"""IoU, NoC, NoF, mIoU@k, SPC and the per-sample loop, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from histoclick.clicks import Click
from histoclick.evaluation import Prediction, Sample, iou, miou_curve, nof, noc, run_sample, seconds_per_click


def test_iou_counts_only_non_ignored_pixels_and_is_float32():
    gt = np.zeros((4, 4), bool)
    gt[:2, :] = True  # 8 pixels
    pred = np.zeros((4, 4), bool)
    pred[:3, :2] = True  # 6 pixels, 4 of them in gt
    assert iou(gt, pred) == np.float32(4 / 10)
    assert iou(gt, pred).dtype == np.float32
    ignore = np.zeros((4, 4), bool)
    ignore[2, :] = True  # hides the 2 false positives of row 2
    assert iou(gt, pred, ignore) == np.float32(4 / 8)


def test_iou_of_two_empty_masks_is_an_error_not_a_division_by_zero():
    with pytest.raises(ValueError, match="empty"):
        iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool))


def test_noc_compares_in_float32():
    # 9 of 10 pixels: the stored IoU is float32(0.9) = 0.89999998 < 0.9 in float64, yet it counts.
    gt = np.zeros(10, bool)
    gt[:] = True
    pred = gt.copy()
    pred[0] = False
    stored = iou(gt[None], pred[None])
    assert float(stored) < 0.9
    assert noc([0.5, stored], 0.90) == 2
    assert noc(np.array([0.5, 0.8999, 0.95], np.float32), 0.90) == 3
    assert noc([0.5, 0.8999], 0.90, max_clicks=20) == 20


def test_noc_is_the_first_click_reaching_the_threshold():
    ious = np.array([0.7, 0.86, 0.81, 0.91], np.float32)
    assert [noc(ious, t) for t in (0.80, 0.85, 0.90)] == [2, 2, 4]
    assert noc(ious, 0.95, max_clicks=7) == 7


def test_nof_counts_samples_at_max_clicks():
    assert nof([1, 20, 5, 20], max_clicks=20) == 2
    assert nof([3, 4], max_clicks=20) == 0
    # Reaching the threshold exactly at the last click counts as a failure too (RITM's >=20).
    assert nof([noc(np.r_[np.zeros(19), 0.95], 0.9)], 20) == 1


def test_miou_curve_pads_early_stopped_samples_with_their_last_iou():
    curve = miou_curve([[0.5, 0.7], [0.6, 0.8, 0.9]], max_clicks=4)
    np.testing.assert_allclose(curve, [0.55, 0.75, 0.8, 0.8], rtol=1e-6)
    assert np.isnan(miou_curve([], max_clicks=3)).all()


def test_seconds_per_click_never_divides_by_zero():
    assert seconds_per_click(3.0, 6) == 0.5
    assert np.isnan(seconds_per_click(0.0, 0))


class ClickedSquares:
    """A real (if simple) method: predicts a 3x3 square of probability 0.5 around each positive
    click, minus squares around negative ones; reports a fixed model time."""

    name = "squares"

    def set_image(self, image):
        self.shape = image.shape[:2]
        self.calls = []

    def predict(self, clicks, prev_probs):
        self.calls.append((list(clicks), prev_probs))
        probs = np.zeros(self.shape, np.float32)
        for c in clicks:
            probs[max(0, c.y - 1) : c.y + 2, max(0, c.x - 1) : c.x + 2] = 0.5 if c.is_positive else 0.0
        return Prediction(probs, 0.25)


def test_run_sample_follows_ritm_loop():
    gt = np.zeros((9, 9), bool)
    gt[1:4, 1:4] = True  # 3x3 square: the first click at its centre (2, 2) covers it exactly
    gt[6:8, 6:8] = True  # 2x2 square, reached by later clicks
    sample = Sample("s", np.zeros((9, 9, 3), np.uint8), gt)
    method = ClickedSquares()
    run = run_sample(method, sample, max_clicks=3)
    assert run.clicks[0] == Click(2, 2, True)
    # 0.5 > 0.49: the square counts as predicted. IoU 9/13, then the 2x2 square gets a click.
    assert run.ious[0] == np.float32(9 / 13)
    assert run.ious.dtype == np.float32
    assert run.clicks[1] == Click(6, 6, True)
    assert len(run.clicks) == 3 and len(set(run.clicks)) == 3
    assert method.calls[0][1] is None  # no previous prediction before the first click
    assert method.calls[1][1] is not None
    assert list(run.model_seconds) == [0.25, 0.25, 0.25]
    assert (run.click_seconds >= 0).all() and run.set_image_seconds >= 0


def test_run_sample_stops_at_target_iou():
    gt = np.zeros((9, 9), bool)
    gt[3:6, 3:6] = True
    run = run_sample(ClickedSquares(), Sample("s", np.zeros((9, 9, 3), np.uint8), gt), 20, 0.9)
    assert len(run.ious) == 1 and run.ious[0] == 1.0


def test_run_sample_refuses_empty_gt():
    sample = Sample("empty", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="empty ground truth"):
        run_sample(ClickedSquares(), sample)


def test_boundary_f_against_hand_counted_boundaries():
    from histoclick.evaluation import boundary_f

    gt = np.zeros((12, 16), bool)
    gt[0:10, 0:10] = True  # boundary: 36 pixels (the image border counts as outside)
    pred = np.zeros_like(gt)
    pred[0:10, 3:13] = True  # the same square 3 px to the right
    # Tolerance 0: only the 7 + 7 shared pixels of the top and bottom rows match, both ways.
    assert boundary_f(gt, pred, 0) == pytest.approx(14 / 36)
    # Tolerance 2.9: pred's column 12 (10 px, 3 px from gt's column 9) and rows 3..6 of its
    # column 3 (3 px from gt's column 0 and from the top/bottom rows) miss: 22 of 36, both ways.
    assert boundary_f(gt, pred, 2.9) == pytest.approx(22 / 36)
    assert boundary_f(gt, pred, 3) == 1.0
    assert boundary_f(gt, np.zeros_like(gt), 3) == 0.0
    assert boundary_f(np.zeros_like(gt), np.zeros_like(gt), 3) == 1.0
    ignore = np.zeros_like(gt)
    ignore[:, 11:] = True  # hides pred's column 12 and (0, 11), (9, 11): 20 of 24 match now
    precision, recall = 20 / 24, 22 / 36
    assert boundary_f(gt, pred, 2.9, ignore) == pytest.approx(2 * precision * recall / (precision + recall))


def test_miou_auc_and_harmful_click_rate():
    from histoclick.evaluation import harmful_click_rate, miou_auc

    assert miou_auc([0.5, 0.7, 0.9]) == pytest.approx(((0.5 + 0.7) / 2 + (0.7 + 0.9) / 2) / 2)
    assert miou_auc([0.4]) == pytest.approx(0.4)
    assert harmful_click_rate([[0.5, 0.4, 0.6], [0.9]]) == 0.5  # one drop in two later clicks
    assert harmful_click_rate([[0.5, 0.5, 0.6]]) == 0.0  # an unchanged IoU is not harmful
    assert np.isnan(harmful_click_rate([[0.9], [0.8]]))


def test_bootstrap_resamples_slides_not_tiles():
    from histoclick.evaluation import slide_bootstrap_ci

    # Slide A: three tiles of NoC 1; slide B: two tiles of NoC 5. Resampling the two slides gives
    # means 1 (A, A: p = 1/4), 13/5 (A, B) or 5 (B, B: p = 1/4): the 95% interval is [1, 5].
    values, slides = [1, 1, 1, 5, 5], ["A", "A", "A", "B", "B"]
    assert slide_bootstrap_ci(values, slides) == (1.0, 5.0)
    assert slide_bootstrap_ci(values, slides) == slide_bootstrap_ci(values, slides)  # fixed seed
    # Resampling the five tiles instead would never give 1.0 exactly so often: a narrower interval.
    low, high = slide_bootstrap_ci(values, [f"tile {i}" for i in range(5)])
    assert 1.0 <= low < high <= 5.0 and (low, high) != (1.0, 5.0)
    assert all(np.isnan(slide_bootstrap_ci(values, ["A"] * 5)))


def test_paired_wilcoxon_exact_p_values():
    from histoclick.evaluation import paired_wilcoxon

    better = np.arange(1, 11)
    worse = better + np.arange(1, 11)  # ten positive differences of distinct sizes
    assert paired_wilcoxon(worse, better) == pytest.approx(2 / 2**10)  # exact two-sided
    assert paired_wilcoxon(better, better) == 1.0
    assert np.isnan(paired_wilcoxon([], []))
