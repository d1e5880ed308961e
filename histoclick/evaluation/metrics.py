"""Scores of the click protocol: IoU per click, NoC, NoF, mIoU@k and seconds per click.

Definitions follow RITM's ``isegm/inference/utils.py`` (shared by FocalClick and SimpleClick),
so the numbers are comparable with the published tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Probability above which a pixel counts as predicted object (RITM's ``pred_thr``).
PRED_THRESHOLD = 0.49


def iou(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> np.float32:
    """Intersection over union of two ``(height, width)`` masks over the non-ignored pixels.

    Returned as float32, the precision in which RITM stores and compares IoUs. The union must
    not be empty: evaluation skips samples whose gt is empty.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ignore is None:
        intersection = np.count_nonzero(gt & pred)
        union = np.count_nonzero(gt | pred)
    else:
        valid = ~np.asarray(ignore, dtype=bool)
        intersection = np.count_nonzero(gt & pred & valid)
        union = np.count_nonzero((gt | pred) & valid)
    if union == 0:
        raise ValueError(
            "IoU is undefined: ground truth and prediction are both empty over the non-ignored "
            "pixels; skip samples with an empty ground truth mask"
        )
    return np.float32(intersection / union)


def noc(ious: Sequence[float] | np.ndarray, thr: float, max_clicks: int = 20) -> int:
    """Number of clicks: 1-based index of the first IoU >= ``thr``, else ``max_clicks``.

    The comparison is made in float32 (an IoU stored as ``float32(0.9)`` reaches 0.90).
    """
    reached = np.asarray(ious, dtype=np.float32) >= np.float32(thr)
    return int(np.argmax(reached)) + 1 if reached.any() else int(max_clicks)


def nof(nocs: Sequence[int] | np.ndarray, max_clicks: int = 20) -> int:
    """Number of failures: how many samples have NoC equal to ``max_clicks`` (RITM's ``>=20``)."""
    return int(np.count_nonzero(np.asarray(nocs) == max_clicks))


def miou_curve(ious_per_sample: Sequence[Sequence[float]], max_clicks: int = 20) -> np.ndarray:
    """Mean IoU after each click k = 1..max_clicks, float64 array of length ``max_clicks``.

    A sample that stopped early (target IoU reached) keeps its last IoU for the remaining
    clicks. An empty list of samples gives NaNs.
    """
    curves = np.full((len(ious_per_sample), max_clicks), np.nan)
    for row, ious in zip(curves, ious_per_sample):
        ious = np.asarray(ious, dtype=np.float32)[:max_clicks]
        if ious.size == 0:
            raise ValueError("a sample has no IoU: every evaluated sample gets at least one click")
        row[: ious.size] = ious
        row[ious.size :] = ious[-1]
    if len(curves) == 0:
        return np.full(max_clicks, np.nan)
    return curves.mean(axis=0)


def seconds_per_click(seconds: float, n_clicks: int) -> float:
    """Seconds divided by clicks; NaN when no click was run."""
    return float(seconds) / n_clicks if n_clicks else float("nan")
