"""Whole-slide images and plain images behind one reader, and the Tile that carries pixels with
their place on the slide.

Coordinates: level-0 pixels at every API boundary, origin at the slide's top-left corner, x to
the right, y down. A ``downsample`` is level-0 pixels per output pixel (1.0 = full resolution);
magnification ``m`` on a slide scanned at objective power ``P`` is downsample ``P / m``, and a
resolution of ``r`` micrometres per pixel is downsample ``r / slide_mpp``.

Slides (SVS, NDPI, MRXS, SCN, tiled TIFF, ...) are read through OpenSlide; PNG, JPEG, BMP and
plain (stripped) TIFF files are decoded with OpenCV or tifffile and held in memory.
"""

from __future__ import annotations

import math
import operator
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import openslide
import tifffile
from PIL import Image

# A pyramid level whose downsample exceeds the requested one by at most this fraction still
# serves the request (scanners store e.g. 4.0001 for a nominal 4x level).
_LEVEL_TOLERANCE = 0.01
_WHITE = (255, 255, 255)
# Saturation (0-255) below which a pixel is never tissue, whatever Otsu says: keeps blank
# glass from being split in two on slides with little tissue.
_MIN_TISSUE_SATURATION = 20

# Plain images are decoded whole into memory; larger ones are refused unless the caller opts
# out (a 389 KB PNG can claim 20000^2 pixels and take 2.7 GB). 2**27 pixels = 384 MiB as RGB.
DEFAULT_MAX_IMAGE_PIXELS = 2**27
MAX_IMAGE_PIXELS_ENV = "HISTOCLICK_MAX_IMAGE_PIXELS"
# read_region reads at most this many level pixels at once (16 MiB as RGBA) and resamples
# chunk by chunk, so a low magnification on a slide without that pyramid level stays bounded.
_MAX_CHUNK_PIXELS = 2**22
# Extensions OpenSlide reads that are never plain images: refusing to decode them as such keeps
# a truncated slide from opening silently without its pyramid and metadata.
_SLIDE_ONLY_SUFFIXES = {".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif"}

PixelLimit = int | None | Literal["env"]

SUPPORTED_FORMATS = (
    "whole-slide images that OpenSlide reads (Aperio .svs/.tif, Hamamatsu .ndpi/.vms/.vmu, "
    "Leica .scn, MIRAX .mrxs, Philips .tiff, Sakura .svslide, Trestle .tif, Ventana .bif, "
    "DICOM, generic tiled TIFF) and plain images (PNG, JPEG, BMP, TIFF)"
)


class SlideError(ValueError):
    """A file that is neither a readable slide nor a readable image."""


@dataclass(frozen=True, eq=False)
class Tile:
    """RGB pixels and where they lie on the slide.

    ``image`` is ``(height, width, 3)`` uint8 RGB. ``origin`` is the level-0 position ``(x, y)``
    of the tile's top-left corner and ``downsample`` the level-0 pixels per tile pixel: tile
    pixel column ``j`` covers level-0 x in ``[origin_x + j * downsample,
    origin_x + (j + 1) * downsample)``, and likewise for rows and y. ``magnification`` is the
    objective magnification the tile represents, when the slide's objective power is known.
    Tiles compare by identity (they hold arrays).
    """

    image: np.ndarray
    origin: tuple[float, float]
    downsample: float
    magnification: float | None = None

    def __post_init__(self) -> None:
        image = self.image
        is_rgb = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
        if not is_rgb or image.dtype != np.uint8:
            raise ValueError(
                f"Tile.image must be a (height, width, 3) uint8 RGB array, got "
                f"{getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}; "
                "use Tile.from_array to convert gray or RGBA images"
            )
        if not self.downsample > 0:
            raise ValueError(f"Tile.downsample must be positive, got {self.downsample}")
        x, y = self.origin
        object.__setattr__(self, "origin", (float(x), float(y)))
        object.__setattr__(self, "downsample", float(self.downsample))
        if self.magnification is not None:
            object.__setattr__(self, "magnification", float(self.magnification))

    @classmethod
    def from_array(cls, image: np.ndarray) -> Tile:
        """Wrap a uint8 image (HxW gray, HxWx3 RGB or HxWx4 RGBA) as a full-resolution tile at (0, 0).

        RGBA is composited over white.
        """
        return cls(_to_rgb(image), (0.0, 0.0), 1.0)

    @property
    def width(self) -> int:
        """Tile width in tile pixels."""
        return self.image.shape[1]

    @property
    def height(self) -> int:
        """Tile height in tile pixels."""
        return self.image.shape[0]

    def to_level0(self, x, y):
        """Map tile pixel coordinates (scalars or arrays; edges, so pixel centres are j + 0.5) to level 0."""
        ox, oy = self.origin
        return ox + x * self.downsample, oy + y * self.downsample

    def to_tile(self, x0, y0):
        """Map level-0 coordinates (scalars or arrays) to tile pixel coordinates (inverse of to_level0)."""
        ox, oy = self.origin
        return (x0 - ox) / self.downsample, (y0 - oy) / self.downsample


