"""PAIP 2019 (liver cancer, Aperio SVS): samples around tumour regions at x5 by default.

Per case ``<id>.svs`` with either its Aperio ImageScope XML ``<id>.xml`` (``Annotations >
Annotation`` with ``Id`` 1 = whole tumour, 2 = viable tumour ``> Regions > Region`` with
``NegativeROA`` 0 = area, 1 = hole ``> Vertices > Vertex X Y``, level-0 pixels) or its mask TIFFs
``<id>_whole.tif`` / ``<id>_viable.tif`` (level-0 size, non-zero = tumour).

Known data issues handled here: case 01_01_0107's whole and viable TIFFs are swapped (read
swapped back); a case id found more than once under the root (PAIP 2019's two rescans of
01_01_0111) is dropped, as is a slide without its annotation, each logged and listed in
``PaipDataset.dropped``; where a case has both an XML layer and its TIFF, the two are compared
(:func:`layer_agreement`) and a disagreement is a warning or, when gross, an error.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
import tifffile
from shapely.geometry import MultiPolygon, Polygon

from histoclick.datasets.slide_tiles import SlideProtocol, SlideTiles
from histoclick.geometry import as_multipolygon, geometry_to_mask, mask_to_geometry
from histoclick.slides import Tile

LAYER_IDS = {"whole": "1", "viable": "2"}
# Cases whose whole and viable mask TIFFs were published swapped (a known PAIP 2019 data issue).
SWAPPED_MASKS = frozenset({"01_01_0107"})
# IoU between an XML layer and its TIFF below which the case is refused, or a warning given.
AGREEMENT_REFUSE, AGREEMENT_WARN = 0.5, 0.95
CHECK_SIZE = 2048  # long side, in pixels, of the rasters compared by the layer check

Layer = Literal["whole", "viable"]

logger = logging.getLogger(__name__)


def read_imagescope_xml(path: str | os.PathLike, layer: Layer = "whole") -> MultiPolygon:
    """The ``layer`` region of a PAIP ImageScope XML file in level-0 pixels: the union of its
    regions with ``NegativeROA="0"`` minus the union of those with ``NegativeROA="1"``."""
    if layer not in LAYER_IDS:
        raise ValueError(f"layer must be one of {', '.join(LAYER_IDS)}, got {layer!r}")
    annotations = _imagescope_annotations(path)
    annotation = annotations.get(LAYER_IDS[layer])
    if annotation is None:
        raise ValueError(
            f"{path} has no <Annotation Id=\"{LAYER_IDS[layer]}\"> ({layer} tumour); "
            f"annotation ids found: {sorted(k for k in annotations if k) or 'none'}"
        )
    areas, holes = [], []
    for region in annotation.iter("Region"):
        vertices = [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
        if len(vertices) < 3:
            continue
        polygon = as_multipolygon(Polygon(vertices))
        (holes if region.get("NegativeROA", "0") == "1" else areas).append(polygon)
    region = shapely.union_all(areas) if areas else MultiPolygon()
    if holes:
        region = region.difference(shapely.union_all(holes))
    return as_multipolygon(region)


def layer_agreement(
    xml_path: str | os.PathLike,
    mask_path: str | os.PathLike,
    layer: Layer,
    slide_size: tuple[int, int],
) -> float:
    """IoU of an XML layer and a mask TIFF over the slide, both sampled on the same grid of at
    most ``CHECK_SIZE`` pixels per side (``slide_size``: level-0 ``(width, height)``); 1.0 when
    both are empty."""
    width, height = slide_size
    step = max(1, math.ceil(max(width, height) / CHECK_SIZE))
    shape = (math.ceil(height / step), math.ceil(width / step))
    drawn = geometry_to_mask(read_imagescope_xml(xml_path, layer), shape, (0, 0), step)
    traced = sample_mask(_open_mask(Path(mask_path)), (0.0, 0.0), step, shape)
    union = np.count_nonzero(drawn | traced)
    return 1.0 if union == 0 else np.count_nonzero(drawn & traced) / union


def sample_mask(
    mask: np.ndarray, origin: tuple[float, float], downsample: float, shape: tuple[int, int]
) -> np.ndarray:
    """A level-0 mask (non-zero = inside) sampled under the centre of each pixel of a raster
    of ``shape`` at ``origin`` (level 0) and ``downsample``, as ``geometry_to_mask`` samples a
    geometry; pixels beyond the mask are outside."""
    height, width = shape
    rows = np.floor(origin[1] + (np.arange(height) + 0.5) * downsample).astype(int)
    cols = np.floor(origin[0] + (np.arange(width) + 0.5) * downsample).astype(int)
    inside_rows, inside_cols = (rows >= 0) & (rows < mask.shape[0]), (cols >= 0) & (cols < mask.shape[1])
    out = np.zeros(shape, dtype=bool)
    out[np.ix_(inside_rows, inside_cols)] = mask[np.ix_(rows[inside_rows], cols[inside_cols])] > 0
    return out


class PaipDataset(SlideTiles):
    """PAIP 2019 tumour samples from the ``*.svs`` slides under ``root`` (searched recursively).

    Args:
        root: folder holding each case's slide and its XML or mask TIFFs side by side.
        layer: ``"whole"`` or ``"viable"`` tumour.
        source: ``"xml"`` (ImageScope annotations) or ``"mask"`` (the mask TIFFs; case
            01_01_0107's swapped masks are corrected). Masks that cannot be memory-mapped are
            decoded once per case into a temporary memory-mapped file.
        check_layers: compare each case's XML layers with its mask TIFFs where both exist,
            when the case is first used: IoU below ``AGREEMENT_REFUSE`` raises ValueError,
            below ``AGREEMENT_WARN`` warns.
        tile_size, magnification, tiles_per_slide, min_tumour_pixels, protocol: see
            :class:`~histoclick.datasets.slide_tiles.SlideTiles` (defaults: 512-pixel tiles at
            x5, the study's magnification for PAIP; region-level protocol).

    ``dropped`` maps each slide left out to the reason (each also logged as a warning).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        layer: Layer = "whole",
        source: Literal["xml", "mask"] = "xml",
        check_layers: bool = True,
        name: str = "paip2019",
        tile_size: int = 512,
        magnification: float = 5.0,
        tiles_per_slide: int | None = None,
        min_tumour_pixels: float = 64.0,
        protocol: SlideProtocol = "regions",
    ) -> None:
        if layer not in LAYER_IDS:
            raise ValueError(f"layer must be one of {', '.join(LAYER_IDS)}, got {layer!r}")
        if source not in ("xml", "mask"):
            raise ValueError(f"source must be 'xml' or 'mask', got {source!r}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"PAIP folder not found: {root}")
        self.layer, self.source, self.check_layers = layer, source, check_layers
        copies: dict[str, list[Path]] = defaultdict(list)
        for path in sorted(root.rglob("*.svs")):
            copies[path.stem].append(path)
        self.dropped: dict[str, str] = {}
        cases = {}
        for case, paths in copies.items():
            if len(paths) > 1:
                for path in paths:
                    self.dropped[str(path)] = (
                        f"case {case} has {len(paths)} slides ({', '.join(map(str, paths))}), e.g. "
                        "rescans: keep the one whose annotations you mean under the root"
                    )
            elif not self._annotation(paths[0]).is_file():
                self.dropped[str(paths[0])] = f"its {source} annotation {self._annotation(paths[0])} is missing"
            else:
                cases[case] = paths[0]
        for path, reason in self.dropped.items():
            logger.warning("PAIP: slide %s dropped: %s", path, reason)
        if not cases:
            example = "01_01_0083.xml" if source == "xml" else f"01_01_0083_{layer}.tif"
            raise FileNotFoundError(
                f"no .svs slide under {root} has its {source} annotation beside it "
                f"(e.g. 01_01_0083.svs with {example}); dropped: {len(self.dropped)} slides"
            )
        super().__init__(
            name,
            cases,
            tile_size=tile_size,
            magnification=magnification,
            tiles_per_slide=tiles_per_slide,
            min_tumour_pixels=min_tumour_pixels,
            protocol=protocol,
        )
        self._mask: tuple[str, np.ndarray] | None = None

    def tumour_geometry(self, case: str) -> MultiPolygon:
        if self.check_layers:
            self._check_layers(case)
        if self.source == "xml":
            return read_imagescope_xml(self._annotation(self.cases[case]), self.layer)
        # Only used to place tiles: trace the mask sampled every ``step`` level-0 pixels.
        step = self._trace_step(case)
        return mask_to_geometry(self._mask_of(case)[::step, ::step] > 0, downsample=step)

    def region_tolerance(self, case: str) -> float:
        # Traced from a mask sampled every ``step`` pixels, a region's polygon may be off by a
        # step from the mask's own pixels.
        return 0.0 if self.source == "xml" else float(self._trace_step(case))

    def tile_mask(self, case: str, tile: Tile) -> np.ndarray:
        if self.source == "xml":
            return super().tile_mask(case, tile)
        return sample_mask(self._mask_of(case), tile.origin, tile.downsample, (tile.height, tile.width))

    def _check_layers(self, case: str) -> None:
        slide_path = self.cases[case]
        xml_path = slide_path.with_suffix(".xml")
        if not xml_path.is_file():
            return
        present = _imagescope_annotations(xml_path)
        size = self._open(case).dimensions
        for layer, annotation_id in LAYER_IDS.items():
            mask_path = _mask_path(slide_path, layer)
            if annotation_id not in present or not mask_path.is_file():
                continue
            agreement = layer_agreement(xml_path, mask_path, layer, size)
            if agreement >= AGREEMENT_WARN:
                continue
            other = _mask_path(slide_path, "viable" if layer == "whole" else "whole")
            hint = ""
            if other.is_file() and layer_agreement(xml_path, other, layer, size) > agreement:
                hint = f"; it matches {other.name} better: are the whole/viable TIFFs swapped?"
            message = (
                f"PAIP case {case}: the {layer} layer of {xml_path} and {mask_path} disagree "
                f"(IoU {agreement:.3f}){hint}"
            )
            if agreement < AGREEMENT_REFUSE:
                raise ValueError(
                    f"{message}. Fix or remove the wrong file, or pass check_layers=False "
                    "(CLI: --no-paip-check) to use the chosen source anyway"
                )
            warnings.warn(message, stacklevel=2)

    def _trace_step(self, case: str) -> int:
        slide = self._open(case)
        return max(1, int(slide.downsample_for(**self._resolution(slide))))

    def _annotation(self, slide_path: Path) -> Path:
        if self.source == "xml":
            return slide_path.with_suffix(".xml")
        return _mask_path(slide_path, self.layer)

    def _mask_of(self, case: str) -> np.ndarray:
        if self._mask is None or self._mask[0] != case:
            self._mask = (case, _open_mask(self._annotation(self.cases[case])))
        return self._mask[1]


def _mask_path(slide_path: Path, layer: Layer) -> Path:
    """The TIFF holding ``layer`` of a case (01_01_0107's published files are swapped)."""
    if slide_path.stem in SWAPPED_MASKS:
        layer = "viable" if layer == "whole" else "whole"
    return slide_path.with_name(f"{slide_path.stem}_{layer}.tif")


def _open_mask(path: Path) -> np.ndarray:
    """A level-0 mask TIFF as a 2-D array, memory-mapped (decoded into a temporary memory-mapped
    file when compressed or tiled)."""
    try:
        mask = tifffile.memmap(path, mode="r")
    except ValueError:
        mask = tifffile.imread(path, out="memmap")
    mask = np.squeeze(mask)
    return mask[..., 0] if mask.ndim == 3 else mask


def _imagescope_annotations(path: str | os.PathLike) -> dict[str | None, ET.Element]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path} is not a readable ImageScope XML file: {err}") from None
    return {a.get("Id"): a for a in root.iter("Annotation")}
