"""The simulated user: where the next click goes, exactly as RITM, FocalClick and SimpleClick do it.

All three projects share ``isegm/inference/clicker.py``; this is the same rule on boolean arrays
in tile pixels (row ``y``, column ``x``, origin top-left), returning histoclick's
:class:`~histoclick.clicks.Click`.
"""

from __future__ import annotations

import cv2
import numpy as np

from histoclick.clicks import Click


def next_click(
    gt: np.ndarray,
    pred: np.ndarray,
    not_clicked: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
) -> Click:
    """Place the next click at the centre of the larger error region.

    Args:
        gt: ``(height, width)`` ground truth, non-zero = object.
        pred: ``(height, width)`` current prediction, non-zero = object (all False before the
            first click).
        not_clicked: ``(height, width)`` bool, False at pixels already clicked (they get distance
            0 and are never chosen again while another error pixel is left); None = no clicks yet.
        ignore: ``(height, width)`` bool, True where the pixel is in neither error map.

    Returns:
        ``Click(y, x, is_positive)`` with integer pixel indices: positive on a false negative
        when the farthest-from-boundary false-negative pixel is strictly farther than the
        farthest false-positive one (a tie gives a negative click); the first pixel in
        row-major order that attains the chosen maximum.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(
            f"gt and pred must be 2-D arrays of one shape, got {gt.shape} and {pred.shape}"
        )
    fn, fp = error_regions(gt, pred, None if ignore is None else ~np.asarray(ignore, dtype=bool))
    fn_max, fn_at = _farthest_pixel(fn, not_clicked)
    fp_max, fp_at = _farthest_pixel(fp, not_clicked)
    is_positive = bool(fn_max > fp_max)
    at = fn_at if is_positive else fp_at
    if at is None:
        # No unclicked error pixel at all: every distance is 0 and RITM's np.where(dt == max)
        # picks the first pixel of the image.
        at = (0, 0)
    return Click(y=int(at[0]), x=int(at[1]), is_positive=is_positive)


def error_regions(
    gt: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """False negatives ``gt & ~pred`` and false positives ``~gt & pred`` (bool), both limited to
    ``valid`` pixels when given."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    fn, fp = gt & ~pred, ~gt & pred
    if valid is not None:
        fn &= valid
        fp &= valid
    return fn, fp


def _farthest_pixel(
    region: np.ndarray, not_clicked: np.ndarray | None
) -> tuple[float, tuple[int, int] | None]:
    """The largest float32 distance from a region pixel to the nearest pixel outside the region
    (the image border counts as outside), over pixels not clicked yet, and the first pixel in
    row-major order that attains it; ``(0.0, None)`` when no such pixel has a positive distance.

    The distance transform runs on the region's bounding box plus a one-pixel ring of zeros
    (as RITM pads the whole image): every pixel outside the box is outside the region, and the
    ring holds a pixel at least as close as any of them, so the distances are exactly those of
    the whole padded image, at a fraction of the cost.
    """
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return 0.0, None
    cols = np.flatnonzero(region.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    padded = np.pad(region[top:bottom, left:right], 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 0)[1:-1, 1:-1]
    if not_clicked is not None:
        distance = distance * not_clicked[top:bottom, left:right]
    first = int(np.argmax(distance))  # argmax returns the first maximum in row-major order
    row, col = divmod(first, distance.shape[1])
    largest = float(distance[row, col])
    if largest == 0.0:
        return 0.0, None
    return largest, (top + row, left + col)