def open_slide(path: str | os.PathLike, *, max_image_pixels: PixelLimit = "env") -> Slide:
    """Open a whole-slide image or a plain image file (``path`` may start with ``~``).

    ``max_image_pixels`` bounds what is decoded or read into memory at once: a plain image
    (decoded whole) or one ``read_region`` output. ``"env"`` (default) takes
    ``$HISTOCLICK_MAX_IMAGE_PIXELS`` when set (a number, or ``none``), else
    ``DEFAULT_MAX_IMAGE_PIXELS`` (2**27); ``None`` removes the limit.

    Raises FileNotFoundError when ``path`` does not exist and SlideError (a ValueError) when the
    file is neither a slide OpenSlide opens nor an image OpenCV/tifffile decodes, is truncated
    or corrupt, or exceeds the pixel limit.
    """
    return Slide(path, max_image_pixels=max_image_pixels)


class Slide:
    """A slide (or plain image) with its pyramid and metadata; read regions at any magnification.

    Attributes: ``path``; ``objective_power`` (scan objective, e.g. 40.0, None when unknown);
    ``mpp`` (micrometres per level-0 pixel, mean of x and y, None when unknown); ``properties``
    (the reader's metadata); ``max_image_pixels`` (the pixel limit in force, None for none; see
    ``open_slide``). Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | os.PathLike, *, max_image_pixels: PixelLimit = "env") -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"slide file not found: {self.path}")
        self.max_image_pixels = _pixel_limit(max_image_pixels)
        self._reader = _open_reader(self.path, self.max_image_pixels)
        self.properties: dict[str, str] = dict(self._reader.properties)
        self.objective_power = _positive_float(self.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        mpps = [
            _positive_float(self.properties.get(name))
            for name in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y)
        ]
        known = [m for m in mpps if m is not None]
        self.mpp = sum(known) / len(known) if known else None
        self._background = _parse_colour(self.properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR))

    def __repr__(self) -> str:
        width, height = self.dimensions
        return (
            f"Slide({str(self.path)!r}, {width}x{height}, levels={self.level_count}, "
            f"objective_power={self.objective_power}, mpp={self.mpp})"
        )

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release the file handle (or the in-memory image)."""
        self._reader.close()

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)`` in pixels."""
        return self._reader.dimensions

    @property
    def level_count(self) -> int:
        """Number of pyramid levels (1 for plain images)."""
        return self._reader.level_count

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of every pyramid level, finest first."""
        return tuple(self._reader.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Level-0 pixels per pixel of every pyramid level, finest first."""
        return tuple(self._reader.level_downsamples)

    def downsample_for(
        self, magnification: float | None = None, mpp: float | None = None, downsample: float | None = None
    ) -> float:
        """Level-0 pixels per output pixel for a magnification, a resolution (um/px) or a downsample.

        Give at most one; none means full resolution (1.0). Raises ValueError when the slide lacks
        the metadata to convert, or when the request would need upsampling (finer than level 0).
        """
        requests = {"magnification": magnification, "mpp": mpp, "downsample": downsample}
        given = [name for name, value in requests.items() if value is not None]
        if len(given) > 1:
            raise ValueError(f"pass only one of magnification=, mpp=, downsample= (got {', '.join(given)})")
        if magnification is not None:
            _check_positive("magnification", magnification)
            if self.objective_power is None:
                raise ValueError(
                    f"{self.path.name} has no objective power in its metadata "
                    f"({openslide.PROPERTY_NAME_OBJECTIVE_POWER} is missing), so magnification="
                    f"{magnification:g} cannot be converted; {self._resolution_hint()}"
                )
            if magnification > self.objective_power * (1 + 1e-9):
                raise ValueError(
                    f"magnification={magnification:g} is higher than {self.path.name}'s objective power "
                    f"({self.objective_power:g}x) and histoclick does not upsample; "
                    f"use magnification <= {self.objective_power:g}"
                )
            return self.objective_power / magnification
        if mpp is not None:
            _check_positive("mpp", mpp)
            if self.mpp is None:
                raise ValueError(
                    f"{self.path.name} has no resolution in its metadata ({openslide.PROPERTY_NAME_MPP_X}/"
                    f"{openslide.PROPERTY_NAME_MPP_Y} are missing), so mpp={mpp:g} cannot be converted; "
                    f"{self._resolution_hint()}"
                )
            if mpp < self.mpp * (1 - 1e-9):
                raise ValueError(
                    f"mpp={mpp:g} is finer than {self.path.name}'s resolution ({self.mpp:g} um/px) and "
                    f"histoclick does not upsample; use mpp >= {self.mpp:g}"
                )
            return mpp / self.mpp
        if downsample is not None:
            _check_positive("downsample", downsample)
            if downsample < 1:
                raise ValueError(f"downsample={downsample:g} would upsample; use downsample >= 1")
            return float(downsample)
        return 1.0

    def read_region(
        self,
        x: float,
        y: float,
        width: int,
        height: int,
        magnification: float | None = None,
        mpp: float | None = None,
        downsample: float | None = None,
    ) -> Tile:
        """Read a ``width`` x ``height`` (output pixels) RGB tile whose top-left corner is level-0 ``(x, y)``.

        The resolution comes from ``magnification``, ``mpp`` or ``downsample`` (at most one; see
        ``downsample_for``). ``x`` and ``y`` are rounded to whole level-0 pixels. The tile covers
        level 0 ``[x, x + width * ds) x [y, y + height * ds)`` with ``ds`` the requested downsample,
        recorded exactly in ``Tile.downsample``. Pixels come from the coarsest pyramid level at
        least as fine as requested, reading only the needed region, resampled with
        ``cv2.INTER_AREA`` when the level does not match, in blocks of bounded memory (a low
        magnification on a slide without that level never holds the whole level-0 region).
        Parts outside the slide are background (white unless the slide says otherwise); a region
        entirely outside, or non-finite ``x``/``y``, raises ValueError; an output larger than
        ``max_image_pixels`` raises SlideError; unreadable (corrupt) tile data raises SlideError
        and leaves the slide usable for other regions.
        """
        ds = self.downsample_for(magnification, mpp, downsample)
        width, height = operator.index(width), operator.index(height)
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be at least 1 output pixel, got {width}x{height}")
        if not (math.isfinite(float(x)) and math.isfinite(float(y))):
            raise ValueError(f"x and y must be finite level-0 pixel coordinates, got ({x}, {y})")
        self._check_pixels(width * height, f"a {width}x{height} region")
        x, y = round(float(x)), round(float(y))
        slide_width, slide_height = self.dimensions
        if x >= slide_width or y >= slide_height or x + width * ds <= 0 or y + height * ds <= 0:
            raise ValueError(
                f"region at level-0 ({x}, {y}) of {width}x{height} pixels at downsample {ds:g} lies "
                f"entirely outside {self.path.name} ({slide_width}x{slide_height} level-0 pixels); "
                "pass x, y in level-0 pixels inside the slide"
            )

        level = self._best_level(ds)
        level_ds = self.level_downsamples[level]
        if abs(level_ds - ds) * max(width, height) <= 0.5 * ds:
            # The level matches to within half an output pixel across the tile: no resampling.
            image = self._read_level(level, x, y, width, height)
        else:
            image = self._read_resampled(level, x, y, width, height, ds / level_ds)

        if magnification is None and self.objective_power is not None:
            magnification = self.objective_power / ds
        return Tile(image, (x, y), ds, magnification)

    def thumbnail(self, max_size: int = 1024) -> Tile:
        """The whole slide with its longer side at most ``max_size`` pixels (never upsampled).

        Origin (0, 0); ``downsample`` is exact (level-0 side / thumbnail side for the longer side).
        The last row/column may extend slightly past the slide, filled with background.
        """
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1 pixel, got {max_size}")
        return self._whole_slide(max(1.0, max(self.dimensions) / max_size))

    def tissue_mask(
        self, max_size: int = 1024, *, downsample: float | None = None
    ) -> tuple[np.ndarray, float]:
        """Tissue detected on a low-resolution view of the slide: ``(mask, downsample)``.

        ``mask`` is a bool array over the thumbnail (see ``detect_tissue``); mask pixel
        ``(i, j)`` covers level 0 ``[j * downsample, (j + 1) * downsample)`` in x (rows alike).
        The view is ``thumbnail(max_size)`` unless ``downsample`` is given.
        """
        if downsample is None:
            view = self.thumbnail(max_size)
        else:
            view = self._whole_slide(self.downsample_for(downsample=downsample))
        return detect_tissue(view.image), view.downsample

    def tissue_tiles(
        self,
        tile_size: int,
        magnification: float | None = None,
        mpp: float | None = None,
        min_tissue: float = 0.5,
        *,
        downsample: float | None = None,
    ) -> list[tuple[int, int]]:
        """Level-0 origins ``(x, y)`` of grid tiles that hold at least ``min_tissue`` tissue.

        Tiles are ``tile_size`` output pixels square at the requested resolution (see
        ``downsample_for``), laid on a grid from (0, 0) with a level-0 step of
        ``tile_size * ds`` (origins rounded to whole pixels), in row-major order. Read one with
        ``read_region(x, y, tile_size, tile_size, magnification=...)`` (same resolution argument).
        The tissue fraction counts parts outside the slide as non-tissue.
        """
        if not 0 <= min_tissue <= 1:
            raise ValueError(f"min_tissue is a fraction in [0, 1], got {min_tissue}")
        fractions = self.tissue_fractions(tile_size, magnification, mpp, downsample=downsample)
        return [origin for origin, fraction in fractions.items() if fraction >= min_tissue]

    def tissue_fractions(
        self,
        tile_size: int,
        magnification: float | None = None,
        mpp: float | None = None,
        *,
        downsample: float | None = None,
    ) -> dict[tuple[int, int], float]:
        """Tissue fraction (0 to 1) of every grid tile, keyed by its level-0 origin ``(x, y)``.

        The grid and the order (row-major) are those of :meth:`tissue_tiles`, which keeps the
        tiles at or above its ``min_tissue``.
        """
        tile_size = operator.index(tile_size)
        if tile_size < 1:
            raise ValueError(f"tile_size must be at least 1 pixel, got {tile_size}")
        step = tile_size * self.downsample_for(magnification, mpp, downsample)
        slide_width, slide_height = self.dimensions
        # Detect tissue at thumbnail scale, but at least 8 mask pixels per tile side.
        mask_ds = max(1.0, min(max(slide_width, slide_height) / 1024, step / 8))
        mask, mask_ds = self.tissue_mask(downsample=mask_ds)

        xs = np.round(np.arange(math.ceil(slide_width / step)) * step)
        ys = np.round(np.arange(math.ceil(slide_height / step)) * step)
        # Mask pixels whose centres fall inside each tile: [first, stop) along each axis.
        col0, col1 = (np.ceil(edges / mask_ds - 0.5).astype(int) for edges in (xs, xs + step))
        row0, row1 = (np.ceil(edges / mask_ds - 0.5).astype(int) for edges in (ys, ys + step))
        padded = np.zeros((max(row1[-1], mask.shape[0]), max(col1[-1], mask.shape[1])), np.uint8)
        padded[: mask.shape[0], : mask.shape[1]] = mask
        counts = cv2.integral(padded)
        r0, r1 = row0[:, None], row1[:, None]
        tissue = counts[r1, col1] - counts[r0, col1] - counts[r1, col0] + counts[r0, col0]
        fraction = tissue / ((r1 - r0) * (col1 - col0))
        return {
            (int(x), int(y)): float(fraction[r, c])
            for r, y in enumerate(ys)
            for c, x in enumerate(xs)
        }

    def _whole_slide(self, ds: float) -> Tile:
        """The whole slide at downsample ``ds``, origin (0, 0)."""
        width, height = self.dimensions
        # The epsilon keeps e.g. 2048 / (2048 / 1024) from rounding up to 1025 pixels.
        size = (math.ceil(width / ds - 1e-9), math.ceil(height / ds - 1e-9))
        return self.read_region(0, 0, *size, downsample=ds)

    def _best_level(self, ds: float) -> int:
        """Index of the coarsest level whose downsample does not exceed ``ds`` (within tolerance)."""
        limit = ds * (1 + _LEVEL_TOLERANCE)
        return max(i for i, level_ds in enumerate(self.level_downsamples) if i == 0 or level_ds <= limit)

    def _read_resampled(self, level: int, x: int, y: int, width: int, height: int, scale: float) -> np.ndarray:
        """``width`` x ``height`` output pixels from ``level``, ``scale`` level pixels per output
        pixel, read and shrunk (``cv2.INTER_AREA``) in blocks of at most ``_MAX_CHUNK_PIXELS``
        level pixels. Blocks meet on output-pixel edges, so with an integer ``scale`` the result
        equals shrinking the whole region at once."""
        level_ds = self.level_downsamples[level]
        rows = max(1, int(_MAX_CHUNK_PIXELS**0.5 / scale))
        columns = max(1, int(_MAX_CHUNK_PIXELS / (scale * scale * rows)))
        image = np.empty((height, width, 3), np.uint8)
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            y0, y1 = round(top * scale), max(round(top * scale) + 1, round(bottom * scale))
            for left in range(0, width, columns):
                right = min(width, left + columns)
                x0, x1 = round(left * scale), max(round(left * scale) + 1, round(right * scale))
                pixels = self._read_level(
                    level, x + round(x0 * level_ds), y + round(y0 * level_ds), x1 - x0, y1 - y0
                )
                image[top:bottom, left:right] = cv2.resize(
                    pixels, (right - left, bottom - top), interpolation=cv2.INTER_AREA
                )
        return image

    def _read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB pixels of ``level`` starting at level-0 ``(x, y)``, ``width`` x ``height`` level pixels."""
        try:
            rgba = np.asarray(self._reader.read_region((x, y), level, (width, height)))
        except openslide.OpenSlideError as error:
            # OpenSlide handles stay broken after an error: reopen so other regions still read.
            self._reader = _open_reader(self.path, self.max_image_pixels)
            raise SlideError(
                f"{self.path}: cannot read the {width}x{height} region at level-0 ({x}, {y}), level "
                f"{level} ({error}); the slide's tile data is corrupt there, so copy or export the "
                "file again (other regions can still be read)"
            ) from None
        return _over_background(rgba, self._background)

    def _check_pixels(self, pixels: int, what: str) -> None:
        if self.max_image_pixels is not None and pixels > self.max_image_pixels:
            raise SlideError(
                f"{what} of {self.path.name} has {pixels:,} pixels, more than the limit of "
                f"{self.max_image_pixels:,}; {_LIMIT_HINT}"
            )

    def _resolution_hint(self) -> str:
        if self.mpp is not None:
            return f"pass mpp= instead (this slide has {self.mpp:g} um/px) or downsample="
        if self.objective_power is not None:
            return (
                f"pass magnification= instead (this slide was scanned at {self.objective_power:g}x) "
                "or downsample="
            )
        return "pass downsample= (level-0 pixels per output pixel) instead"


def detect_tissue(image: np.ndarray) -> np.ndarray:
    """Bool tissue mask of an RGB uint8 image: Otsu threshold on HSV saturation, then opening
    and closing with a 5-pixel disc to remove specks and fill pinholes."""
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1]
    otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (saturation > max(otsu, _MIN_TISSUE_SATURATION)).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc).astype(bool)


