"""The simulated user during training, as RITM trains: random first clicks, then error clicks.

First clicks follow RITM's ``MultiPointSampler`` (``isegm/data/points_sampler.py``) with the
settings of its training scripts (``num_max_points=24``, ``prob_gamma=0.8``): ``1 + k`` positive
points (``k`` drawn with probabilities proportional to ``0.8**k``, ``k < 24``) uniformly in the
object (eroded by 3 iterations of a 3x3 kernel with probability 0.9, when more than 10 pixels
remain) and ``j`` negative points (``j <= 24``, same law), each drawn from the background (0.1),
"other objects" (0.4; with one target object RITM uses the background) or a border ring around
the object as wide as ``ceil(0.1 * sqrt(area))`` (0.5). :class:`FirstClickSampler` is that
sampler for one target object (RITM's object merging and hierarchy do not apply).

Later clicks, as in RITM's ``get_next_points``, go to a random pixel of the larger error region
whose distance to the region's boundary exceeds half the largest such distance (evaluation
clicks go to the single farthest pixel: :func:`histoclick.evaluation.clicker.next_click`).
Coordinates are pixel indices of whatever frame ``gt`` is given in (training uses SAM's 256x256
low-resolution mask frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


FIRST_CLICKS = ("multipoint", "single")


@dataclass(frozen=True)
class FirstClickSampler:
    """RITM's ``MultiPointSampler`` for one target object (see the module docstring).

    max_points: RITM's ``num_max_points`` (most positive, and most negative, first points).
    gamma: RITM's ``prob_gamma``: ``P(k extra points)`` is proportional to ``gamma**k``.
    erode_prob, erode_iters: RITM's ``positive_erode_prob`` and ``positive_erode_iters``.
    expand_ratio: RITM's ``expand_ratio`` (border ring width over the square root of the area).
    negative_probs: probabilities of RITM's negative strategies ``bg``, ``other``, ``border``.
    """

    max_points: int = 24
    gamma: float = 0.8
    erode_prob: float = 0.9
    erode_iters: int = 3
    expand_ratio: float = 0.1
    negative_probs: tuple[float, float, float] = (0.1, 0.4, 0.5)

    def __post_init__(self) -> None:
        if self.max_points < 1 or not 0 < self.gamma <= 1:
            raise ValueError(f"max_points must be >= 1 and gamma in (0, 1], got {self.max_points}, {self.gamma}")
        if not math.isclose(sum(self.negative_probs), 1.0):
            raise ValueError(f"negative_probs must sum to 1, got {self.negative_probs}")

    def sample(self, gt: np.ndarray, rng: np.random.Generator, valid: np.ndarray | None = None) -> list[Click]:
        """First clicks for ``gt`` (``(H, W)``, non-zero = object, not empty): positives first,
        then negatives, drawn with ``rng``; negatives only where ``valid`` (default: anywhere)."""
        gt = np.asarray(gt, dtype=bool)
        valid = np.ones_like(gt) if valid is None else np.asarray(valid, dtype=bool)
        positive = gt
        if rng.random() < self.erode_prob:
            kernel = np.ones((3, 3), np.uint8)
            eroded = cv2.erode(gt.astype(np.uint8), kernel, iterations=self.erode_iters).astype(bool)
            positive = eroded if eroded.sum() > 10 else gt
        background = ~gt & valid
        radius = math.ceil(self.expand_ratio * math.sqrt(gt.sum()))
        dilated = cv2.dilate(gt.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=radius).astype(bool)
        strategies = (background, background, dilated & background)  # bg, other (= bg), border
        n_positive = 1 + rng.choice(self.max_points, p=_geometric(self.max_points, self.gamma))
        n_negative = rng.choice(self.max_points + 1, p=_geometric(self.max_points + 1, self.gamma))
        clicks = [_uniform(positive, rng, True) for _ in range(n_positive)]
        for _ in range(n_negative):
            clicks.append(_uniform(strategies[rng.choice(3, p=self.negative_probs)], rng, False))
        return [c for c in clicks if c is not None]


def _geometric(count: int, gamma: float) -> np.ndarray:
    """RITM's ``generate_probs``: ``gamma**k`` for ``k < count``, normalised."""
    weights = gamma ** np.arange(count, dtype=np.float64)
    return weights / weights.sum()


def _uniform(region: np.ndarray, rng: np.random.Generator, is_positive: bool) -> Click | None:
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return None
    pick = int(rng.integers(len(ys)))
    return Click(y=int(ys[pick]), x=int(xs[pick]), is_positive=is_positive)
