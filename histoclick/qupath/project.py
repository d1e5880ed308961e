"""QuPath projects through paquo: list images, read annotations, add new ones, save explicitly.

paquo (and so QuPath) is imported only when a project is opened; without QuPath every entry point
raises :class:`~histoclick.qupath.errors.QuPathNotFoundError`. Written for paquo 0.9 and QuPath
0.5 / 0.6. Geometries are level-0 pixels, origin top-left.

Writing is additive: existing objects are never changed or removed. Changes stay in memory until
:meth:`Project.save`, which backs up each changed image's data folder first, saves, and checks on
disk that the new annotations arrived (paquo only logs and skips when the image file is missing).

>>> with open_project("my_project", mode="r+") as project:      # doctest: +SKIP
...     image = project.image("slide_01.svs")
...     image.add_annotations([Annotation.from_session(session, "Tumor")])
...     project.save()
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import geopandas as gpd
import pandas as pd

from histoclick.qupath.annotations import (
    RGB,
    AnnotationLike,
    annotations_frame,
    as_rgb,
    default_class_color,
    select_classes,
)
from histoclick.qupath.errors import ImageUnreachableError, require_paquo
from histoclick.qupath.geojson import features_to_geodataframe

if TYPE_CHECKING:
    from histoclick.slides import Slide, Tile

BACKUP_FOLDER = "histoclick_backups"

OpenMode = Literal["r", "r+", "a", "x"]


def open_project(path: str | os.PathLike, mode: OpenMode = "r") -> Project:
    """Open a QuPath project (its folder or ``project.qpproj``).

    Args:
        mode: "r" read-only; "r+" read and write an existing project; "a" like "r+" but creates
            the project when missing; "x" creates a new one (the folder must be empty). paquo's
            truncating "w" is not offered: it would discard a project.

    Raises:
        QuPathNotFoundError: when paquo finds no QuPath installation.
    """
    if mode not in ("r", "r+", "a", "x"):
        raise ValueError(f"mode must be 'r', 'r+', 'a' or 'x', got {mode!r}")
    require_paquo()
    from paquo.projects import QuPathProject

    return Project(QuPathProject(Path(path), mode=mode), read_only=mode == "r")


class Project:
    """A QuPath project: its images and classes. Use :func:`open_project` to make one.

    ``paquo`` is the underlying ``paquo.projects.QuPathProject`` for anything not covered here.
    """

    def __init__(self, paquo_project: Any, *, read_only: bool) -> None:
        self.paquo = paquo_project
        self.read_only = read_only
        self._pending: dict[str, tuple[ProjectImage, set[str]]] = {}
        self._backups: dict[str, Path] = {}

    @property
    def path(self) -> Path:
        """The project folder (the one holding ``project.qpproj``)."""
        return Path(self.paquo.path).parent

    @property
    def images(self) -> list[ProjectImage]:
        """The project's images, in project order."""
        return [ProjectImage(self, entry, index) for index, entry in enumerate(self.paquo.images)]

    def image(self, key: int | str) -> ProjectImage:
        """An image by index or by image name."""
        images = self.images
        if isinstance(key, int):
            if not -len(images) <= key < len(images):
                raise IndexError(f"image index {key} out of range: the project has {len(images)} images")
            return images[key]
        matches = [image for image in images if image.name == key]
        if len(matches) != 1:
            names = ", ".join(repr(image.name) for image in images)
            problem = "no image" if not matches else f"{len(matches)} images"
            raise KeyError(f"{problem} named {key!r} in {self.path} (images: {names}); use an index")
        return matches[0]

    def list_images(self) -> pd.DataFrame:
        """One row per image: index, name, slide_path, readable, width, height, downsamples."""
        return pd.DataFrame(
            [
                {
                    "index": image.index,
                    "name": image.name,
                    "slide_path": image.slide_path,
                    "readable": image.is_readable(),
                    "width": image.width,
                    "height": image.height,
                    "downsamples": image.downsamples,
                }
                for image in self.images
            ],
            columns=["index", "name", "slide_path", "readable", "width", "height", "downsamples"],
        )

    @property
    def class_colors(self) -> dict[str, RGB]:
        """The project's classes: name ("Tumor", "Tumor: Positive") -> (r, g, b)."""
        return {
            pc.id: (pc.color.to_rgb() if pc.color is not None else default_class_color(pc.id))
            for pc in self.paquo.path_classes
        }

    def add_image(self, path: str | os.PathLike) -> ProjectImage:
        """Add a slide file to the project as a brightfield H&E image (saved right away by paquo)."""
        self._check_writable()
        from paquo.images import QuPathImageType

        self.paquo.add_image(Path(path), image_type=QuPathImageType.BRIGHTFIELD_H_E)
        return self.images[-1]

    @property
    def unsaved(self) -> int:
        """Number of annotations added since the last save."""
        return sum(len(ids) for _, ids in self._pending.values())

    def save(self) -> dict[str, Path]:
        """Write the added annotations and the project's classes to disk.

        Before an image's data is first written, its data folder is copied to
        ``<project>/histoclick_backups/<time>-<entry id>``. After writing, the image's data file
        is read back and must hold every added annotation.

        Returns:
            entry id -> backup folder, for the images backed up so far.

        Raises:
            ImageUnreachableError: when an image file is missing (nothing is written for it).
            RuntimeError: when the data file read back lacks an added annotation.
        """
        self._check_writable()
        for entry_id, (image, ids) in list(self._pending.items()):
            if entry_id not in self._backups:
                self._backups[entry_id] = image._backup()
            image._save(ids)
            del self._pending[entry_id]
        self.paquo.save(images=False)
        return dict(self._backups)

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError(
                f"{self.path} was opened read-only; open it with open_project(path, mode='r+') "
                "to add annotations"
            )

    def _ensure_classes(self, frame: gpd.GeoDataFrame, class_colors: Mapping[str, RGB]) -> dict[str, RGB]:
        """Add the frame's missing classes to the project; return class -> colour in use.

        Existing project classes keep their colour (they are never modified).
        """
        existing = self.class_colors
        added = {}
        for name, color in zip(frame["classification"], frame["color"]):
            if name is None or name in existing or name in added:
                continue
            chosen = class_colors.get(name) or color or default_class_color(name)
            added[name] = as_rgb(chosen)
        if added:
            new_classes = []
            for name, color in added.items():
                path_class = _path_class(name, color)
                # QuPath's classes are JVM-wide singletons that keep the colour they were born with.
                path_class.color = color
                new_classes.append(path_class)
            self.paquo.path_classes = [*self.paquo.path_classes, *new_classes]
        return {**existing, **added}

    def __enter__(self) -> Project:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None and self.unsaved:
            warnings.warn(
                f"{self.unsaved} annotations added to {self.path} were not saved; "
                "call project.save() before leaving the with-block",
                stacklevel=2,
            )

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writable"
        return f"Project({str(self.path)!r}, {len(self.paquo.images)} images, {mode})"


