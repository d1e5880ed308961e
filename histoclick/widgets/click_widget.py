"""ClickWidget: click-to-segment a slide in JupyterLab with SAM, and save the objects for QuPath.

Pointer events come from **ipyevents** on a plain ``ipywidgets.Image``. The picture (tile, mask,
outlines, click markers) is rendered in Python and sent as PNG bytes, so all the browser has to
report is where a click landed. ipyevents delivers ``click`` and ``contextmenu`` (right click)
with client and bounding-box coordinates, suppresses the browser's context menu, and ships a
prebuilt JupyterLab 4 and Voila extension: no JavaScript of ours to build or keep in step with
JupyterLab. (anywidget would need our own ES module for the same events; ipycanvas would draw
through its canvas protocol rather than one PNG per update.)

Frames: the viewport is ``size`` x ``size`` tile pixels read at a downsample (level-0 pixels per
tile pixel) from a level-0 origin; clicks are tile pixels ``(column, row)``; saved geometries
are level-0 pixels. A click's tile pixel is ``floor(x * size / displayed_width)`` with ``x`` the
CSS offset from the image's left edge, because the notebook may display the image scaled.

Objects larger than the viewport: when an accepted mask touches the viewport's border, the widget
offers to continue in the neighbouring viewport; the parts are merged (shapely union, level-0
pixels) and saved as one annotation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import ipywidgets as widgets
import numpy as np
import shapely
from ipyevents import Event
from shapely.geometry import MultiPolygon

from histoclick.geometry import as_multipolygon
from histoclick.models import SamModel
from histoclick.qupath import (
    Annotation,
    ProjectImage,
    default_class_color,
    read_geojson,
    write_geojson,
)
from histoclick.qupath.annotations import frame_from_rows
from histoclick.session import ClickResult, ClickSession, MultimaskPolicy
from histoclick.slides import Slide, open_slide
from histoclick.overlay import encode_png, render_overlay
from histoclick.widgets.viewport import SIDES, Viewport, zoom_levels

DEFAULT_CLASSES = ("Tumor", "Stroma", "Immune cells", "Necrosis", "Other")
PENDING_COLOR = (255, 215, 0)
_ARROWS = {"left": "◀", "up": "▲", "down": "▼", "right": "▶"}


@dataclass(frozen=True)
class Accepted:
    """What Accept did.

    ``geometry``: the object so far (all accepted parts merged), level-0 pixels. ``saved``: it was
    written as one annotation. ``open_sides``: neighbouring viewports the mask runs into, offered
    for continuing ("left", "right", "up", "down"); the object is saved only when none remain or
    :meth:`ClickWidget.finish` is called.
    """

    geometry: MultiPolygon
    saved: bool
    open_sides: tuple[str, ...]


class ClickWidget(widgets.VBox):
    """Click-to-segment viewer for a slide (or plain image) in JupyterLab or Voila.

    Left click adds a positive click (negative while the mode toggle says so), right click a
    negative one. Accept turns the mask into an annotation of the chosen class, appended to a
    GeoJSON file or added to the QuPath project the image belongs to.

    Args:
        slide: a slide or image path, an open :class:`~histoclick.slides.Slide`, or a
            :class:`~histoclick.qupath.ProjectImage` (annotations then go to its project, and the
            class list is the project's).
        model: a model from :func:`histoclick.load_model`.
        geojson: the GeoJSON file Accept appends to (created when missing). Not with a
            ProjectImage.
        classes: class names offered; default: the project's classes, else :data:`DEFAULT_CLASSES`.
        magnification, downsample: the viewport's resolution (at most one; default full resolution).
        origin: level-0 ``(x, y)`` of the first viewport; default the first tissue tile.
        size: viewport side in tile pixels (what SAM sees).
        display_width: CSS width of the image in the page (default ``size``).
        cache_dir: folder for image embeddings (default: the in-memory cache shared by sessions).
        multimask: passed to :class:`~histoclick.ClickSession`.
    """

    def __init__(
        self,
        slide: str | os.PathLike | Slide | ProjectImage,
        model: SamModel,
        *,
        geojson: str | os.PathLike | None = None,
        classes: list[str] | tuple[str, ...] | None = None,
        magnification: float | None = None,
        downsample: float | None = None,
        origin: tuple[float, float] | None = None,
        size: int = 512,
        display_width: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        multimask: MultimaskPolicy = "first",
    ) -> None:
        self.project_image = slide if isinstance(slide, ProjectImage) else None
        if self.project_image is not None and geojson is not None:
            raise ValueError(
                "give either a ProjectImage (annotations go to its QuPath project) or "
                "geojson=, not both"
            )
        self._owns_slide = not isinstance(slide, Slide)
        if self.project_image is not None:
            self.slide = self.project_image.open_slide()
        else:
            self.slide = slide if isinstance(slide, Slide) else open_slide(slide)
        self.model = model
        self.geojson = None if geojson is None else Path(geojson)
        self.cache_dir = cache_dir
        self.multimask = multimask
        self.class_colors = self.project_image.project.class_colors if self.project_image else {}
        classes = list(classes or self.class_colors or DEFAULT_CLASSES)

        start = self.slide.downsample_for(magnification=magnification, downsample=downsample)
        self.viewport = Viewport((0, 0), size, start, self.slide.dimensions)
        self._tissue: dict[float, list[tuple[int, int]]] = {}
        if origin is None:
            tiles = self._tissue_tiles(start)
            origin = tiles[0] if tiles else (0, 0)
        self.viewport = replace(self.viewport, origin=origin)
        self.session: ClickSession | None = None
        self.saved_count = 0
        self.last_error: str | None = None
        self.last_update_seconds: float | None = None
        self._parts: list[Annotation] = []
        self._visited: set[tuple[tuple[int, int], float]] = set()
        self._open_sides: tuple[str, ...] = ()
        self._message = ""
        self._callbacks: list[Callable[[ClickWidget], Any]] = []
        self._annotations = self._read_annotations()

        self.image = widgets.Image(format="png", width=str(display_width or size))
        self._events = Event(
            source=self.image, watched_events=["click", "contextmenu"], prevent_default_action=True
        )
        self._events.on_dom_event(self._on_pointer)
        self.mode = widgets.ToggleButtons(
            options=[("+ positive", True), ("− negative", False)],
            tooltips=["left click adds a positive click", "left click adds a negative click"],
            style={"button_width": "90px"},
        )
        self.class_dropdown = widgets.Dropdown(
            options=classes,
            value=classes[0],
            description="Class",
            layout=widgets.Layout(width="220px"),
        )
        self.zoom_dropdown = widgets.Dropdown(
            options=self._zoom_options([*zoom_levels(self.slide.dimensions, size), start]),
            value=start,
            description="Zoom",
            layout=widgets.Layout(width="160px"),
        )
        self.zoom_dropdown.observe(
            lambda change: self._guard(self.set_downsample, change["new"]), "value"
        )
        self.annotation_dropdown = widgets.Dropdown(
            description="Objects", layout=widgets.Layout(width="240px")
        )
        self.status = widgets.HTML()
        self._continue_row = widgets.HBox(layout=widgets.Layout(display="none"))

        toolbar = widgets.HBox(
            [
                self.mode,
                self._button("Undo", "forget the last click", self.undo),
                self._button("Reset", "forget every click in this viewport", self.reset),
                self.class_dropdown,
                self._button(
                    "Accept",
                    "save the mask as an annotation of the chosen class",
                    self.accept,
                    style="success",
                ),
            ]
        )
        navigation = widgets.HBox(
            [
                *(
                    self._button(
                        _ARROWS[side], f"pan {side} by one viewport", self.pan, side, width="36px"
                    )
                    for side in ("left", "up", "down", "right")
                ),
                self.zoom_dropdown,
                self._button(
                    "Next tissue", "jump to the next viewport with tissue", self.next_tissue_tile
                ),
                self.annotation_dropdown,
                self._button(
                    "Go to", "centre the viewport on the chosen object", self._go_to_selected
                ),
            ]
        )
        super().__init__([toolbar, navigation, self.image, self._continue_row, self.status])
        self._update_annotation_list()
        self._show(self.viewport)

    # ----- clicks ---------------------------------------------------------------------------

    def handle_click(
        self,
        x_display: float,
        y_display: float,
        button: int = 0,
        displayed_size: tuple[float, float] | None = None,
    ) -> ClickResult:
        """A click on the displayed image: ``(x, y)`` CSS pixels from its top-left corner.

        ``button`` 0 (left) follows the mode toggle, 2 (right) is always negative;
        ``displayed_size`` is the image's displayed ``(width, height)`` (default: unscaled).
        """
        x, y = self.viewport.display_to_tile(x_display, y_display, displayed_size)
        return self.click(x, y, positive=button != 2 and self.mode.value)

    def click(self, x: float, y: float, positive: bool = True) -> ClickResult:
        """Add a click at tile pixel ``(x, y)`` (column, row), predict, and redraw."""
        started = time.perf_counter()
        result = self.session.click(x, y, positive)
        sign = "+" if positive else "−"
        self._message = f"click {len(self.session.clicks)} ({sign}) at tile pixel ({x:g}, {y:g})"
        self._refresh(started)
        return result

    def undo(self) -> None:
        """Forget the last click and redraw."""
        self.session.undo()
        self._message = "undone"
        self._refresh()

    def reset(self) -> None:
        """Forget every click in this viewport (accepted parts stay)."""
        self.session.reset()
        self._message = "clicks cleared"
        self._refresh()

    # ----- accepting and saving --------------------------------------------------------------

    def accept(self) -> Accepted:
        """Take the current mask as (part of) an object.

        When the mask touches a border of the viewport with a slide beyond it not yet visited for
        this object, the part is kept and continuing there is offered (:meth:`continue_to`);
        otherwise the object is saved (:meth:`finish`).
        """
        if self.session.last is None:
            raise ValueError("nothing to accept: click on the object first")
        self._check_target()
        part = Annotation.from_session(self.session, self.class_dropdown.value)
        # A viewport at the slide's edge extends past it; QuPath objects must stay on the image.
        part = replace(
            part,
            shape=as_multipolygon(
                part.shape.intersection(shapely.box(0, 0, *self.slide.dimensions))
            ),
        )
        if part.shape.is_empty:
            raise ValueError(
                "the mask is empty: add a positive click inside the object, then Accept"
            )
        self._parts.append(part)
        self._visited.add((self.viewport.origin, self.viewport.downsample))
        touching = _touching_sides(self.session.last.mask)
        self._open_sides = tuple(
            side
            for side in touching
            if (neighbour := self.viewport.neighbour(side)) is not None
            and (neighbour.origin, neighbour.downsample) not in self._visited
        )
        merged = self._merged().shape
        self.session.reset()
        if not self._open_sides:
            self.finish()
            return Accepted(merged, True, ())
        self._message = (
            f"part {len(self._parts)} kept; the object runs on to the "
            f"{', '.join(self._open_sides)}: continue there, or Save now"
        )
        self._refresh()
        return Accepted(merged, False, self._open_sides)

    def continue_to(self, side: str) -> None:
        """Move to the neighbouring viewport on ``side`` to add the next part of the object."""
        if not self._parts:
            raise ValueError("no object in progress: Accept a mask that touches the border first")
        self.pan(side)

    def finish(self) -> Path:
        """Save the object in progress (its parts merged) as one annotation; return the file written."""
        if not self._parts:
            raise ValueError("no accepted mask to save: click on an object and press Accept")
        self._check_target()
        annotation = self._merged()
        if self.project_image is not None:
            self.project_image.add_annotations([annotation])
            self.project_image.project.save()
            written = self.project_image.project.path
        else:
            written = write_geojson([annotation], self.geojson, mode="append")
        self.saved_count += 1
        self._message = (
            f"saved {annotation.classification} object ({len(self._parts)} part(s)) to "
            f"{written.name}"
        )
        self._parts, self._visited, self._open_sides = [], set(), ()
        self._annotations = self._read_annotations()
        self._update_annotation_list()
        self._refresh()
        return written

    def discard(self) -> None:
        """Drop the accepted parts of the object in progress without saving them."""
        self._parts, self._visited, self._open_sides = [], set(), ()
        self._message = "object discarded"
        self._refresh()

    def annotations(self) -> gpd.GeoDataFrame:
        """The annotations already saved where this widget saves (level-0 pixels)."""
        return self._annotations

    # ----- navigation ------------------------------------------------------------------------

    def pan(self, side: str) -> None:
        """Move one viewport to ``side`` ("left", "right", "up", "down")."""
        neighbour = self.viewport.neighbour(side)
        if neighbour is None:
            raise ValueError(f"cannot pan {side}: the viewport is at the slide's edge")
        self._show(neighbour)

    def go_to(self, x0: float, y0: float) -> None:
        """Centre the viewport on level-0 ``(x0, y0)`` (kept on the slide)."""
        self._show(self.viewport.centred_on(x0, y0))

    def jump_to_annotation(self, index: int) -> None:
        """Centre the viewport on saved annotation ``index`` (row of :meth:`annotations`)."""
        minx, miny, maxx, maxy = self._annotations.geometry.iloc[index].bounds
        self.go_to((minx + maxx) / 2, (miny + maxy) / 2)

    def next_tissue_tile(self) -> None:
        """Jump to the next grid viewport with tissue (row-major order, wrapping around)."""
        ds = self.viewport.downsample
        tiles = self._tissue_tiles(ds)
        if not tiles:
            raise ValueError(
                f"no tissue found at {self._zoom_label(ds)}: try another zoom or pan by hand"
            )
        x, y = self.viewport.origin
        after = [t for t in tiles if (t[1], t[0]) > (y, x)]
        self._show(replace(self.viewport, origin=(after or tiles)[0]))

    def set_downsample(self, downsample: float) -> None:
        """Change the resolution, keeping the viewport's centre."""
        if downsample == self.viewport.downsample:
            return
        minx, miny, maxx, maxy = self.viewport.bounds
        self._show(self.viewport.centred_on((minx + maxx) / 2, (miny + maxy) / 2, downsample))

    def set_magnification(self, magnification: float) -> None:
        """Change the magnification (needs the slide's objective power), keeping the centre."""
        self.set_downsample(self.slide.downsample_for(magnification=magnification))

    # ----- state and hooks -------------------------------------------------------------------

    def on_update(self, callback: Callable[[ClickWidget], Any]) -> None:
        """Call ``callback(widget)`` after every redraw (click, undo, navigation, save)."""
        self._callbacks.append(callback)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable summary: viewport, clicks (tile pixels), prediction, object in progress."""
        last = self.session.last
        x, y = self.viewport.origin
        return {
            "viewport": {
                "x": x,
                "y": y,
                "size": self.viewport.size,
                "downsample": self.viewport.downsample,
                "magnification": self._magnification(),
            },
            "clicks": [
                {"x": c.x, "y": c.y, "positive": c.is_positive} for c in self.session.clicks
            ],
            "mask_pixels": int(last.mask.sum()) if last else 0,
            "predicted_iou": last.predicted_iou if last else None,
            "model_seconds": last.model_seconds if last else None,
            "update_seconds": self.last_update_seconds,
            "pending_parts": len(self._parts),
            "open_sides": list(self._open_sides),
            "saved": self.saved_count,
            "error": self.last_error,
        }

    def close(self) -> None:
        """Close the widget (and the slide, when the widget opened it)."""
        if self._owns_slide:
            self.slide.close()
        super().close()

    # ----- internals -------------------------------------------------------------------------

    def _show(self, viewport: Viewport) -> None:
        """Read ``viewport``, start a session on it (embedding cached) and redraw."""
        where = f"{self._zoom_label(viewport.downsample)} at {viewport.origin}"
        self.status.value = f"<i>reading {where} and computing its embedding…</i>"
        tile = self.slide.read_region(
            *viewport.origin, viewport.size, viewport.size, downsample=viewport.downsample
        )
        self.session = ClickSession(
            self.model, tile, cache_dir=self.cache_dir, multimask=self.multimask
        )
        self.viewport = viewport
        levels = [ds for _, ds in self.zoom_dropdown.options]
        if viewport.downsample not in levels:
            self.zoom_dropdown.options = self._zoom_options([*levels, viewport.downsample])
        self.zoom_dropdown.value = viewport.downsample
        self._message = (
            f"viewport {self._zoom_label(viewport.downsample)} at level-0 {viewport.origin}"
        )
        self._refresh()

    def _refresh(self, started: float | None = None) -> None:
        started = time.perf_counter() if started is None else started
        last = self.session.last
        box = shapely.box(*self.viewport.bounds)
        visible = (
            self._annotations[self._annotations.intersects(box)]
            if len(self._annotations)
            else self._annotations
        )
        outlines = [
            (geometry, self._class_color(cls, color))
            for geometry, cls, color in zip(
                visible.geometry, visible["classification"], visible["color"], strict=True
            )
        ]
        if self._parts:
            outlines.append((self._merged().shape, PENDING_COLOR))
        picture = render_overlay(
            self.session.tile, last.mask if last else None, self.session.clicks, outlines
        )
        self.image.value = encode_png(picture)
        self.last_update_seconds = time.perf_counter() - started
        self._update_status()
        self._update_continue_row()
        for callback in self._callbacks:
            callback(self)

    def _update_status(self) -> None:
        clicks = self.session.clicks
        positive = sum(c.is_positive for c in clicks)
        parts = [f"<b>{len(clicks)} clicks</b> ({positive}+, {len(clicks) - positive}−)"]
        last = self.session.last
        if last is not None:
            parts.append(f"model {last.model_seconds:.3f} s")
            parts.append(f"predicted IoU {last.predicted_iou:.3f}")
        parts.append(f"{self._zoom_label(self.viewport.downsample)} at {self.viewport.origin}")
        if self._message:
            parts.append(self._message)
        if self.last_error:
            parts.append(f"<span style='color:#c00'>{self.last_error}</span>")
        self.status.value = " · ".join(parts)

    def _update_continue_row(self) -> None:
        if not self._parts:
            self._continue_row.layout.display = "none"
            return
        buttons = [
            self._button(
                f"Continue {_ARROWS[side]}",
                f"continue the object in the viewport to the {side}",
                self.continue_to,
                side,
            )
            for side in self._open_sides
        ]
        self._continue_row.children = [
            widgets.HTML(f"Object in progress ({len(self._parts)} part(s)):"),
            *buttons,
            self._button(
                "Save now",
                "save the accepted parts as one annotation",
                self.finish,
                style="success",
            ),
            self._button("Discard", "drop the accepted parts", self.discard, style="danger"),
        ]
        self._continue_row.layout.display = "flex"

    def _update_annotation_list(self) -> None:
        frame = self._annotations
        self.annotation_dropdown.options = [
            (f"{i + 1}: {cls or 'unclassified'}", i)
            for i, cls in enumerate(frame["classification"])
        ]

    def _go_to_selected(self) -> None:
        if self.annotation_dropdown.value is None:
            raise ValueError("no saved object to go to yet")
        self.jump_to_annotation(self.annotation_dropdown.value)

    def _merged(self) -> Annotation:
        """The object in progress: parts unioned in level-0 pixels, measurements combined."""
        shapes = [part.shape for part in self._parts]
        merged = shapely.union_all(shapes)
        # Viewport origins are whole level-0 pixels; a fractional viewport extent leaves seams
        # up to half a pixel wide between neighbours, closed here.
        seam = abs(self.viewport.size * self.viewport.downsample - self.viewport.extent)
        if len(shapes) > 1 and seam > 0:
            merged = merged.buffer(seam, join_style="mitre").buffer(-seam, join_style="mitre")
        measurements = {
            "histoclick clicks": sum(p.measurements["histoclick clicks"] for p in self._parts),
            "histoclick predicted IoU": min(
                p.measurements["histoclick predicted IoU"] for p in self._parts
            ),
            "histoclick viewports": float(len(self._parts)),
        }
        return replace(
            self._parts[-1],
            shape=as_multipolygon(merged),
            classification=self.class_dropdown.value,
            measurements=measurements,
        )

    def _tissue_tiles(self, downsample: float) -> list[tuple[int, int]]:
        """Origins of grid viewports at least half tissue, on sparse slides a tenth (cached)."""
        if downsample not in self._tissue:
            size = self.viewport.size
            self._tissue[downsample] = self.slide.tissue_tiles(
                size, downsample=downsample
            ) or self.slide.tissue_tiles(size, downsample=downsample, min_tissue=0.1)
        return self._tissue[downsample]

    def _check_target(self) -> None:
        if self.project_image is None and self.geojson is None:
            raise ValueError(
                "this widget has nowhere to save: create it with geojson='objects.geojson' or with "
                "an image of a QuPath project (open_project(path, mode='r+').image(name))"
            )

    def _read_annotations(self) -> gpd.GeoDataFrame:
        if self.project_image is not None:
            return self.project_image.annotations()
        if self.geojson is not None and self.geojson.exists():
            return read_geojson(self.geojson)
        return frame_from_rows([], [])

    def _class_color(self, name: str | None, color: Any) -> tuple[int, int, int]:
        if color is not None and not (isinstance(color, float) and np.isnan(color)):
            return tuple(color)
        if name is None:
            return (0, 0, 180)
        return self.class_colors.get(name) or default_class_color(name)

    def _magnification(self) -> float | None:
        power = self.slide.objective_power
        return None if power is None else power / self.viewport.downsample

    def _zoom_options(self, downsamples: list[float]) -> list[tuple[str, float]]:
        return [(self._zoom_label(ds), ds) for ds in sorted(set(downsamples))]

    def _zoom_label(self, downsample: float) -> str:
        power = self.slide.objective_power
        return f"{power / downsample:g}x" if power is not None else f"1/{downsample:g} scale"

    def _on_pointer(self, event: dict[str, Any]) -> None:
        button = 2 if event.get("event") == "contextmenu" else int(event.get("button", 0))
        self._guard(
            self.handle_click,
            event["clientX"] - event["boundingRectLeft"],
            event["clientY"] - event["boundingRectTop"],
            button,
            (event["boundingRectWidth"], event["boundingRectHeight"]),
        )

    def _button(
        self,
        label: str,
        tooltip: str,
        action: Callable[..., Any],
        *args: Any,
        style: str = "",
        width: str | None = None,
    ) -> widgets.Button:
        button = widgets.Button(
            description=label,
            tooltip=tooltip,
            button_style=style,
            layout=widgets.Layout(width=width) if width else widgets.Layout(width="auto"),
        )
        button.on_click(lambda _: self._guard(action, *args))
        return button

    def _guard(self, action: Callable[..., Any], *args: Any) -> None:
        """Run a UI action; an error becomes the status line (the browser shows no tracebacks)."""
        self.last_error = None
        try:
            action(*args)
        except Exception as error:  # noqa: BLE001 - every failure must reach the user's eyes
            self.last_error = f"{type(error).__name__}: {error}"
            self._update_status()
            for callback in self._callbacks:
                callback(self)


def _touching_sides(mask: np.ndarray) -> tuple[str, ...]:
    """Sides of the tile ("left", "right", "up", "down") that the mask reaches."""
    edges = {"left": mask[:, 0], "right": mask[:, -1], "up": mask[0], "down": mask[-1]}
    return tuple(side for side in SIDES if edges[side].any())