_LIMIT_HINT = (
    f"pass max_image_pixels=None (or a larger number) to open_slide, or set ${MAX_IMAGE_PIXELS_ENV}"
    "=none, if you trust the file and have the memory"
)


def _pixel_limit(value: PixelLimit) -> int | None:
    """The pixel limit an ``open_slide(max_image_pixels=...)`` argument stands for."""
    if value == "env":
        text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_IMAGE_PIXELS
        if text.lower() == "none":
            return None
        try:
            value = int(float(text))
        except ValueError:
            raise ValueError(
                f"${MAX_IMAGE_PIXELS_ENV}={text!r} is not a number of pixels; set it to e.g. "
                f"{DEFAULT_MAX_IMAGE_PIXELS} or to 'none' to remove the limit"
            ) from None
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"max_image_pixels must be a positive integer, None or 'env', got {value!r}")
    return value


def _open_reader(path: Path, max_pixels: int | None) -> openslide.AbstractSlide:
    """An OpenSlide reader for slides, or an in-memory ImageSlide for plain images."""
    vendor = openslide.OpenSlide.detect_format(path)
    if vendor is not None:
        try:
            return openslide.OpenSlide(path)
        except openslide.OpenSlideError as error:
            raise SlideError(
                f"{path} looks like a {vendor} slide but OpenSlide cannot read it ({error}); "
                "the file may be truncated or corrupt"
            ) from error
    description = _tiff_description(path)
    if path.suffix.lower() in _SLIDE_ONLY_SUFFIXES or description.startswith("Aperio"):
        raise SlideError(
            f"{path} looks like a whole-slide image ({'Aperio' if description else path.suffix}) but OpenSlide "
            "cannot read it: the file is probably truncated or corrupt (an interrupted copy or "
            f"download); copy it again from the scanner or the original source. Supported: {SUPPORTED_FORMATS}"
        )
    pixels_in_header = _header_pixels(path)
    if max_pixels is not None and pixels_in_header is not None and pixels_in_header > max_pixels:
        size = "more than PIL's limit of" if math.isinf(pixels_in_header) else f"{pixels_in_header:,}"
        raise SlideError(
            f"{path} is a plain image of {size} pixels, more than the limit of {max_pixels:,} "
            f"that is decoded into memory (a possible decompression bomb); {_LIMIT_HINT}"
        )
    try:
        pixels = _read_image(path)
    except SlideError:
        raise
    except Exception as error:  # OpenCV, tifffile and imagecodecs raise their own types
        raise SlideError(
            f"{path} cannot be decoded ({type(error).__name__}: {str(error).strip()[:200]}); it is "
            "probably truncated or corrupt: copy it again"
        ) from None
    if pixels is None:
        raise SlideError(
            f"{path} ({path.stat().st_size} bytes) is neither a slide OpenSlide can open nor an image "
            f"OpenCV or tifffile can decode; it may be corrupt or in another format. Supported: "
            f"{SUPPORTED_FORMATS}"
        )
    return openslide.ImageSlide(Image.fromarray(pixels))