class ProjectImage:
    """One image of a project. ``entry`` is the ``paquo.images.QuPathProjectImageEntry``."""

    def __init__(self, project: Project, entry: Any, index: int) -> None:
        self.project = project
        self.entry = entry
        self.index = index

    @property
    def name(self) -> str:
        return self.entry.image_name

    @property
    def entry_id(self) -> str:
        return self.entry.entry_id

    @property
    def uri(self) -> str:
        return self.entry.uri

    @property
    def slide_path(self) -> Path:
        """Where the project expects the slide file (it may be missing: see :meth:`is_readable`)."""
        from paquo.images import ImageProvider

        return Path(str(ImageProvider.path_from_uri(self.entry.uri)))

    def is_readable(self) -> bool:
        """Whether the slide file exists where the project expects it."""
        return bool(self.entry.is_readable())

    @property
    def width(self) -> int:
        """Level-0 width in pixels."""
        return int(self.entry.width)

    @property
    def height(self) -> int:
        """Level-0 height in pixels."""
        return int(self.entry.height)

    @property
    def downsamples(self) -> list[float]:
        """Downsample of each pyramid level as QuPath sees it (1.0 first)."""
        return [float(level["downsample"]) for level in self.entry.downsample_levels]

    def open_slide(self) -> Slide:
        """Open the slide file with :func:`histoclick.open_slide`."""
        from histoclick.slides import open_slide

        self.ensure_readable("open its slide")
        return open_slide(self.slide_path)

    def annotations(self, classes: str | Iterable[str] | None = None) -> gpd.GeoDataFrame:
        """The image's annotations (not detections) as the table of :mod:`.annotations`.

        ``classes`` keeps only those class names. Annotations added since the last save are
        included.
        """
        frame = features_to_geodataframe(self.entry.hierarchy.to_geojson())
        frame = frame[frame["object_type"] == "annotation"]
        return frame if classes is None else select_classes(frame, classes)

    def add_annotations(
        self,
        annotations: gpd.GeoDataFrame | Iterable[AnnotationLike],
        *,
        tile: Tile | None = None,
        class_colors: Mapping[str, RGB] | None = None,
        simplify_tolerance: float | None = None,
        max_vertices: int | None = None,
    ) -> gpd.GeoDataFrame:
        """Add annotations (masks or geometries with class, name, measurements) to this image.

        Takes what :func:`histoclick.qupath.annotations_frame` takes; masks need their ``tile``.
        Missing classes are added to the project with ``class_colors`` or the default colour;
        existing classes and objects are left untouched. Rows that carry a UUID keep it.
        Nothing reaches the disk until :meth:`Project.save`.

        Returns:
            The added annotations with the ids and class colours they have in QuPath.

        Raises:
            ImageUnreachableError: when the slide file is missing (QuPath could not save).
            ValueError: when an id is already in the image (the same annotations twice).
        """
        self.project._check_writable()
        self.ensure_readable("save annotations for it (paquo would skip them silently)")
        frame = annotations_frame(
            annotations, tile=tile, simplify_tolerance=simplify_tolerance, max_vertices=max_vertices
        )
        if frame.empty:
            return frame
        if (frame["object_type"] != "annotation").any():
            raise ValueError("only annotations can be added; the table holds other object types")
        repeated = sorted(_annotation_ids(self.entry.hierarchy).intersection(frame["id"]))
        if repeated:
            raise ValueError(
                f"image {self.name!r} already holds annotations with ids {repeated[:3]}; "
                "they were added before"
            )
        given = {name: as_rgb(color) for name, color in (class_colors or {}).items()}
        colors = self.project._ensure_classes(frame, given)
        rows = zip(frame.itertuples(index=False), frame.geometry)
        ids = [self._add(row, geometry) for row, geometry in rows]
        added = frame.copy()
        added["id"] = ids
        added["color"] = [colors.get(c) if c is not None else None for c in added["classification"]]
        _, pending = self.project._pending.setdefault(self.entry_id, (self, set()))
        pending.update(ids)
        return added

    def _add(self, row: Any, geometry: Any) -> str:
        """Create the QuPath object completely, then add it to the hierarchy."""
        from paquo.pathobjects import QuPathPathAnnotationObject

        path_class = None if row.classification is None else _path_class(row.classification)
        obj = QuPathPathAnnotationObject.from_shapely(geometry, path_class, row.measurements or None)
        if row.id is not None:
            _set_object_id(obj.java_object, row.id)
        if row.name is not None:
            obj.name = row.name
        if row.is_locked:
            obj.locked = True
        self.entry.hierarchy.annotations.add(obj)
        return _object_id(obj.java_object)

    def ensure_readable(self, purpose: str) -> None:
        """Raise :class:`ImageUnreachableError` (saying ``purpose``) when the slide file is missing."""
        if not self.is_readable():
            raise ImageUnreachableError(
                f"the slide of image {self.name!r} is missing from {self.slide_path}, so "
                f"histoclick cannot {purpose}. Put the file back, or point the project at its new "
                "place with project.paquo.update_image_paths(try_relative=True) (or "
                "uri2uri={old_uri: new_uri}) and save the project"
            )

    def _backup(self) -> Path:
        """Copy the image's data folder (data.qpdata, server.json, ...) aside; return the copy."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        target = self.project.path / BACKUP_FOLDER / f"{stamp}-{self.entry_id}"
        source = Path(self.entry.entry_path)
        if source.is_dir():
            shutil.copytree(source, target)
        else:  # never saved yet: nothing to lose, but keep the record of where a backup would be
            target.mkdir(parents=True)
        return target

    def _save(self, ids: set[str]) -> None:
        """Save through paquo, then prove the annotations are in the data file on disk."""
        from paquo.hierarchy import QuPathPathObjectHierarchy

        self.ensure_readable("save annotations for it (paquo would skip them silently)")
        self.entry.save()
        on_disk = QuPathPathObjectHierarchy(self.entry.java_object.readHierarchy(), readonly=True)
        missing = ids - _annotation_ids(on_disk)
        if missing:
            raise RuntimeError(
                f"paquo did not write {len(missing)} new annotations of image {self.name!r} to "
                f"{self.entry.entry_path} although its slide is readable; they are still in "
                "memory: retry project.save(), or export them with write_geojson"
            )

    def __repr__(self) -> str:
        return f"ProjectImage({self.index}, {self.name!r})"


def _annotation_ids(hierarchy: Any) -> set[str]:
    return {_object_id(annotation.java_object) for annotation in hierarchy.annotations}


# QuPath 0.5 and 0.6 name the UUID accessors getID/setID; some 0.4 releases used getId/setId.
def _object_id(java_object: Any) -> str:
    getter = getattr(java_object, "getID", None) or java_object.getId
    return str(getter())


def _set_object_id(java_object: Any, value: str) -> None:
    from paquo.jpype_backend import JClass

    setter = getattr(java_object, "setID", None) or java_object.setId
    setter(JClass("java.util.UUID").fromString(value))


def _path_class(name: str, color: RGB | None = None) -> Any:
    """paquo's class for "Tumor" or a derived "Tumor: Positive" (colour on the last part)."""
    from paquo.classes import QuPathPathClass

    parts = [part.strip() for part in name.split(":")]
    parent = None
    for part in parts[:-1]:
        parent = QuPathPathClass(part, parent=parent)
    return QuPathPathClass(parts[-1], color=color, parent=parent)
