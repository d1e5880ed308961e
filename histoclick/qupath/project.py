"""QuPath projects through paquo: list images, read annotations, add new ones, save explicitly.

paquo (and so QuPath) is imported only when a project is opened; without QuPath every entry point
raises :class:`~histoclick.qupath.errors.QuPathNotFoundError`. Written for paquo 0.9 and QuPath
0.5 / 0.6. Geometries are level-0 pixels, origin top-left.

Objects histoclick did not create are never changed or removed unless asked (``force=True``);
histoclick's own carry the object metadata ``histoclick = "created"``. Changes, new classes
included, stay in memory until :meth:`Project.save`, which refuses to overwrite an image whose
data QuPath (or anyone) saved since histoclick read it (``save(merge=True)`` merges,
:meth:`Project.reload` drops histoclick's changes), backs up each changed image's data folder
(and the class list) first, saves, and checks on disk that the changes arrived (paquo only logs
and skips when the image file is missing).

Entries histoclick cannot read pixels for (OMERO/http URIs, combined images, rotated, cropped,
affine or sparse images, Bio-Formats series other than the first) are still listed, with the
reason in :attr:`ProjectImage.problem`. For entries QuPath opened with OpenSlide, QuPath's frame
starts at the slide's ``openslide.bounds-x/y``: :meth:`ProjectImage.read_region` applies the offset.

>>> with open_project("my_project", mode="r+") as project:      # doctest: +SKIP
...     image = project.image("slide_01.svs")
...     image.add_annotations([Annotation.from_session(session, "Tumor")])
...     project.save()
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import geopandas as gpd
import pandas as pd

from histoclick.qupath.annotations import (
    RGB,
    AnnotationLike,
    annotations_frame,
    as_rgb,
    default_class_color,
    for_qupath,
    select_classes,
)
from histoclick.qupath.errors import (
    ImageUnreachableError,
    ProjectChangedError,
    UnsupportedImageError,
    require_paquo,
)
from histoclick.qupath.geojson import features_to_geodataframe

if TYPE_CHECKING:
    from histoclick.slides import Slide, Tile

BACKUP_FOLDER = "histoclick_backups"
# Object metadata (QuPath 0.5+) marking the annotations histoclick created.
OWNER_KEY, OWNER_VALUE = "histoclick", "created"

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

    return Project(QuPathProject(Path(path).expanduser(), mode=mode), read_only=mode == "r")


class Project:
    """A QuPath project: its images and classes. Use :func:`open_project` to make one.

    ``paquo`` is the underlying ``paquo.projects.QuPathProject`` for anything not covered here.
    """

    def __init__(self, paquo_project: Any, *, read_only: bool) -> None:
        self.paquo = paquo_project
        self.read_only = read_only
        # entry id -> (image, object id -> "added" | "updated" | "deleted"), not yet on disk
        self._pending: dict[str, tuple[ProjectImage, dict[str, str]]] = {}
        self._new_classes: dict[str, RGB] = {}
        self._backups: dict[str, Path] = {}
        # entry id -> data.qpdata's (mtime_ns, size, inode) when histoclick read it (None: no file yet)
        self._read_state: dict[str, tuple[int, int, int] | None] = {}
        self._builders_read: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None

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
        """One row per image, never failing on one odd entry.

        Columns: index, name, entry_id, uri, slide_path (None when the entry is not one local
        file), readable (histoclick can read its pixels), problem (why not, or None), width,
        height (level-0 pixels, from the project's record) and downsamples.
        """
        columns = ["index", "name", "entry_id", "uri", "slide_path", "readable", "problem",
                   "width", "height", "downsamples"]  # fmt: skip
        rows = []
        for image in self.images:
            problem = image.problem
            rows.append({
                "index": image.index,
                "name": image.name,
                "entry_id": image.entry_id,
                "uri": image.uris[0] if len(image.uris) == 1 else " ".join(image.uris),
                "slide_path": image.file_path,
                "readable": problem is None,
                "problem": problem,
                "width": image.width,
                "height": image.height,
                "downsamples": image.downsamples,
            })
        return pd.DataFrame(rows, columns=columns).astype({"width": "Int64", "height": "Int64"})

    @property
    def class_colors(self) -> dict[str, RGB]:
        """The project's classes: name ("Tumor", "Tumor: Positive") -> (r, g, b).

        Classes that added annotations need and that :meth:`save` has not written yet are included.
        """
        saved = {
            pc.id: (pc.color.to_rgb() if pc.color is not None else default_class_color(pc.id))
            for pc in self.paquo.path_classes
        }
        return {**saved, **self._new_classes}

    def add_image(self, path: str | os.PathLike, image_type: str | None = None) -> list[ProjectImage]:
        """Add a slide file to the project (paquo writes the project right away).

        Args:
            path: the image file.
            image_type: QuPath's image type, by paquo's name ("BRIGHTFIELD_H_E", "FLUORESCENCE",
                ...) or QuPath's ("Brightfield (H&E)"). None leaves it unset, as QuPath does
                until the user (or QuPath's auto-estimate) chooses.

        Returns:
            Every entry paquo added, in project order: a file with several images (scenes,
            series, the label and macro images a reader exposes) gives several.
        """
        self._check_writable()
        from paquo.images import QuPathImageType

        kind = None
        if image_type is not None:
            kinds = {member.name: member for member in QuPathImageType}
            kinds.update({member.value: member for member in QuPathImageType})
            if image_type not in kinds:
                raise ValueError(f"unknown QuPath image type {image_type!r}; use one of {sorted(kinds)}")
            kind = kinds[image_type]
        entries = self.paquo.add_image(Path(path).expanduser(), image_type=kind, return_list=True)
        added = {entry.entry_id for entry in entries}
        return [image for image in self.images if image.entry_id in added]

    @property
    def unsaved(self) -> int:
        """Number of annotations added, updated or deleted since the last save (in memory only)."""
        return sum(len(changes) for _, changes in self._pending.values())

    def save(self, *, merge: bool = False) -> dict[str, Path]:
        """Write the changed annotations, then the classes they introduced, to disk.

        An image whose ``data.qpdata`` changed on disk since histoclick read it (QuPath, or another
        process, saved it) is not overwritten: :class:`ProjectChangedError` says so, and nothing
        of that image is written. ``merge=True`` then reads the data on disk and applies
        histoclick's own changes to it (additions, and updates and deletions of histoclick's
        objects, by UUID), so the other side's work is kept; :meth:`reload` drops histoclick's
        unsaved changes instead.

        Before an image's data is first written, its data folder is copied to
        ``<project>/histoclick_backups/<time>-<entry id>``; before the class list is changed,
        ``classifiers/classes.json`` is copied to ``<time>-classes.json`` there. After writing,
        the image's data file is read back and must hold every change.

        Returns:
            entry id -> backup folder, for the images backed up so far.

        Raises:
            ImageUnreachableError: when an image file is missing (nothing is written for it).
            ProjectChangedError: when an image's data changed on disk and ``merge`` is False.
            RuntimeError: when the data file read back lacks a change.
        """
        self._check_writable()
        for image, _ in self._pending.values():
            image._check_unchanged_on_disk(merge)
        # QuPath's classes are JVM-wide singletons: the colour is set in memory before the image
        # data that refers to the class is written, and the class list after it.
        classes = {name: _path_class(name, color) for name, color in self._new_classes.items()}
        for name, path_class in classes.items():
            path_class.color = self._new_classes[name]
        for entry_id, (image, changes) in list(self._pending.items()):
            if entry_id not in self._backups or image._changed_on_disk():
                self._backups[entry_id] = image._backup()
            if image._changed_on_disk():
                image._take_disk_version(changes)
            image._save(changes)
            del self._pending[entry_id]
        if classes:
            self._backup_classes()
            # Classes QuPath (or anyone) saved since the project was opened stay in the list.
            known = list(self.paquo.path_classes)
            names = {path_class.id for path_class in known}
            for name, color in {**self._classes_on_disk(), **self._new_classes}.items():
                if name not in names:
                    path_class = classes.get(name) or _path_class(name, color)
                    path_class.color = color
                    known.append(path_class)
                    names.add(name)
            self.paquo.path_classes = known
            self._new_classes.clear()
        self.paquo.save(images=False)
        return dict(self._backups)

    def reload(self) -> int:
        """Forget unsaved changes and cached image data: the next read sees the files on disk.

        Returns:
            The number of annotation changes dropped.
        """
        dropped = self.unsaved
        self._pending.clear()
        self._new_classes.clear()
        self._read_state.clear()
        for entry in self.paquo.images:
            _forget_image_data(entry)
        return dropped

    def _server_builders(self) -> dict[str, dict[str, Any]]:
        """entry id -> serverBuilder from ``project.qpproj``, read again only when the file changed."""
        qpproj = Path(self.paquo.path)
        stat = qpproj.stat()
        key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._builders_read is None or self._builders_read[0] != key:
            records = json.loads(qpproj.read_text(encoding="utf-8"))["images"]
            builders = {str(r.get("entryID")): r.get("serverBuilder") or {} for r in records}
            self._builders_read = (key, builders)
        return self._builders_read[1]

    def _classes_on_disk(self) -> dict[str, RGB]:
        """The class list in ``classifiers/classes.json`` now: name -> (r, g, b)."""
        source = self.path / "classifiers" / "classes.json"
        if not source.is_file():
            return {}
        records = json.loads(source.read_text(encoding="utf-8")).get("pathClasses", [])
        return {r["name"]: ((r["color"] >> 16) & 255, (r["color"] >> 8) & 255, r["color"] & 255) for r in records}

    def _backup_classes(self) -> None:
        source = self.path / "classifiers" / "classes.json"
        if source.is_file():
            target = self.path / BACKUP_FOLDER / f"{_stamp()}-classes.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError(
                f"{self.path} was opened read-only; open it with open_project(path, mode='r+') "
                "to add annotations"
            )

    def _class_colors_for(
        self, frame: gpd.GeoDataFrame, class_colors: Mapping[str, RGB]
    ) -> tuple[dict[str, RGB], dict[str, RGB]]:
        """Colours of the frame's classes, and those of the classes the project lacks.

        Existing project classes keep their colour (they are never modified). Nothing changes
        until the caller records the new classes.
        """
        existing = self.class_colors
        added: dict[str, RGB] = {}
        for name, color in zip(frame["classification"], frame["color"]):
            if name is None or name in existing or name in added:
                continue
            chosen = class_colors.get(name) or color or default_class_color(name)
            added[name] = as_rgb(chosen)
        return {**existing, **added}, added

    def __enter__(self) -> Project:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None and (self.unsaved or self._new_classes):
            warnings.warn(
                f"{self.unsaved} annotations (classes {sorted(self._new_classes)}) added to "
                f"{self.path} were not saved; "
                "call project.save() before leaving the with-block",
                stacklevel=2,
            )

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writable"
        return f"Project({str(self.path)!r}, {len(self.paquo.images)} images, {mode})"


class ProjectImage:
    """One image of a project. ``entry`` is the ``paquo.images.QuPathProjectImageEntry``.

    Coordinates are level-0 pixels of the image as QuPath shows it (its annotations' frame).
    """

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
    def uris(self) -> list[str]:
        """Every URI the entry's image is built from (one for a plain file)."""
        return [str(uri.toString()) for uri in self.entry.java_object.getURIs()]

    @property
    def uri(self) -> str:
        """The one URI of the entry's image; ImageUnreachableError for a combined image."""
        uris = self.uris
        if len(uris) != 1:
            raise ImageUnreachableError(self._unreachable(f"it combines {len(uris)} images ({', '.join(uris)})"))
        return uris[0]

    @property
    def server_builder(self) -> dict[str, Any]:
        """The entry's ``serverBuilder`` as QuPath wrote it in ``project.qpproj``.

        ``builderType`` "uri" is a file opened by a reader (``providerClassName``, ``args``);
        "rotated", "cropped", "affine", "sparse", ... wrap or combine other builders.
        """
        return self.project._server_builders().get(self.entry_id, {})

    @property
    def file_path(self) -> Path | None:
        """The local file behind the entry, or None when it is not one local file (see :attr:`problem`)."""
        uris = self.uris
        if len(uris) != 1 or urlsplit(uris[0]).scheme != "file":
            return None
        from paquo.images import ImageProvider

        return Path(str(ImageProvider.path_from_uri(uris[0])))

    @property
    def slide_path(self) -> Path:
        """Where the project expects the slide file (it may be missing: see :meth:`is_readable`).

        Raises:
            ImageUnreachableError: when the entry is not one local file (OMERO, http, combined).
        """
        path = self.file_path
        if path is None:
            raise ImageUnreachableError(self._unreachable(self._not_a_file()))
        return path

    @property
    def problem(self) -> str | None:
        """Why histoclick cannot read this entry's pixels, or None when it can."""
        if self.file_path is None:
            return self._not_a_file()
        unsupported = _unsupported_builder(self.server_builder)
        if unsupported:
            return unsupported
        if not self.file_path.is_file():
            return f"the slide file is missing from {self.file_path}"
        return None

    def is_readable(self) -> bool:
        """Whether histoclick can read the entry's pixels (:attr:`problem` is None)."""
        return self.problem is None

    @property
    def width(self) -> int | None:
        """Level-0 width in pixels (None when QuPath's record of the image cannot be read)."""
        return self._server_size("width")

    @property
    def height(self) -> int | None:
        """Level-0 height in pixels (None when QuPath's record of the image cannot be read)."""
        return self._server_size("height")

    @property
    def downsamples(self) -> list[float] | None:
        """Downsample of each pyramid level as QuPath sees it (1.0 first), or None (see width)."""
        try:
            return [float(level["downsample"]) for level in self.entry.downsample_levels]
        except Exception:  # noqa: BLE001 - any failure of paquo/QuPath to build the server
            return None

    def _server_size(self, name: str) -> int | None:
        try:
            return int(getattr(self.entry, name))
        except Exception:  # noqa: BLE001 - any failure of paquo/QuPath to build the server
            return None

    @property
    def slide_offset(self) -> tuple[int, int]:
        """Level-0 ``(x, y)`` of the entry's origin in the slide file's own frame.

        QuPath's OpenSlide reader crops the slide to ``openslide.bounds-x/-y/-width/-height``
        (MRXS and other formats with a scanned-area box), so its (0, 0) is the file's
        (bounds-x, bounds-y); other readers show the whole file: (0, 0).
        """
        if "openslide" not in str(self.server_builder.get("providerClassName", "")).lower():
            return 0, 0
        with self.open_slide() as slide:
            properties = slide.properties
        return (int(properties.get("openslide.bounds-x", 0)), int(properties.get("openslide.bounds-y", 0)))

    def open_slide(self) -> Slide:
        """Open the slide file with :func:`histoclick.open_slide`, in the file's own frame.

        Use :meth:`read_region` for pixels in the entry's (QuPath's) frame, or add
        :attr:`slide_offset` to the entry's coordinates.
        """
        from histoclick.slides import open_slide

        self.ensure_readable("open its slide")
        return open_slide(self.slide_path)

    def read_region(self, x: float, y: float, width: int, height: int, **resolution: float | None) -> Tile:
        """A tile whose top-left corner is level-0 ``(x, y)`` in the entry's (QuPath's) frame.

        As :meth:`histoclick.slides.Slide.read_region` (``resolution``: one of magnification=,
        mpp=, downsample=), with :attr:`slide_offset` applied; the tile's ``origin`` is in the
        entry's frame, so its masks line up with the annotations.
        """
        from histoclick.slides import Tile

        dx, dy = self.slide_offset
        with self.open_slide() as slide:
            tile = slide.read_region(x + dx, y + dy, width, height, **resolution)
        origin = (tile.origin[0] - dx, tile.origin[1] - dy)
        return Tile(tile.image, origin, tile.downsample, tile.magnification)

    def annotations(self, classes: str | Iterable[str] | None = None) -> gpd.GeoDataFrame:
        """The image's annotations (not detections) as the table of :mod:`.annotations`.

        ``classes`` keeps only those class names. Annotations added since the last save are
        included.
        """
        frame = features_to_geodataframe(self._hierarchy.to_geojson())
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
        parent: str | None = None,
    ) -> gpd.GeoDataFrame:
        """Add annotations (masks or geometries with class, name, measurements) to this image.

        ``parent`` places them in QuPath's hierarchy: None at the top, an annotation's UUID under
        that annotation, "containing" under the smallest existing annotation that contains each
        (at the top when none does). Each added object carries the metadata
        ``histoclick = "created"`` (QuPath 0.5+), which marks it as histoclick's own for
        :meth:`update_annotation` and :meth:`delete_annotations`.

        Takes what :func:`histoclick.qupath.annotations_frame` takes; masks need their ``tile``.
        Classes the project lacks are recorded with ``class_colors`` or the default colour and
        written by :meth:`Project.save`; existing classes and objects are left untouched. Rows
        that carry a UUID keep it. All rows are added or none: every QuPath object is built
        before the first one enters the image. Nothing reaches the disk until
        :meth:`Project.save`.

        Returns:
            The added annotations with the ids and class colours they have in QuPath.

        Raises:
            ImageUnreachableError: when the slide file is missing (QuPath could not save).
            ValueError: when an id is already in the image (the same annotations twice), or a
                class name is one QuPath refuses.
        """
        self.project._check_writable()
        self._ensure_savable()
        frame = annotations_frame(
            annotations, tile=tile, simplify_tolerance=simplify_tolerance, max_vertices=max_vertices
        )
        if frame.empty:
            return frame
        if (frame["object_type"] != "annotation").any():
            raise ValueError("only annotations can be added; the table holds other object types")
        given = [i for i in frame["id"] if i is not None]
        repeated = sorted(_annotation_ids(self._hierarchy).intersection(given))
        repeated += sorted({i for i in given if given.count(i) > 1} - set(repeated))
        if repeated:
            raise ValueError(
                f"image {self.name!r} already holds (or the table repeats) annotations with ids "
                f"{repeated[:3]}; they were added before"
            )
        given_colors = {name: as_rgb(color) for name, color in (class_colors or {}).items()}
        colors, new_classes = self.project._class_colors_for(frame, given_colors)
        objects = [
            self._build(position, row, geometry)
            for position, (row, geometry) in enumerate(zip(frame.itertuples(index=False), frame.geometry))
        ]
        parents = self._parents_for(frame.geometry, parent)
        hierarchy = self._hierarchy.java_object
        for obj, above in zip(objects, parents):
            if above is None:
                hierarchy.addObject(obj.java_object)
            else:
                hierarchy.addObjectBelowParent(above, obj.java_object, True)
        _refresh_proxies(self._hierarchy)
        ids = [_object_id(obj.java_object) for obj in objects]
        self._record({object_id: "added" for object_id in ids})
        for name, color in new_classes.items():
            self.project._new_classes.setdefault(name, color)
        added = frame.copy()
        added["id"] = ids
        added["color"] = [colors.get(c) if c is not None else None for c in added["classification"]]
        return added

    def _build(self, position: int, row: Any, geometry: Any) -> Any:
        """The complete QuPath object for one row (not yet in the image)."""
        from paquo.pathobjects import QuPathPathAnnotationObject

        path_class = None if row.classification is None else self._checked_class(position, row.classification)
        obj = QuPathPathAnnotationObject.from_shapely(for_qupath(geometry), path_class, row.measurements or None)
        metadata = getattr(obj.java_object, "getMetadata", None)  # QuPath 0.5+
        if metadata is not None:
            metadata().putAll({**(getattr(row, "metadata", None) or {}), OWNER_KEY: OWNER_VALUE})
        if row.id is not None:
            _set_object_id(obj.java_object, row.id)
        if row.name is not None:
            obj.name = row.name
        if row.is_locked:
            obj.locked = True
        return obj

    def update_annotation(
        self,
        object_id: str,
        *,
        geometry: Any = None,
        classification: str | None = None,
        name: str | None = None,
        force: bool = False,
    ) -> None:
        """Change one of histoclick's annotations in memory (saved by :meth:`Project.save`).

        ``geometry`` in level-0 pixels; None leaves a field as it is. Objects histoclick did not
        create (a person's, another tool's) are refused unless ``force=True``.
        """
        self.project._check_writable()
        self._ensure_savable()
        obj = self._own_object(object_id, force, "change")
        if geometry is not None:
            obj.update_roi(for_qupath(geometry))
        if classification is not None:
            obj.update_path_class(self._checked_class(0, classification))
            if classification not in self.project.class_colors:
                self.project._new_classes[classification] = default_class_color(classification)
        if name is not None:
            obj.name = name
        # Marks the image data changed, as QuPath's editors do (paquo saves changed data only).
        self._hierarchy.java_object.fireHierarchyChangedEvent(self._hierarchy.java_object)
        self._record({object_id: "updated"})

    def delete_annotations(self, object_ids: Iterable[str], *, force: bool = False) -> None:
        """Remove histoclick's annotations by UUID in memory (saved by :meth:`Project.save`).

        Their child objects are kept (moved up to the parent). Objects histoclick did not create
        are refused unless ``force=True``; nothing is removed when one is refused or missing.
        """
        self.project._check_writable()
        self._ensure_savable()
        objects = [self._own_object(object_id, force, "delete") for object_id in object_ids]
        for obj in objects:
            self._hierarchy.java_object.removeObject(obj.java_object, True)
        _refresh_proxies(self._hierarchy)
        self._record({_object_id(obj.java_object): "deleted" for obj in objects})

    def _own_object(self, object_id: str, force: bool, verb: str) -> Any:
        from paquo.pathobjects import QuPathPathAnnotationObject

        matches = [
            QuPathPathAnnotationObject(java)
            for java in _java_annotations(self._hierarchy)
            if _object_id(java) == str(object_id)
        ]
        if not matches:
            raise KeyError(f"image {self.name!r} holds no annotation with id {object_id!r}")
        (obj,) = matches
        metadata = getattr(obj.java_object, "getMetadata", None)
        owner = None if metadata is None else metadata().get(OWNER_KEY)
        if not force and owner != OWNER_VALUE:
            raise PermissionError(
                f"annotation {object_id} of image {self.name!r} was not created by histoclick (a "
                f"person's or another tool's); histoclick does not {verb} it unless asked: pass force=True"
            )
        return obj

    def _record(self, changes: Mapping[str, str]) -> None:
        _, pending = self.project._pending.setdefault(self.entry_id, (self, {}))
        for object_id, change in changes.items():
            if pending.get(object_id) == "added" and change == "updated":
                continue  # still new to the file on disk
            if pending.get(object_id) == "added" and change == "deleted":
                del pending[object_id]
                continue
            pending[object_id] = change

    def _parents_for(self, geometries: Iterable[Any], parent: str | None) -> list[Any]:
        """The QuPath object each new annotation goes under (None: the top of the hierarchy)."""
        geometries = list(geometries)
        if parent is None:
            return [None] * len(geometries)
        from paquo.pathobjects import QuPathPathAnnotationObject

        existing = _java_annotations(self._hierarchy)
        if parent != "containing":
            matches = [java for java in existing if _object_id(java) == str(parent)]
            if not matches:
                raise KeyError(
                    f"parent={parent!r}: image {self.name!r} holds no annotation with that id; "
                    "pass an existing annotation's UUID, 'containing' or None"
                )
            return matches * len(geometries)
        candidates = [(QuPathPathAnnotationObject(java).roi, java) for java in existing]
        chosen = []
        for geometry in geometries:
            around = [(shape.area, java) for shape, java in candidates if shape.contains(geometry)]
            chosen.append(min(around, key=lambda item: item[0])[1] if around else None)
        return chosen

    @staticmethod
    def _checked_class(position: int, name: str) -> Any:
        try:
            return _path_class(name)
        except Exception as error:  # jpype's java.lang.IllegalArgumentException, paquo's ValueError
            raise ValueError(
                f"annotation {position}: QuPath refuses the class name {name!r} ({error}); use "
                "non-blank names, with ': ' only between a class and its derived class "
                "(e.g. 'Tumor: Positive')"
            ) from None

    @property
    def _hierarchy(self) -> Any:
        """paquo's hierarchy of this image; notes the data file's state when first read."""
        self.project._read_state.setdefault(self.entry_id, self._data_state())
        return self.entry.hierarchy

    def _data_state(self) -> tuple[int, int, int] | None:
        try:
            stat = (Path(self.entry.entry_path) / "data.qpdata").stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _changed_on_disk(self) -> bool:
        return self.project._read_state.get(self.entry_id, self._data_state()) != self._data_state()

    def _check_unchanged_on_disk(self, merge: bool) -> None:
        if merge or not self._changed_on_disk():
            return
        data = Path(self.entry.entry_path) / "data.qpdata"
        changes = self.project._pending[self.entry_id][1]
        raise ProjectChangedError(
            f"{data} (image {self.name!r}) changed on disk since histoclick read it (QuPath or "
            f"another process saved it); nothing was overwritten. histoclick's {len(changes)} "
            "unsaved changes are still in memory: project.save(merge=True) applies them to the "
            "data on disk, keeping the other side's objects; project.reload() drops them"
        )

    def _take_disk_version(self, changes: Mapping[str, str]) -> None:
        """Replace the image data in memory by the file on disk, with histoclick's changes applied."""
        fresh = self.entry.java_object.readImageData()
        hierarchy = fresh.getHierarchy()
        theirs = {str(o.getID()): o for o in hierarchy.getAnnotationObjects()}
        mine = {_object_id(java): java for java in _java_annotations(self._hierarchy)}
        for object_id, change in changes.items():
            if object_id in theirs and change in ("updated", "deleted"):
                hierarchy.removeObject(theirs.pop(object_id), True)
            if change == "deleted":
                continue
            obj = mine[object_id]
            above = obj.getParent()
            above_id = None if above is None or above.isRootObject() else str(above.getID())
            if above_id in theirs:
                hierarchy.addObjectBelowParent(theirs[above_id], obj, True)
            else:
                hierarchy.addObject(obj)
        _forget_image_data(self.entry)
        self.entry.__dict__["_image_data"] = fresh  # paquo's cached ImageData of this entry
        self.project._read_state[self.entry_id] = self._data_state()

    def ensure_readable(self, purpose: str) -> None:
        """Raise when histoclick cannot read the entry's pixels (:attr:`problem`), saying ``purpose``.

        Raises:
            ImageUnreachableError: the entry is not a local file, or the file is missing.
            UnsupportedImageError: the entry is a transform (rotation, crop, ...) or a series of
                its file that histoclick cannot reproduce.
        """
        problem = self.problem
        if problem is None:
            return
        if self.file_path is not None and self.file_path.is_file():
            raise UnsupportedImageError(
                f"image {self.name!r} (entry {self.entry_id}) of {self.project.path}: {problem}, so "
                f"histoclick cannot {purpose} without reading the wrong pixels. Add the file itself "
                "to the project (project.add_image) and use that entry"
            )
        raise ImageUnreachableError(self._unreachable(problem, purpose))

    def _ensure_savable(self) -> None:
        """paquo saves an entry's data only when its one local file exists."""
        path = self.file_path
        if path is None:
            raise ImageUnreachableError(self._unreachable(self._not_a_file(), "save annotations for it"))
        if not path.is_file():
            raise ImageUnreachableError(self._unreachable(
                f"the slide file is missing from {path}",
                "save annotations for it (paquo would skip them silently)",
            ))

    def _not_a_file(self) -> str:
        uris = self.uris
        if len(uris) != 1:
            return f"it combines {len(uris)} images ({', '.join(uris)}), which paquo cannot open"
        return f"its image is not a local file but {uris[0]} (paquo opens file: URIs only)"

    def _unreachable(self, problem: str, purpose: str = "use it") -> str:
        return (
            f"image {self.name!r} (entry {self.entry_id}) of {self.project.path}: {problem}, so "
            f"histoclick cannot {purpose}. Put the file back, or point the project at its new place "
            "with project.paquo.update_image_paths(try_relative=True) (or uri2uri={old_uri: new_uri}) "
            "and save the project; other images are not affected"
        )

    def _backup(self) -> Path:
        """Copy the image's data folder (data.qpdata, server.json, ...) aside; return the copy."""
        target = self.project.path / BACKUP_FOLDER / f"{_stamp()}-{self.entry_id}"
        source = Path(self.entry.entry_path)
        if source.is_dir():
            shutil.copytree(source, target)
        else:  # never saved yet: nothing to lose, but keep the record of where a backup would be
            target.mkdir(parents=True)
        return target

    def _save(self, changes: Mapping[str, str]) -> None:
        """Save through paquo, then prove the changes are in the data file on disk."""
        from paquo.hierarchy import QuPathPathObjectHierarchy

        self._ensure_savable()
        self.entry.save()
        on_disk = _annotation_ids(QuPathPathObjectHierarchy(self.entry.java_object.readHierarchy(), readonly=True))
        wrong = [i for i, change in changes.items() if (i in on_disk) != (change != "deleted")]
        if wrong:
            raise RuntimeError(
                f"paquo did not write {len(wrong)} annotation changes of image {self.name!r} to "
                f"{self.entry.entry_path} although its slide is readable; they are still in "
                "memory: retry project.save(), or export them with write_geojson"
            )
        self.project._read_state[self.entry_id] = self._data_state()

    def __repr__(self) -> str:
        return f"ProjectImage({self.index}, {self.name!r})"


# builderType values whose pixels are the file's own, in the file's frame (PyramidGeneratingServerBuilder
# only adds pyramid levels).
_SAME_PIXELS = {"uri", "pyramidize"}


def _unsupported_builder(builder: Mapping[str, Any]) -> str | None:
    """Why a serverBuilder's pixels differ from its file's as histoclick reads it, or None."""
    kind = builder.get("builderType", "uri")
    if kind not in _SAME_PIXELS:
        return (
            f"QuPath builds it as a {kind!r} image (serverBuilder builderType) from its file, a "
            "transform histoclick does not reproduce"
        )
    if kind == "pyramidize":
        return _unsupported_builder(builder.get("builder") or {})
    args = [str(arg) for arg in builder.get("args") or []]
    if "--series" in args[:-1]:
        series = args[args.index("--series") + 1]
        if series != "0":
            return (
                f"it is series {series} of a multi-series file (serverBuilder args {args}); histoclick "
                "reads the file's first image only"
            )
    return None


def _forget_image_data(entry: Any) -> None:
    """Drop paquo's cached image data of an entry (cached_property values live in __dict__)."""
    for cached in ("_image_data", "hierarchy", "_image_server", "_properties"):
        entry.__dict__.pop(cached, None)


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def _java_annotations(hierarchy: Any) -> list[Any]:
    """QuPath's own list of the hierarchy's annotations (paquo's proxy caches its list)."""
    return list(hierarchy.java_object.getAnnotationObjects())


def _refresh_proxies(hierarchy: Any) -> None:
    """Make paquo's cached object lists of a hierarchy follow changes made through QuPath's API."""
    for proxy in (hierarchy.annotations, hierarchy.detections):
        proxy.__dict__.pop("_list", None)


def _annotation_ids(hierarchy: Any) -> set[str]:
    return {_object_id(java) for java in _java_annotations(hierarchy)}


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
