"""Where the click widget's accepted objects go: a QuPath GeoJSON file or a QuPath project image.

Each object is written as soon as it is accepted, under a UUID; extending it later (the next
part, from a neighbouring viewport) rewrites that same object in place. GeoJSON writes are atomic
and take turns with other writers through the file's lock (:func:`histoclick.qupath.geojson.
edit_geojson`); a project is saved after each change (:meth:`histoclick.qupath.Project.save`).
Geometries are level-0 pixels.

The objects there are kept in memory and updated with what the target itself writes, so a save
costs the write, not a read of the whole file after it: the file's state (mtime, size, inode) is
recorded under the lock right after each write, and the file is read again only when that state
changed, i.e. when someone else wrote it. A project is read again when its image data changed on
disk (QuPath saved it). Objects histoclick created carry the metadata ``histoclick = "created"``
(as in QuPath projects); only those are deleted or reclassified unless ``force=True``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from histoclick.qupath import Annotation, ProjectImage, default_class_color, read_geojson
from histoclick.qupath.annotations import annotations_frame, for_qupath, frame_from_rows
from histoclick.qupath.geojson import (
    FileState,
    GeoJSONCache,
    GeoJSONEdit,
    edit_geojson,
    features_to_geodataframe,
    file_state,
)
from histoclick.qupath.project import OWNER_KEY, OWNER_VALUE


def created_by_histoclick(metadata: Mapping[str, str] | None) -> bool:
    """Whether an object's metadata marks it as histoclick's own (``histoclick = "created"``)."""
    return isinstance(metadata, Mapping) and metadata.get(OWNER_KEY) == OWNER_VALUE


class SaveTarget:
    """A GeoJSON file (created when missing) or a QuPath project image; at most one of them.

    With neither, :meth:`check` (and so every save) raises an error saying how to give one.
    ``reads`` counts the full reads of the file or project (the first, and one after each change
    made by someone else).
    """

    def __init__(
        self,
        geojson: str | os.PathLike | None = None,
        project_image: ProjectImage | None = None,
    ) -> None:
        if project_image is not None and geojson is not None:
            raise ValueError(
                "give either a ProjectImage (annotations go to its QuPath project) or "
                "geojson=, not both"
            )
        self.geojson = None if geojson is None else Path(geojson)
        self.project_image = project_image
        self.reads = 0
        self._frame: gpd.GeoDataFrame | None = None
        self._state: FileState | None = None  # the GeoJSON file's state that _frame shows
        self._cache = GeoJSONCache()  # what this target last wrote: edits skip reading the file

    def check(self) -> None:
        """Raise ValueError when there is nowhere to save."""
        if self.project_image is None and self.geojson is None:
            raise ValueError(
                "this widget has nowhere to save: create it with geojson='objects.geojson' or with "
                "an image of a QuPath project (open_project(path, mode='r+').image(name))"
            )

    @property
    def path(self) -> Path:
        """The file written: the GeoJSON file or the project's ``.qpproj``."""
        self.check()
        return self.project_image.project.path if self.project_image else self.geojson

    def save(self, annotation: Annotation, object_id: str | None = None) -> str:
        """Write ``annotation``: a new object when ``object_id`` is None, else in place of the
        object with that UUID. Returns the object's UUID."""
        self.check()
        frame = annotations_frame([annotation])
        if object_id is not None:
            frame["id"] = [object_id]
        if self.project_image is None:
            frame["metadata"] = [{OWNER_KEY: OWNER_VALUE}]
            edit = edit_geojson(self.geojson, put=frame, cache=self._cache)
            self._followed(edit, lambda old: _put(old, _as_read(edit.features, frame)))
            return edit.features[0]["id"]
        image = self.project_image
        if object_id is None:
            added = image.add_annotations(frame)
            object_id = added["id"].iloc[0]
            added["metadata"] = [{OWNER_KEY: OWNER_VALUE}]
            self._save_project(lambda old: _put(old, added))
        else:
            image.update_annotation(object_id, geometry=annotation.shape)
            shape = annotation.shape
            self._save_project(lambda old: _put(old, _with_geometry(old, object_id, shape)))
        return object_id

    def delete(self, object_id: str, *, force: bool = False) -> None:
        """Remove the object with UUID ``object_id``; its children stay (moved up a level).

        Raises PermissionError for an object histoclick did not create unless ``force``, and
        KeyError when there is no such object.
        """
        self._check_editable(object_id, force, "delete")
        if self.project_image is None:
            edit = edit_geojson(self.geojson, delete=[object_id], cache=self._cache)
            self._followed(edit, lambda old: _deleted(old, object_id))
            return
        self.project_image.delete_annotations([object_id], force=force)
        self._save_project(lambda old: _deleted(old, object_id))

    def reclassify(self, object_id: str, classification: str, *, force: bool = False) -> None:
        """Give the object with UUID ``object_id`` the class ``classification`` (nothing else
        changes). Raises as :meth:`delete`."""
        self._check_editable(object_id, force, "reclassify")
        if self.project_image is None:
            edit = edit_geojson(
                self.geojson, reclassify={object_id: classification}, cache=self._cache
            )
            color = default_class_color(classification)
            self._followed(edit, lambda old: _reclassified(old, object_id, classification, color))
            return
        self.project_image.update_annotation(object_id, classification=classification, force=force)
        color = self.project_image.project.class_colors.get(classification)
        self._save_project(lambda old: _reclassified(old, object_id, classification, color))

    def read(self) -> gpd.GeoDataFrame:
        """The objects saved there (level-0 pixels); empty before the first save.

        The frame in memory, unless the file (or the project image's data) changed on disk since
        this target last read or wrote it: then it is read again.
        """
        if self.project_image is not None:
            image = self.project_image
            if image._changed_on_disk() and not image.project.unsaved:
                image.project.reload()  # QuPath saved the image: take its version
                self._frame = None
            if self._frame is None:
                self._frame = image.annotations()
                self.reads += 1
            return self._frame
        state = None if self.geojson is None else file_state(self.geojson)
        if state is None:
            self._frame, self._state = frame_from_rows([], []), None
        elif self._frame is None or state != self._state:
            # The state before the read: a write in between only causes one more read later.
            self._frame, self._state = read_geojson(self.geojson), state
            self.reads += 1
        return self._frame

    def _check_editable(self, object_id: str, force: bool, verb: str) -> None:
        frame = self.read()
        rows = frame[frame["id"] == object_id]
        if rows.empty:
            raise KeyError(f"{self.path.name} holds no object with id {object_id}")
        if not force and not created_by_histoclick(rows["metadata"].iloc[0]):
            name = rows["name"].iloc[0] or "unnamed"
            raise PermissionError(
                f"object {object_id} ({rows['classification'].iloc[0] or 'unclassified'}, {name}) "
                f"was not created by histoclick, so histoclick does not {verb} it; create the "
                "widget with edit_foreign=True to allow changing others' objects"
            )

    def _followed(self, edit: GeoJSONEdit, change: Any) -> None:
        """Bring the frame in memory up to the file just written: apply ``change`` when the file
        was still the one it shows, else read it again (someone else wrote in between)."""
        if self._frame is not None and edit.before == self._state:
            self._frame, self._state = change(self._frame), edit.after
        else:
            self._frame = None
            self.read()

    def _save_project(self, change: Any) -> None:
        frame = self.read()  # before the save: a version QuPath saved is taken, not ours kept
        self.project_image.project.save()
        self._frame = change(frame)


