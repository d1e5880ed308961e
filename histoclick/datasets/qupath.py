"""Annotations of one class as an evaluation / training dataset: a tile around each annotation.

Each sample is a ``tile_size`` x ``tile_size`` tile read at the requested magnification (or mpp,
or downsample), placed by the region-level protocol (:func:`histoclick.datasets.regions.region_tile_origin`:
centred on an annotation that fits, on its boundary otherwise, kept inside the slide); its ground
truth is that annotation rasterised with :func:`histoclick.geometry.geometry_to_mask` (an
annotation larger than the tile is cropped). Other annotations of the same class inside the tile are marked ``ignore`` (they are
the same tissue but not the object being segmented), unless ``ignore_others=False``.

Sources: a QuPath project (:meth:`QuPathDataset.from_project`, needs QuPath for paquo) or a slide
with a GeoJSON file exported from QuPath (:meth:`QuPathDataset.from_geojson`, no QuPath needed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import shapely

from histoclick.evaluation.protocol import Dataset, Sample
from histoclick.datasets.regions import region_tile_origin
from histoclick.geometry import geometry_to_mask
from histoclick.qupath.annotations import OBJECT_TYPES, select_classes
from histoclick.qupath.geojson import read_geojson
from histoclick.slides import Tile, open_slide


@dataclass(frozen=True)
class SlideAnnotations:
    """The annotations (level-0 pixels) drawn on one slide file."""

    name: str
    slide_path: Path
    annotations: gpd.GeoDataFrame
    # Level-0 (x, y) of the annotations' (0, 0) in the slide file: QuPath's OpenSlide reader crops
    # to openslide.bounds-*, so its frame is shifted from the file's (ProjectImage.slide_offset).
    offset: tuple[int, int] = (0, 0)


class QuPathDataset(Dataset):
    """One sample per annotation of ``classification``; sample id ``<image name>/<annotation id>``.

    Args:
        sources: the slides and their annotations (see the ``from_*`` constructors).
        classification: the class whose annotations become samples.
        tile_size: tile width and height in output pixels.
        magnification, mpp, downsample: the tile resolution (at most one; none = level 0).
        ignore_others: mark other annotations of the class inside a tile as ignored pixels.
        name: dataset name in tables and records.

    ``meta`` of each sample: image, slide, annotation_id, classification, origin (level-0 top-left
    of the tile), downsample, magnification.
    """

    def __init__(
        self,
        sources: Sequence[SlideAnnotations],
        classification: str,
        *,
        tile_size: int = 512,
        magnification: float | None = None,
        mpp: float | None = None,
        downsample: float | None = None,
        ignore_others: bool = True,
        name: str = "qupath",
    ) -> None:
        super().__init__(name)
        if tile_size < 1:
            raise ValueError(f"tile_size must be at least 1 pixel, got {tile_size}")
        self.classification = classification
        self.tile_size = int(tile_size)
        self.resolution = {"magnification": magnification, "mpp": mpp, "downsample": downsample}
        self.ignore_others = ignore_others
        names = [source.name for source in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"image names must be unique, got {names}")
        self._samples: dict[str, tuple[SlideAnnotations, int]] = {}
        for source in sources:
            objects = _polygonal(select_classes(source.annotations, classification))
            kept = SlideAnnotations(source.name, source.slide_path, objects, source.offset)
            for position, object_id in enumerate(objects["id"]):
                key = object_id if object_id is not None else f"#{position}"
                self._samples[f"{source.name}/{key}"] = (kept, position)

    @classmethod
    def from_project(
        cls,
        project: str | os.PathLike,
        classification: str,
        *,
        images: Iterable[str | int] | None = None,
        **options: object,
    ) -> QuPathDataset:
        """Annotations of a QuPath project (read-only), for all its images or those named/indexed.

        Raises QuPathNotFoundError without QuPath, and ImageUnreachableError when a slide file
        is missing (pass ``images`` to leave such images out).
        """
        from histoclick.qupath.project import open_project

        qupath_project = open_project(project, mode="r")
        chosen = qupath_project.images if images is None else [qupath_project.image(k) for k in images]
        sources = []
        for image in chosen:
            image.ensure_readable("read tiles from it")
            sources.append(
                SlideAnnotations(image.name, image.slide_path, image.annotations(), image.slide_offset)
            )
        name = options.pop("name", qupath_project.path.name)
        return cls(sources, classification, name=name, **options)

    @classmethod
    def from_geojson(
        cls,
        slide_path: str | os.PathLike,
        geojson_path: str | os.PathLike,
        classification: str,
        *,
        object_types: str | Iterable[str] = "annotation",
        **options: object,
    ) -> QuPathDataset:
        """Objects of one slide from a GeoJSON file (e.g. exported by QuPath); no QuPath needed.

        Only objects whose QuPath type is in ``object_types`` are kept, annotations by default:
        detections, cells and tiles of the class (QuPath exports them alongside) are neither
        samples nor ignored pixels unless asked for, e.g. ``("annotation", "detection")``.
        """
        wanted = {object_types} if isinstance(object_types, str) else set(object_types)
        unknown = wanted - set(OBJECT_TYPES)
        if unknown:
            raise ValueError(
                f"unknown object types {sorted(unknown)}; QuPath's are {list(OBJECT_TYPES)}"
            )
        slide_path = Path(slide_path).expanduser()
        objects = read_geojson(geojson_path)
        objects = objects[objects["object_type"].isin(wanted)]
        source = SlideAnnotations(slide_path.name, slide_path, objects)
        return cls([source], classification, name=options.pop("name", slide_path.stem), **options)

    @property
    def sample_ids(self) -> list[str]:
        return list(self._samples)

    def load(self, sample_id: str) -> Sample:
        source, position = self._samples[sample_id]
        objects = source.annotations
        geometry = objects.geometry.iloc[position]
        dx, dy = source.offset
        with open_slide(source.slide_path) as slide:
            ds = slide.downsample_for(**self.resolution)
            span = self.tile_size * ds
            width, height = slide.dimensions
            x, y, placement = region_tile_origin(geometry, span, (width - dx, height - dy))
            read = slide.read_region(x + dx, y + dy, self.tile_size, self.tile_size, downsample=ds)
        tile = Tile(read.image, (read.origin[0] - dx, read.origin[1] - dy), read.downsample, read.magnification)
        shape = (tile.height, tile.width)
        gt = geometry_to_mask(geometry, shape, tile.origin, tile.downsample)
        ignore = None
        if self.ignore_others:
            x0, y0 = tile.origin
            nearby = objects.sindex.query(shapely.box(x0, y0, x0 + span, y0 + span))
            others = shapely.union_all(objects.geometry.values[[i for i in nearby if i != position]])
            ignore = geometry_to_mask(others, shape, tile.origin, tile.downsample) & ~gt
        return Sample(
            id=sample_id,
            image=tile.image,
            gt=gt,
            ignore=ignore,
            meta={
                "image": source.name,
                "slide": str(source.slide_path),
                "annotation_id": objects["id"].iloc[position],
                "classification": self.classification,
                "origin": tuple(tile.origin),  # level-0, in the annotations' frame
                "placement": placement,
                "downsample": tile.downsample,
                "magnification": tile.magnification,
            },
        )


def _polygonal(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Keep the rows with an area (points and lines cannot be segmented); renumber rows 0..n-1."""
    kept = frame[frame.geometry.area > 0]
    return kept.reset_index(drop=True)
