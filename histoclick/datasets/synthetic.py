"""Deterministic synthetic H&E-like tiles and pyramidal slides, so tests and demos need no downloads.

Images show pink eosin stroma with scattered small hematoxylin nuclei, white background (no
tissue) near the edges, and a few smooth irregular tumour regions with denser, larger, darker
nuclei and a slightly more purple cytoplasm. Every generator takes a seed and draws from its own
``numpy.random.Generator``: the same seed always gives the same arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tifffile

# RGB colours (0-255).
_BACKGROUND = np.array([243.0, 242.0, 240.0], np.float32)
_STROMA = np.array([236.0, 162.0, 196.0], np.float32)
_TUMOUR_CYTOPLASM = np.array([214.0, 150.0, 204.0], np.float32)
_STROMA_NUCLEUS = np.array([118.0, 70.0, 158.0], np.float32)
_TUMOUR_NUCLEUS = np.array([72.0, 38.0, 124.0], np.float32)

# Nuclei per pixel and nucleus radius range (pixels).
_STROMA_DENSITY, _STROMA_RADIUS = 1 / 900, (2.0, 3.5)
_TUMOUR_DENSITY, _TUMOUR_RADIUS = 1 / 170, (4.0, 6.5)
_TUMOUR_FRACTION_OF_TISSUE = 0.3


def make_tile(seed: int = 0, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Return a synthetic H&E tile and its tumour mask.

    Returns ``(image, mask)``: ``image`` is ``(size, size, 3)`` uint8 RGB, ``mask`` is
    ``(size, size)`` bool, True on tumour. The mask is never empty and never the whole tile.
    """
    return _render(np.random.default_rng(seed), size, size)


def write_sample(root: str | Path, n: int = 8, size: int = 512, seed: int = 0) -> Path:
    """Write ``n`` synthetic tiles as a folder dataset and return ``root``.

    Layout (same as ``camelyon16_mini``): ``root/images/NNNNN.png`` (RGB) and
    ``root/masks/NNNNN.png`` (single channel uint8, 255 = tumour, 0 = background). Tile ``i``
    is ``make_tile(seed + i, size)``.
    """
    root = Path(root).expanduser()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, mask = make_tile(seed + i, size)
        name = f"{i:05d}.png"
        cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / name), mask.astype(np.uint8) * 255)
    return root


def write_pyramidal_slide(
    path: str | Path,
    width: int = 4096,
    height: int = 3072,
    downsamples: Sequence[int] = (1, 4, 16),
    objective_power: float | None = 40.0,
    mpp: float | None = 0.25,
    seed: int = 0,
    tile_size: int = 256,
) -> np.ndarray:
    """Write a synthetic H&E slide as an Aperio-style pyramidal TIFF; return its tumour mask.

    The mask is ``(height, width)`` bool in level-0 pixels. See ``write_pyramidal_tiff`` for the
    file layout and the constraints on sizes.
    """
    image, mask = _render(np.random.default_rng(seed), height, width)
    write_pyramidal_tiff(path, image, downsamples, objective_power, mpp, tile_size)
    return mask


