"""Where the click widget's accepted objects go: a QuPath GeoJSON file or a QuPath project image.

Each object is written as soon as it is accepted, under a UUID; extending it later (the next
part, from a neighbouring viewport) rewrites that same object in place. GeoJSON writes are atomic
and take turns with other writers through the file's lock (:func:`histoclick.qupath.
write_geojson`); a project is saved after each change (:meth:`histoclick.qupath.Project.save`).
Geometries are level-0 pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd

from histoclick.qupath import Annotation, ProjectImage, read_geojson, write_geojson
from histoclick.qupath.annotations import annotations_frame, frame_from_rows


class SaveTarget:
    """A GeoJSON file (created when missing) or a QuPath project image; at most one of them.

    With neither, :meth:`check` (and so every save) raises an error saying how to give one.
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
            write_geojson(frame, self.geojson, mode="append" if object_id is None else "replace")
            return frame["id"].iloc[0]
        if object_id is None:
            object_id = self.project_image.add_annotations(frame)["id"].iloc[0]
        else:
            self.project_image.update_annotation(object_id, geometry=annotation.shape)
        self.project_image.project.save()
        return object_id

    def read(self) -> gpd.GeoDataFrame:
        """The objects already saved there (level-0 pixels); empty before the first save."""
        if self.project_image is not None:
            return self.project_image.annotations()
        if self.geojson is not None and self.geojson.exists():
            return read_geojson(self.geojson)
        return frame_from_rows([], [])
