"""The simulated user: where the next click goes, RITM's rule in exact arithmetic.

RITM, FocalClick and SimpleClick share ``isegm/inference/clicker.py``; this is its rule on boolean
arrays in tile pixels (row ``y``, column ``x``, origin top-left), returning histoclick's
:class:`~histoclick.clicks.Click`. Their code compares OpenCV's float32 distances, whose rounding
noise decides exact ties differently with the array's offset and from one process to the next;
here distances are compared as exact integer squared distances, so the answer is unique.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from histoclick.clicks import Click


def next_click(
    gt: np.ndarray,
    pred: np.ndarray,
    not_clicked: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
) -> Click:
    """Place the next click at the centre of the larger error region.

    The rule (RITM's ``Clicker._get_next_click`` in exact arithmetic):

    1. False negatives ``gt & ~pred`` and false positives ``~gt & pred``, both outside ``ignore``,
       are each padded with a one-pixel ring of background (the image border is a boundary).
    2. Each error pixel's distance is the exact Euclidean distance, in tile pixels, to the nearest
       pixel outside its error map; already clicked pixels get distance 0.
    3. The click is positive when the largest false-negative distance is strictly larger than the
       largest false-positive one (a tie, including 0 = 0, gives a negative click).
    4. It goes to the first pixel in row-major order (smallest ``y``, then smallest ``x``) whose
       distance equals the chosen map's maximum exactly; ``(0, 0)`` when no unclicked error pixel
       is left (RITM's ``np.where`` on an all-zero map).

    Distances are compared as integer squared distances, so ties are exact and the answer does
    not depend on the process, the platform or the crop used to compute them.

    Args:
        gt: ``(height, width)`` ground truth, non-zero = object.
        pred: ``(height, width)`` current prediction, non-zero = object (all False before the
            first click).
        not_clicked: ``(height, width)`` bool, False at pixels already clicked; None = no clicks
            yet.
        ignore: ``(height, width)`` bool, True where the pixel is in neither error map.

    Returns:
        ``Click(y, x, is_positive)`` with integer tile-pixel indices.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(
            f"gt and pred must be 2-D arrays of one shape, got {gt.shape} and {pred.shape}"
        )
    fn, fp = error_regions(gt, pred, None if ignore is None else ~np.asarray(ignore, dtype=bool))
    if not_clicked is not None:
        not_clicked = np.asarray(not_clicked, dtype=bool)
    fn_max, fn_at = _farthest_pixel(fn, not_clicked)
    fp_max, fp_at = _farthest_pixel(fp, not_clicked)
    is_positive = fn_max > fp_max
    at = fn_at if is_positive else fp_at
    if at is None:
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


def squared_distances(region: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance (int64, tile pixels squared) from each pixel of
    ``region`` to the nearest pixel outside it, the image border counting as outside; 0 outside
    the region.

    SciPy's exact feature transform gives each pixel's nearest background pixel; the squared
    distance is then computed from the integer offsets, without any rounding.
    """
    padded = np.pad(np.asarray(region, dtype=bool), 1)
    nearest = ndimage.distance_transform_edt(
        padded, return_distances=False, return_indices=True
    )
    rows, cols = np.indices(padded.shape)
    squared = (nearest[0] - rows).astype(np.int64) ** 2 + (nearest[1] - cols).astype(np.int64) ** 2
    return squared[1:-1, 1:-1]


def _farthest_pixel(
    region: np.ndarray, not_clicked: np.ndarray | None
) -> tuple[int, tuple[int, int] | None]:
    """The largest squared distance (see :func:`squared_distances`) over the region's unclicked
    pixels and the first pixel in row-major order that attains it; ``(0, None)`` when there is
    no such pixel.

    The transform runs on the region's bounding box only: every pixel outside the box is outside
    the region, and the padding ring holds one at least as close as any of them (clamp it to the
    ring), so the integer distances are exactly those of the whole padded image.
    """
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return 0, None
    cols = np.flatnonzero(region.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    squared = squared_distances(region[top:bottom, left:right])
    if not_clicked is not None:
        squared = squared * not_clicked[top:bottom, left:right]
    first = int(np.argmax(squared))  # argmax returns the first maximum in row-major order
    row, col = divmod(first, squared.shape[1])
    largest = int(squared[row, col])
    if largest == 0:
        return 0, None
    return largest, (int(top + row), int(left + col))