def write_pyramidal_tiff(
    path: str | Path,
    image: np.ndarray,
    downsamples: Sequence[int] = (1, 4, 16),
    objective_power: float | None = 40.0,
    mpp: float | None = 0.25,
    tile_size: int = 256,
    compression: str = "deflate",
) -> Path:
    """Write an RGB uint8 image as a tiled pyramidal TIFF that OpenSlide opens as an Aperio slide.

    One tiled page per level, level ``i`` being ``image`` shrunk ``downsamples[i]`` times with
    ``cv2.INTER_AREA``; reduced pages are marked with subfiletype 1. The first page's
    ImageDescription carries ``AppMag`` (objective power) and ``MPP`` (micrometres per level-0
    pixel) unless they are None. ``downsamples`` must start at 1 and increase, and both image
    sides must be divisible by every downsample so that OpenSlide reports them exactly.
    ``tile_size`` must be a multiple of 16 (TIFF rule). The default deflate compression is
    lossless; ``compression="jpeg"`` gives smaller, lossy files.
    """
    path = Path(path).expanduser()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (height, width, 3) uint8 RGB, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    downsamples = [int(d) for d in downsamples]
    if downsamples[0] != 1 or any(b <= a for a, b in zip(downsamples, downsamples[1:])):
        raise ValueError(f"downsamples must start at 1 and increase, got {downsamples}")
    bad = [d for d in downsamples if width % d or height % d]
    if bad:
        raise ValueError(
            f"image size {width}x{height} is not divisible by downsamples {bad}; "
            f"choose width and height that are multiples of {max(downsamples)}"
        )
    if tile_size <= 0 or tile_size % 16:
        raise ValueError(f"tile_size must be a positive multiple of 16, got {tile_size}")

    description = f"Aperio Image Library v12.0.15\r\n{width}x{height} ({tile_size}x{tile_size}) RGB"
    if objective_power is not None:
        description += f"|AppMag = {objective_power:g}"
    if mpp is not None:
        description += f"|MPP = {mpp:g}"

    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=image.nbytes > 2**31) as tif:
        for i, ds in enumerate(downsamples):
            level = image if ds == 1 else cv2.resize(
                image, (width // ds, height // ds), interpolation=cv2.INTER_AREA
            )
            tif.write(
                level,
                photometric="rgb",
                tile=(tile_size, tile_size),
                compression=compression,
                description=description if i == 0 else None,
                subfiletype=0 if i == 0 else 1,
                # Without metadata=None tifffile writes its own JSON description first and
                # OpenSlide no longer sees an Aperio slide.
                metadata=None,
            )
    return path


def _render(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one H&E-like image of the given size and its tumour mask."""
    # Tissue: a smooth random field pushed up away from the borders, so white background
    # appears in patches along the edges (and rarely as holes inside).
    rows = np.minimum(np.arange(height), np.arange(height)[::-1]) / (0.5 * height)
    cols = np.minimum(np.arange(width), np.arange(width)[::-1]) / (0.5 * width)
    border = np.clip(np.minimum.outer(rows, cols) / 0.3, 0.0, 1.0).astype(np.float32)
    tissue_score = _smooth_field(rng, height, width, cells=4) + 2.5 * border
    tissue_alpha = np.clip((tissue_score - 0.8) / 0.2, 0.0, 1.0)
    tissue = tissue_alpha > 0.5

    # Tumour: a coarse field with fine wiggles, thresholded to cover a fixed share of tissue.
    tumour_score = _smooth_field(rng, height, width, cells=3) + 0.25 * _smooth_field(
        rng, height, width, cells=14
    )
    threshold = float(np.quantile(tumour_score[tissue], 1.0 - _TUMOUR_FRACTION_OF_TISSUE))
    tumour_weight = np.clip((tumour_score - threshold) / 0.08 + 0.5, 0.0, 1.0)
    mask = tissue & (tumour_weight > 0.5)

    # Cytoplasm/stroma with streaky fibre texture (stroma) or blotchy texture (tumour).
    fibres = cv2.GaussianBlur(rng.standard_normal((height, width), np.float32), (0, 0), 6.0, sigmaY=1.0)
    blotches = cv2.GaussianBlur(rng.standard_normal((height, width), np.float32), (0, 0), 2.0)
    texture = 1.0 + 0.35 * (fibres * (1 - tumour_weight) + 0.5 * blotches * tumour_weight)
    colour = _mix(_STROMA, _TUMOUR_CYTOPLASM, tumour_weight) * texture[..., None]

    # Nuclei: random centres (denser in tumour); every pixel takes the radius of its nearest
    # centre, with a little noise on the distance for irregular outlines.
    density = np.where(mask, _TUMOUR_DENSITY, _STROMA_DENSITY) * tissue
    centres = rng.random((height, width), np.float32) < density
    distance, labels = cv2.distanceTransformWithLabels(
        (~centres).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    in_tumour = np.concatenate([[False], mask[centres]])  # labels start at 1, row-major
    radius = np.where(
        in_tumour,
        rng.uniform(*_TUMOUR_RADIUS, in_tumour.size),
        rng.uniform(*_STROMA_RADIUS, in_tumour.size),
    ).astype(np.float32)
    edge_noise = cv2.GaussianBlur(rng.standard_normal((height, width), np.float32), (0, 0), 1.0)
    nucleus_alpha = np.clip(radius[labels] - distance + 1.5 * edge_noise, 0.0, 1.0)
    chromatin = 1.0 + 0.12 * rng.standard_normal((height, width), np.float32)
    nucleus_colour = _mix(_STROMA_NUCLEUS, _TUMOUR_NUCLEUS, in_tumour[labels].astype(np.float32))
    colour = _mix(colour, nucleus_colour * chromatin[..., None], nucleus_alpha)

    image = _mix(_BACKGROUND, colour, tissue_alpha)
    image += 3.0 * rng.standard_normal(image.shape, np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field with about ``cells`` bumps along the long side."""
    scale = max(height, width) / cells
    coarse = rng.standard_normal((round(height / scale) + 2, round(width / scale) + 2)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-pixel blend ``a * (1 - weight) + b * weight``; colours broadcast over (H, W, 3)."""
    return a + (b - a) * weight[..., None]
