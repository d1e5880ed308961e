"""Weight-free baselines: colour region growing (QuPath's wand in spirit) and click-seeded GrabCut.

Both need nothing downloaded, are deterministic, and follow :class:`~histoclick.evaluation.
protocol.Method`. Clicks are in tile pixels (row ``y``, column ``x``).
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from histoclick.clicks import Click
from histoclick.evaluation.protocol import Prediction


class RegionGrowing:
    """Grow a region of similar colour from every click, in the spirit of QuPath's wand tool.

    The image is smoothed with a Gaussian (``sigma`` pixels) and each click flood-fills (OpenCV
    ``floodFill``, fixed range, 8-connected) the pixels whose colour lies within ``sensitivity``
    standard deviations of the clicked pixel's colour, channel by channel (at least one Lab unit),
    inside a square window around the click (side ``window`` times the image's shorter side);
    the standard deviations are those of the smoothed window. Colours are CIE Lab.

    Where grown regions overlap, a pixel follows the click whose seed colour is nearest (in
    tolerance units; the later click on a tie), so a negative click carves its region out of a
    positive one without erasing pixels that look more like the positive seed. Output
    probabilities are 0 or 1.
    """

    name = "region_growing"

    def __init__(self, sensitivity: float = 2.0, sigma: float = 8.0, window: float = 0.5) -> None:
        self.sensitivity = float(sensitivity)
        self.sigma = float(sigma)
        self.window = float(window)
        self._lab: np.ndarray | None = None
        self._grown: dict[tuple[int, int], np.ndarray] = {}

    def set_image(self, image: np.ndarray) -> None:
        rgb = _check_rgb(image).astype(np.float32) / 255.0
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
        self._lab = cv2.GaussianBlur(lab, (0, 0), self.sigma) if self.sigma > 0 else lab
        self._grown = {}

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        if self._lab is None:
            raise RuntimeError("call set_image(image) before predict(clicks, prev_probs)")
        start = time.perf_counter()
        height, width = self._lab.shape[:2]
        best = np.full((height, width), np.inf, dtype=np.float32)
        foreground = np.zeros((height, width), dtype=bool)
        for click in clicks:
            distance = self._grow(int(click.y), int(click.x))
            closer = np.isfinite(distance) & (distance <= best)
            best[closer] = distance[closer]
            foreground[closer] = click.is_positive
        return Prediction(foreground.astype(np.float32), time.perf_counter() - start)

    def _grow(self, y: int, x: int) -> np.ndarray:
        """Colour distance to the seed (in tolerances) inside the grown region, inf outside it."""
        if (y, x) not in self._grown:
            height, width = self._lab.shape[:2]
            half = max(1, round(self.window * min(height, width) / 2))
            y0, x0 = max(0, y - half), max(0, x - half)
            window = np.ascontiguousarray(self._lab[y0 : y + half + 1, x0 : x + half + 1])
            # At least one Lab unit (about a just-noticeable difference) on every channel.
            tolerance = np.maximum(self.sensitivity * window.reshape(-1, 3).std(0), 1.0)
            filled = np.zeros((window.shape[0] + 2, window.shape[1] + 2), np.uint8)
            flags = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
            bounds = tuple(float(t) for t in tolerance)
            cv2.floodFill(window, filled, (x - x0, y - y0), 0, bounds, bounds, flags)
            seed = window[y - y0, x - x0]
            local = np.abs(window - seed) / tolerance
            distance = np.full((height, width), np.inf, dtype=np.float32)
            distance[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]] = np.where(
                filled[1:-1, 1:-1] > 0, local.max(axis=2), np.inf
            )
            self._grown[(y, x)] = distance
        return self._grown[(y, x)]


class GrabCut:
    """OpenCV GrabCut seeded by the clicks, on a copy downscaled to at most ``max_side`` pixels
    and smoothed with a Gaussian of ``sigma`` pixels (which tames H&E texture; GrabCut's graph
    cut slows down steeply with image size, hence the small default).

    Initial labels: probable background everywhere, probable foreground where the previous
    prediction was foreground; then, click by click (later clicks win), probable foreground in
    a disk of ``probable_radius`` (fraction of the shorter side) around a positive click and
    probable background in a disk of half that radius around a negative one, so a negative
    click takes back what the previous prediction spilled over; finally definite foreground /
    background in disks of ``sure_radius`` (fraction of the shorter side, at least 1 pixel).
    ``iterations`` rounds of GrabCut; OpenCV's random generator is re-seeded before each call,
    so results are deterministic. The foreground is upscaled bilinearly to soft probabilities.
    """

    name = "grabcut"

    def __init__(
        self,
        iterations: int = 2,
        max_side: int = 192,
        sure_radius: float = 0.01,
        probable_radius: float = 0.25,
        sigma: float = 2.0,
    ) -> None:
        self.iterations = int(iterations)
        self.sigma = float(sigma)
        self.max_side = int(max_side)
        self.sure_radius = float(sure_radius)
        self.probable_radius = float(probable_radius)
        self._image: np.ndarray | None = None
        self._shape: tuple[int, int] = (0, 0)
        self._scale = 1.0

    def set_image(self, image: np.ndarray) -> None:
        image = _check_rgb(image)
        self._shape = image.shape[:2]
        self._scale = min(1.0, self.max_side / max(self._shape))
        if self._scale < 1.0:
            size = (round(image.shape[1] * self._scale), round(image.shape[0] * self._scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if self.sigma > 0:
            image = cv2.GaussianBlur(image, (0, 0), self.sigma)
        # GrabCut reads 8-bit 3-channel images in OpenCV's BGR order.
        self._image = np.ascontiguousarray(image[:, :, ::-1])

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        if self._image is None:
            raise RuntimeError("call set_image(image) before predict(clicks, prev_probs)")
        start = time.perf_counter()
        small_h, small_w = self._image.shape[:2]
        if not any(click.is_positive for click in clicks):
            return Prediction(np.zeros(self._shape, np.float32), time.perf_counter() - start)
        labels = np.full((small_h, small_w), cv2.GC_PR_BGD, dtype=np.uint8)
        if prev_probs is not None:
            previous = cv2.resize(prev_probs.astype(np.float32), (small_w, small_h)) > 0.5
            labels[previous] = cv2.GC_PR_FGD
        side = min(small_h, small_w)
        sure = max(1, round(self.sure_radius * side))
        probable = max(sure, round(self.probable_radius * side))
        points = [
            (min(small_w - 1, int(c.x * self._scale)), min(small_h - 1, int(c.y * self._scale)))
            for c in clicks
        ]
        for (x, y), click in zip(points, clicks):
            if click.is_positive:
                cv2.circle(labels, (x, y), probable, cv2.GC_PR_FGD, -1)
            else:
                cv2.circle(labels, (x, y), max(sure, probable // 2), cv2.GC_PR_BGD, -1)
        for (x, y), click in zip(points, clicks):
            cv2.circle(labels, (x, y), sure, cv2.GC_FGD if click.is_positive else cv2.GC_BGD, -1)
        if not np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
            return Prediction(np.ones(self._shape, np.float32), time.perf_counter() - start)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        cv2.grabCut(
            self._image, labels, None, bgd_model, fgd_model, self.iterations, cv2.GC_INIT_WITH_MASK
        )
        foreground = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
        height, width = self._shape
        if foreground.shape != (height, width):
            foreground = cv2.resize(foreground, (width, height), interpolation=cv2.INTER_LINEAR)
        return Prediction(np.clip(foreground, 0.0, 1.0), time.perf_counter() - start)


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB image of shape (height, width, 3) and dtype uint8, got shape "
            f"{image.shape} and dtype {image.dtype}; convert with histoclick Tile.from_array"
        )
    return image
