"""QuPath in and out: QuPath GeoJSON files (no QuPath needed) and QuPath projects (via paquo).

Importing this package never starts Java: paquo's QuPath-backed modules load only when a project
is opened, and without QuPath that raises :class:`QuPathNotFoundError` with install steps.

Masks from a :class:`~histoclick.ClickSession` become QuPath annotations in one call each::

    annotation = Annotation.from_session(session, "Tumor")
    write_geojson([annotation], "tumour.geojson")                 # File > Import objects in QuPath
    project.image("slide.svs").add_annotations([annotation])      # then project.save()
"""

from histoclick.qupath.annotations import (
    COLUMNS,
    Annotation,
    annotations_frame,
    default_class_color,
    select_classes,
)
from histoclick.qupath.errors import (
    ImageUnreachableError,
    ProjectChangedError,
    QuPathNotFoundError,
    UnsupportedImageError,
    find_qupath,
)
from histoclick.qupath.geojson import (
    GeoJSONError,
    features_to_geodataframe,
    geodataframe_to_features,
    read_geojson,
    write_geojson,
)
from histoclick.qupath.project import Project, ProjectImage, open_project

__all__ = [
    "COLUMNS",
    "Annotation",
    "GeoJSONError",
    "ImageUnreachableError",
    "Project",
    "ProjectChangedError",
    "ProjectImage",
    "QuPathNotFoundError",
    "UnsupportedImageError",
    "annotations_frame",
    "default_class_color",
    "features_to_geodataframe",
    "find_qupath",
    "geodataframe_to_features",
    "open_project",
    "read_geojson",
    "select_classes",
    "write_geojson",
]