def _put(frame: gpd.GeoDataFrame, rows: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """``frame`` with ``rows`` in place of the rows with their ids, or appended."""
    rows = rows.set_axis(range(len(rows)))
    position = {object_id: i for i, object_id in enumerate(frame["id"]) if object_id is not None}
    replaced = [position.get(object_id) for object_id in rows["id"]]
    out = frame.copy()
    for row, at in enumerate(replaced):
        if at is not None:
            out.iloc[at] = rows.iloc[row]
    new = rows[[at is None for at in replaced]]
    if new.empty:
        return out
    out = pd.concat([out, new], ignore_index=True)
    return gpd.GeoDataFrame(out, geometry=frame.geometry.name)


def _as_read(features: list[dict[str, Any]], frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The rows a read of the file gives for ``features``, just written from ``frame``, without
    parsing their coordinates again (seconds for a ragged outline): the geometry is the one
    written, as QuPath gets it (:func:`~histoclick.qupath.annotations.for_qupath`)."""
    stubs = [
        {**feature, "geometry": {**feature["geometry"], "type": "Point", "coordinates": [0, 0]}}
        for feature in features
    ]
    rows = features_to_geodataframe(stubs)
    written = gpd.GeoSeries([for_qupath(g) for g in frame.geometry], index=rows.index)
    return rows.set_geometry(written)


def _with_geometry(frame: gpd.GeoDataFrame, object_id: str, geometry: Any) -> gpd.GeoDataFrame:
    """The row of ``object_id`` with a new geometry (level-0 pixels)."""
    row = frame[frame["id"] == object_id].copy()
    row.geometry = [geometry]
    return row


def _deleted(frame: gpd.GeoDataFrame, object_id: str) -> gpd.GeoDataFrame:
    """``frame`` without the row of ``object_id``; its children take its parent."""
    gone = frame["id"] == object_id
    if not gone.any():  # already gone (the frame was read after the change)
        return frame
    parent = frame.loc[gone, "parent_id"].iloc[0]
    out = frame[~gone].copy()
    out.loc[out["parent_id"] == object_id, "parent_id"] = parent
    return out.reset_index(drop=True)


def _reclassified(
    frame: gpd.GeoDataFrame, object_id: str, classification: str, color: Any
) -> gpd.GeoDataFrame:
    out = frame.copy()
    at = (out["id"] == object_id).to_numpy().nonzero()[0][0]
    out.iat[at, out.columns.get_loc("classification")] = classification
    out.iat[at, out.columns.get_loc("color")] = color
    return out