def _tiff_description(path: Path) -> str:
    """The first page's ImageDescription of a TIFF file ('' when none or not a TIFF)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages.first.description or ""
    except Exception:  # not a TIFF, or a header too damaged to say
        return ""


def _header_pixels(path: Path) -> float | None:
    """Pixel count that a plain image's header claims, read without decoding: ``inf`` when
    PIL itself refuses the size, None when neither tifffile nor PIL understands the header."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return page.imagewidth * page.imagelength
    except Exception:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.width * image.height
    except Image.DecompressionBombError:
        return math.inf
    except Exception:
        return None


def _read_image(path: Path) -> np.ndarray | None:
    """RGB uint8 pixels of a plain image file, or None when OpenCV and tifffile both fail to decode it."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is not None and pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if pixels is None:
        try:
            pixels = tifffile.imread(path, key=0)
        except (tifffile.TiffFileError, ValueError, OSError):
            return None
    if pixels.dtype == np.uint16:
        pixels = (pixels / 257).round().astype(np.uint8)
    try:
        return _to_rgb(pixels)
    except ValueError as error:
        raise SlideError(f"{path} decodes to an image histoclick cannot use: {error}") from error


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB from uint8 gray (H, W) or (H, W, 1), RGB, or RGBA (composited over white)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 image, got {image.dtype}; scale it to 0-255 and convert with "
            ".astype(np.uint8)"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return _over_background(image, _WHITE)
    raise ValueError(
        f"expected a gray (H, W), RGB (H, W, 3) or RGBA (H, W, 4) image, got shape {image.shape}"
    )


def _over_background(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Composite straight (non-premultiplied) RGBA uint8 over an opaque background colour."""
    alpha = rgba[..., 3:]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    alpha = alpha.astype(np.uint16)
    rgb = rgba[..., :3].astype(np.uint16) * alpha + np.asarray(background, np.uint16) * (255 - alpha)
    return ((rgb + 127) // 255).astype(np.uint8)


def _parse_colour(value: str | None) -> tuple[int, int, int]:
    """``RRGGBB`` hex (OpenSlide's background-color property) to RGB; white when absent or malformed."""
    try:
        return tuple(bytes.fromhex(value)) if value and len(value) == 6 else _WHITE
    except ValueError:
        return _WHITE


def _positive_float(value: str | None) -> float | None:
    """A metadata value as a positive float, or None when absent, unparsable or not positive."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
