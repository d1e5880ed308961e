"""Scores of the click protocol: IoU per click, NoC, NoF, mIoU@k and seconds per click, and the
metrics the study lacked: boundary F-score, area under the mIoU curve, harmful-click rate,
bootstrap intervals over slides and a paired test between methods.

IoU, NoC, NoF, mIoU@k and SPC follow RITM's ``isegm/inference/utils.py`` (shared by FocalClick
and SimpleClick), so those numbers are comparable with the published tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import integrate, ndimage, stats

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


def boundary_f(
    gt: np.ndarray, pred: np.ndarray, tolerance_px: float, ignore: np.ndarray | None = None
) -> float:
    """Boundary F-score (Csurka et al. 2013; DAVIS's F): the harmonic mean of boundary precision
    (predicted boundary pixels within ``tolerance_px`` of the true boundary) and recall (true
    boundary pixels within ``tolerance_px`` of the predicted one).

    A boundary pixel is a mask pixel with a 4-neighbour outside the mask (the image border is
    outside); distances are Euclidean, in tile pixels; boundary pixels in ``ignore`` do not
    count. 1.0 when neither mask has a boundary pixel, 0.0 when only one has.
    """
    gt_edge, pred_edge = _boundary(gt), _boundary(pred)
    if ignore is not None:
        valid = ~np.asarray(ignore, dtype=bool)
        gt_edge, pred_edge = gt_edge & valid, pred_edge & valid
    if not gt_edge.any() and not pred_edge.any():
        return 1.0
    if not gt_edge.any() or not pred_edge.any():
        return 0.0
    precision = np.mean(ndimage.distance_transform_edt(~gt_edge)[pred_edge] <= tolerance_px)
    recall = np.mean(ndimage.distance_transform_edt(~pred_edge)[gt_edge] <= tolerance_px)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _boundary(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    inner = ndimage.binary_erosion(np.pad(mask, 1), structure=ndimage.generate_binary_structure(2, 1))
    return mask & ~inner[1:-1, 1:-1]


def miou_auc(curve: Sequence[float] | np.ndarray) -> float:
    """Area under the mIoU-vs-clicks curve (k = 1..K), normalised to [0, 1]: the trapezoid
    area divided by K - 1 (for K = 1, the single mIoU)."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.size == 1:
        return float(curve[0])
    return float(integrate.trapezoid(curve) / (curve.size - 1))


def harmful_click_rate(ious_per_sample: Sequence[Sequence[float]]) -> float:
    """Fraction of clicks after the first whose IoU (float32) is lower than before the click;
    NaN when no sample has a second click."""
    drops = followers = 0
    for ious in ious_per_sample:
        ious = np.asarray(ious, dtype=np.float32)
        drops += int(np.count_nonzero(ious[1:] < ious[:-1]))
        followers += max(ious.size - 1, 0)
    return drops / followers if followers else float("nan")


def slide_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[str],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-sample ``values``, resampling whole
    groups (slides) with replacement, since tiles of one slide are not independent.

    Returns ``(low, high)``; NaNs with fewer than two groups. Fixed ``seed``: reproducible.
    """
    frame = pd.DataFrame({"value": np.asarray(values, dtype=np.float64), "group": list(groups)})
    per_group = frame.groupby("group", sort=True)["value"].agg(["sum", "count"])
    if len(per_group) < 2:
        return float("nan"), float("nan")
    result = stats.bootstrap(
        (per_group["sum"].to_numpy(), per_group["count"].to_numpy()),
        lambda sums, counts, axis: sums.sum(axis=axis) / counts.sum(axis=axis),
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of scipy's Wilcoxon signed-rank test on paired per-sample values
    (e.g. NoC of two methods on the same samples); 1.0 when every pair is equal, NaN with no
    pair."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return float("nan")
    if np.all(a == b):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)
