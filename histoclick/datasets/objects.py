"""Objects, not tiles: one evaluation sample per object of a tile (RITM-style instance evaluation).

Modes (``OBJECT_MODES``):

- ``"mask"``: the tile's whole mask is one object (what the study evaluated: its tables are over
  whole tiles of camelyon16_mini, so this is the default everywhere and :func:`objects` returns
  the dataset unchanged, same sample ids);
- ``"components"``: each connected component of the mask (8-connectivity, in tile pixels) whose
  area is at least ``min_area`` is an object; smaller components are never targets;
- ``"instances"``: each non-zero label of the tile's instance mask is an object (RITM's
  evaluation of SBD/COCO instances); the dataset must provide ``instance_labels(sample_id)``
  (e.g. :class:`histoclick.datasets.folders.FolderDataset`, whose masks may hold labels 1..n).

In the ``components`` and ``instances`` modes every object is its own sample, with its own
simulated clicks; the tile's other mask pixels (other objects, too-small components) are marked
``ignore`` (neither background nor object: they count neither in IoU nor as errors) on top of
the tile's own ignore. Sample ids are ``<tile id>#<object id>``; ``meta`` keeps the tile's meta
and adds ``object_id``, ``object_mode``, ``tile_id`` and ``object_area_px`` (tile pixels).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import cv2
import numpy as np

from histoclick.evaluation.protocol import Dataset, Sample

ObjectMode = Literal["mask", "components", "instances"]
OBJECT_MODES: tuple[str, ...] = ("mask", "components", "instances")
AREA_UNITS = ("px", "um2")


def objects(
    dataset: Dataset,
    mode: ObjectMode = "mask",
    *,
    min_area: float = 0.0,
    area_unit: Literal["px", "um2"] = "px",
    mpp: float | None = None,
) -> Dataset:
    """``dataset`` evaluated per object: unchanged for ``mode="mask"``, else an
    :class:`ObjectDataset` (see the module docstring and :class:`ObjectDataset` for the rest)."""
    if mode not in OBJECT_MODES:
        raise ValueError(f"object mode must be one of {', '.join(OBJECT_MODES)}, got {mode!r}")
    if mode == "mask":
        if min_area:
            raise ValueError(
                "min_area applies to the components and instances modes; in the mask mode the "
                "whole mask is the object (pass mode='components' to drop small components)"
            )
        return dataset
    return ObjectDataset(dataset, mode, min_area=min_area, area_unit=area_unit, mpp=mpp)


class ObjectDataset(Dataset):
    """One sample per object of each sample of ``base`` (mode ``components`` or ``instances``).

    Args:
        base: the tile dataset.
        mode: ``"components"`` or ``"instances"``.
        min_area: objects smaller than this are not samples (their pixels are ignored in the
            samples of the other objects of their tile).
        area_unit: ``"px"``: ``min_area`` in tile pixels; ``"um2"``: in square micrometres,
            converted with the tile's micrometres per pixel (``mpp`` here, else the sample's
            ``meta["mpp"]``; an error when neither is known).
        mpp: micrometres per tile pixel, for ``area_unit="um2"``.

    The dataset is named ``<base name>[<mode>]``, so records of different modes stay apart.
    Listing ``sample_ids`` loads every tile of ``base`` once to find its objects (only the
    object index is kept); loading objects of one tile in a row reads the tile once.
    """

    def __init__(
        self,
        base: Dataset,
        mode: ObjectMode,
        *,
        min_area: float = 0.0,
        area_unit: Literal["px", "um2"] = "px",
        mpp: float | None = None,
    ) -> None:
        if mode not in ("components", "instances"):
            raise ValueError(f"ObjectDataset mode must be 'components' or 'instances', got {mode!r}")
        if area_unit not in AREA_UNITS:
            raise ValueError(f"area_unit must be 'px' or 'um2', got {area_unit!r}")
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        if mode == "instances" and not callable(getattr(base, "instance_labels", None)):
            raise ValueError(
                f"dataset {base.name!r} ({type(base).__name__}) has no instance labels: the "
                "instances mode needs a dataset with instance_labels(sample_id), e.g. a "
                "FolderDataset whose masks hold one label per object; use mode 'components' "
                "to split a binary mask into connected components"
            )
        super().__init__(f"{base.name}[{mode}]")
        self.base, self.mode = base, mode
        self.min_area, self.area_unit, self.mpp = float(min_area), area_unit, mpp
        self._index: dict[str, tuple[str, int]] | None = None  # sample id -> (tile id, label)
        self._tile: tuple[str, Sample, np.ndarray] | None = None  # last tile, its labels

    @property
    def sample_ids(self) -> list[str]:
        return list(self._objects())

    def load(self, sample_id: str) -> Sample:
        if sample_id not in self._objects():
            raise KeyError(f"{self.name} has no sample {sample_id!r}; ids come from its sample_ids")
        tile_id, label = self._objects()[sample_id]
        tile, labels = self._load_tile(tile_id)
        target = labels == label
        others = (labels > 0) & ~target
        ignore = others if tile.ignore is None else others | tile.ignore
        object_id = sample_id.rpartition("#")[2]
        meta = {
            **tile.meta,
            "tile_id": tile_id,
            "object_id": object_id,
            "object_mode": self.mode,
            "object_area_px": int(target.sum()),
        }
        return replace(tile, id=sample_id, gt=target, ignore=ignore, meta=meta)

    def _objects(self) -> dict[str, tuple[str, int]]:
        if self._index is None:
            index = {}
            for tile_id in self.base.sample_ids:
                tile, labels = self._load_tile(tile_id)
                min_pixels = self._min_pixels(tile)
                areas = np.bincount(labels.ravel())
                for label in np.flatnonzero(areas):
                    if label and areas[label] >= min_pixels:
                        object_id = f"c{label}" if self.mode == "components" else str(label)
                        index[f"{tile_id}#{object_id}"] = (tile_id, int(label))
            self._index = index
        return self._index

    def _load_tile(self, tile_id: str) -> tuple[Sample, np.ndarray]:
        if self._tile is None or self._tile[0] != tile_id:
            tile = self.base.load(tile_id)
            self._tile = (tile_id, tile, self._labels(tile_id, tile))
        return self._tile[1], self._tile[2]

    def _labels(self, tile_id: str, tile: Sample) -> np.ndarray:
        """Object labels of a tile: int32, 0 = no object; pixels outside the gt are 0."""
        gt = np.asarray(tile.gt, dtype=bool)
        if self.mode == "components":
            # Labels follow OpenCV's raster order of each component's first pixel.
            _, labels = cv2.connectedComponents(gt.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
            return labels
        labels = np.asarray(self.base.instance_labels(tile_id))  # type: ignore[attr-defined]
        if labels.shape != gt.shape or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"{self.base.name}: instance labels of {tile_id!r} are {labels.dtype} "
                f"{labels.shape}, expected integers of the mask's shape {gt.shape}"
            )
        return np.where(gt, labels, 0).astype(np.int32)

    def _min_pixels(self, tile: Sample) -> float:
        if self.area_unit == "px" or not self.min_area:
            return self.min_area
        mpp = self.mpp if self.mpp is not None else tile.meta.get("mpp")
        if not mpp:
            raise ValueError(
                f"{self.base.name}: sample {tile.id!r} has no micrometres per pixel (meta 'mpp'), "
                "so a minimum area in um^2 cannot be converted: pass mpp, or give the minimum "
                "area in tile pixels (area_unit='px')"
            )
        return self.min_area / float(mpp) ** 2
