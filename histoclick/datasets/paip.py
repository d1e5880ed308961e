"""PAIP 2019 (liver cancer, Aperio SVS): tumour-centred tiles at x5 by default.

Per case ``<id>.svs`` with either its Aperio ImageScope XML ``<id>.xml`` (``Annotations >
Annotation`` with ``Id`` 1 = whole tumour, 2 = viable tumour ``> Regions > Region`` with
``NegativeROA`` 0 = area, 1 = hole ``> Vertices > Vertex X Y``, level-0 pixels) or its mask TIFFs
``<id>_whole.tif`` / ``<id>_viable.tif`` (level-0 size, non-zero = tumour).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
import tifffile
from shapely.geometry import MultiPolygon, Polygon

from histoclick.datasets.camelyon16 import SlideTiles
from histoclick.geometry import as_multipolygon, mask_to_geometry
from histoclick.slides import Tile

LAYER_IDS = {"whole": "1", "viable": "2"}
# Cases whose whole and viable mask TIFFs were published swapped (a known PAIP 2019 data issue).
SWAPPED_MASKS = frozenset({"01_01_0107"})

Layer = Literal["whole", "viable"]


def read_imagescope_xml(path: str | os.PathLike, layer: Layer = "whole") -> MultiPolygon:
    """The ``layer`` region of a PAIP ImageScope XML file in level-0 pixels: the union of its
    regions with ``NegativeROA="0"`` minus the union of those with ``NegativeROA="1"``."""
    if layer not in LAYER_IDS:
        raise ValueError(f"layer must be one of {', '.join(LAYER_IDS)}, got {layer!r}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path} is not a readable ImageScope XML file: {err}") from None
    annotations = {a.get("Id"): a for a in root.iter("Annotation")}
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


class PaipDataset(SlideTiles):
    """PAIP 2019 tumour tiles from the ``*.svs`` slides under ``root`` (searched recursively).

    Args:
        root: folder holding each case's slide and its XML or mask TIFFs side by side.
        layer: ``"whole"`` or ``"viable"`` tumour.
        source: ``"xml"`` (ImageScope annotations) or ``"mask"`` (the mask TIFFs; case
            01_01_0107's swapped masks are corrected). Masks that cannot be memory-mapped are
            decoded once per case into a temporary memory-mapped file.
        tile_size, magnification, tiles_per_slide, min_tumour_pixels: see :class:`SlideTiles`
            (defaults: 512-pixel tiles at x5, the study's magnification for PAIP).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        layer: Layer = "whole",
        source: Literal["xml", "mask"] = "xml",
        name: str = "paip2019",
        tile_size: int = 512,
        magnification: float = 5.0,
        tiles_per_slide: int | None = None,
        min_tumour_pixels: float = 64.0,
    ) -> None:
        if layer not in LAYER_IDS:
            raise ValueError(f"layer must be one of {', '.join(LAYER_IDS)}, got {layer!r}")
        if source not in ("xml", "mask"):
            raise ValueError(f"source must be 'xml' or 'mask', got {source!r}")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"PAIP folder not found: {root}")
        self.layer, self.source = layer, source
        cases = {path.stem: path for path in sorted(root.rglob("*.svs")) if self._annotation(path).is_file()}
        if not cases:
            example = "01_01_0083.xml" if source == "xml" else f"01_01_0083_{layer}.tif"
            raise FileNotFoundError(
                f"no .svs slide under {root} has its {source} annotation beside it "
                f"(e.g. 01_01_0083.svs with {example})"
            )
        super().__init__(
            name,
            cases,
            tile_size=tile_size,
            magnification=magnification,
            tiles_per_slide=tiles_per_slide,
            min_tumour_pixels=min_tumour_pixels,
        )
        self._mask: tuple[str, np.ndarray] | None = None

    def tumour_geometry(self, case: str) -> MultiPolygon:
        if self.source == "xml":
            return read_imagescope_xml(self._annotation(self.cases[case]), self.layer)
        # Only used to place tiles: trace the mask sampled every ``step`` level-0 pixels.
        slide = self._open(case)
        step = max(1, int(slide.downsample_for(**self._resolution(slide))))
        return mask_to_geometry(self._mask_of(case)[::step, ::step] > 0, downsample=step)

    def tile_mask(self, case: str, tile: Tile) -> np.ndarray:
        if self.source == "xml":
            return super().tile_mask(case, tile)
        mask = self._mask_of(case)
        # Sample the level-0 pixel under each tile pixel's centre (as geometry_to_mask does).
        rows = np.floor(tile.origin[1] + (np.arange(tile.height) + 0.5) * tile.downsample).astype(int)
        cols = np.floor(tile.origin[0] + (np.arange(tile.width) + 0.5) * tile.downsample).astype(int)
        inside_rows, inside_cols = (rows >= 0) & (rows < mask.shape[0]), (cols >= 0) & (cols < mask.shape[1])
        out = np.zeros((tile.height, tile.width), dtype=bool)
        out[np.ix_(inside_rows, inside_cols)] = mask[np.ix_(rows[inside_rows], cols[inside_cols])] > 0
        return out

    def _annotation(self, slide_path: Path) -> Path:
        if self.source == "xml":
            return slide_path.with_suffix(".xml")
        layer = self.layer
        if slide_path.stem in SWAPPED_MASKS:
            layer = "viable" if layer == "whole" else "whole"
        return slide_path.with_name(f"{slide_path.stem}_{layer}.tif")

    def _mask_of(self, case: str) -> np.ndarray:
        if self._mask is None or self._mask[0] != case:
            path = self._annotation(self.cases[case])
            try:
                mask = tifffile.memmap(path, mode="r")
            except ValueError:  # compressed or tiled: decode once into a temporary memmap
                mask = tifffile.imread(path, out="memmap")
            mask = np.squeeze(mask)
            if mask.ndim == 3:
                mask = mask[..., 0]
            self._mask = (case, mask)
        return self._mask[1]
