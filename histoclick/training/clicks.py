"""The simulated user during training: RITM's rule, randomised.

Evaluation clicks go to the single farthest-from-boundary error pixel
(:func:`histoclick.evaluation.clicker.next_click`); training clicks, as in RITM's
``get_next_points``, go to a random pixel of the larger error region whose distance to the
region's boundary exceeds half the largest such distance. Coordinates are pixel indices of
whatever frame ``gt`` is given in (training uses SAM's 256x256 low-resolution mask frame).
"""

from __future__ import annotations

import cv2
import numpy as np

from histoclick.clicks import Click
from histoclick.evaluation.clicker import error_regions


def next_training_click(
    gt: np.ndarray,
    pred: np.ndarray,
    rng: np.random.Generator,
    valid: np.ndarray | None = None,
) -> Click | None:
    """Draw the next click from the errors of ``pred`` against ``gt``.

    Args:
        gt: ``(H, W)`` ground truth, non-zero = object.
        pred: ``(H, W)`` current prediction, non-zero = object (all zero before the first click,
            which makes the first click a positive one inside the object).
        rng: the random generator that picks among the candidate pixels.
        valid: ``(H, W)`` bool, False where pixels are neither object nor error (padding).

    Returns:
        ``Click(y, x, is_positive)`` (integer pixel indices): positive in the false negatives when
        their largest boundary distance is strictly larger than the false positives', negative
        otherwise; None when the prediction has no error left.
    """
    fn, fp = error_regions(gt, pred, valid)
    fn_dt, fp_dt = _boundary_distance(fn), _boundary_distance(fp)
    fn_max, fp_max = float(fn_dt.max()), float(fp_dt.max())
    if max(fn_max, fp_max) == 0:
        return None
    is_positive = fn_max > fp_max
    distance = fn_dt if is_positive else fp_dt
    ys, xs = np.nonzero(distance > max(fn_max, fp_max) / 2.0)
    pick = int(rng.integers(len(ys)))
    return Click(y=int(ys[pick]), x=int(xs[pick]), is_positive=is_positive)


def _boundary_distance(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest pixel outside it, the image border counting
    as outside; RITM's training code uses OpenCV's 5x5 approximation of the L2 distance."""
    padded = np.pad(region, 1).astype(np.uint8)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
