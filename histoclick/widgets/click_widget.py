"""ClickWidget: click-to-segment a slide in JupyterLab with any interactive method, saved for QuPath.

Pointer events come from **ipyevents** on a plain ``ipywidgets.Image``. The picture (tile, mask,
outlines, click markers) is rendered in Python and sent as PNG bytes, so all the browser has to
report is where a click landed. ipyevents delivers ``click`` and ``contextmenu`` (right click)
with client and bounding-box coordinates, suppresses the browser's context menu, and ships a
prebuilt JupyterLab 4 and Voila extension: no JavaScript of ours to build or keep in step with
JupyterLab. (anywidget would need our own ES module for the same events; ipycanvas would draw
through its canvas protocol rather than one PNG per update.) In Brush or Eraser mode, drags
(``mousedown``, ``mousemove``, ``mouseup``) paint strokes over the mask instead of clicking
(:mod:`histoclick.widgets.brush`).

Frames: the viewport is ``size`` x ``size`` tile pixels read at a downsample (level-0 pixels per
tile pixel) from a level-0 origin; clicks are tile pixels ``(column, row)``; saved geometries
are level-0 pixels. A click's tile pixel is ``floor(x * size / displayed_width)`` with ``x`` the
CSS offset from the image's left edge, because the notebook may display the image scaled.

The widget is the layout and the event wiring; the parts live beside it: ``state.py`` (clicks,
masks, the object being built), ``saving.py`` (GeoJSON file or QuPath project),
``objects.py`` (the list of saved objects: go to, delete, set class),
``navigation.py`` (pan, zoom, go-to; the first viewport is the one with the most tissue),
``overview.py`` (the slide's thumbnail beside the image, the viewport drawn on it: click it to
jump), ``viewport.py`` (the viewport maths), ``adapting.py``
(the "Adapt to my annotations" toggle: online adaptation of SAM's decoder to accepted masks) and
``prefetch.py`` (SAM's image embeddings on background threads, the shown viewport's first, then
the nearby ones', so navigation never blocks the kernel and a pan to a prefetched viewport is as
fast as one to a viewport seen before).

Accept writes the object at once. When its mask touches the viewport's border, continuing in the
neighbouring viewport (Continue, or any pan there) and accepting again extends that same object:
the parts are merged (shapely union, level-0 pixels) and the object is rewritten under its UUID.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import geopandas as gpd
import ipywidgets as widgets
import numpy as np
import shapely
from ipyevents import Event
from shapely.geometry import MultiPolygon

from histoclick.adaptation import AdaptConfig, AdaptationFiles, Adapter
from histoclick.evaluation.protocol import Method
from histoclick.geometry import as_multipolygon
from histoclick.models import SamModel
from histoclick.overlay import MASK_OPACITY, encode_png, outline_rings, render_overlay
from histoclick.qupath import Annotation, ProjectImage, default_class_color
from histoclick.session import MultimaskPolicy
from histoclick.slides import Slide, open_slide
from histoclick.widgets.adapting import AdaptationControls, AdaptingSamMethod
from histoclick.widgets.brush import MOVE_THROTTLE_MS, BrushControls, Drag, Stroke
from histoclick.widgets.keys import HELP, shortcut
from histoclick.widgets.navigation import Navigator
from histoclick.widgets.prefetch import nearby
from histoclick.widgets.objects import ObjectList
from histoclick.widgets.overview import Overview
from histoclick.widgets.saving import SaveTarget
from histoclick.widgets.state import ClickState, ObjectDraft, Step
from histoclick.widgets.viewport import SIDES, Viewport, zoom_levels

DEFAULT_CLASSES = ("Tumor", "Stroma", "Immune cells", "Necrosis", "Other")
PENDING_COLOR = (255, 215, 0)
_ARROWS = {"left": "◀", "up": "▲", "down": "▼", "right": "▶"}


@dataclass(frozen=True)
class Accepted:
    """What Accept did.

    ``geometry``: the object so far (all accepted parts merged), level-0 pixels. ``saved``: it was
    written (as one object, under ``object_id``). ``open_sides``: neighbouring viewports the mask
    runs into, offered for continuing the same object ("left", "right", "up", "down").
    """

    geometry: MultiPolygon
    saved: bool
    open_sides: tuple[str, ...]
    object_id: str | None = None


class ClickWidget(widgets.VBox):
    """Click-to-segment viewer for a slide (or plain image) in JupyterLab or Voila.

    Left click adds a positive click (negative while the mode toggle says so), right click a
    negative one; in Brush or Eraser mode a drag adds pixels to the mask or removes them
    (:meth:`paint`). Accept turns the mask into an annotation of the chosen class, appended to a
    GeoJSON file or added to the QuPath project the image belongs to.

    Args:
        slide: a slide or image path, an open :class:`~histoclick.slides.Slide`, or a
            :class:`~histoclick.qupath.ProjectImage` (annotations then go to its project, and the
            class list is the project's).
        method: a SAM model from :func:`histoclick.load_model`, or any interactive method of the
            evaluation (:class:`~histoclick.evaluation.protocol.Method`: ``RegionGrowing()``,
            ``GrabCut()``, ``SamMethod(model)``, ...).
        geojson: the GeoJSON file Accept appends to (created when missing). Not with a
            ProjectImage.
        classes: class names offered; default: the project's classes, else :data:`DEFAULT_CLASSES`.
        magnification, downsample: the viewport's resolution (at most one; default full resolution).
        origin: level-0 ``(x, y)`` of the first viewport; default the grid viewport with the
            most tissue.
        size: viewport side in tile pixels (what the method sees).
        display_width: CSS width of the image in the page (default ``size``).
        cache_dir: folder for SAM's image embeddings (default: the in-memory cache shared by
            sessions); only with a SAM model.
        multimask: SAM's multimask policy (:class:`~histoclick.ClickSession`); only with a model.
        outline_tolerance: saved outlines are simplified (Douglas-Peucker, topology kept) within
            this many tile pixels of the mask's exact pixel outline; None saves the exact outline.
            Half a pixel keeps every boundary inside the pixels it runs along and cuts a ragged
            1024-pixel outline's vertices several-fold (``benchmarks/bench_widget.py``).
        adapter: an online adapter to continue (``Adapter.load("objects.geojson", cache_dir=...)``,
            :mod:`histoclick.adaptation`), for a SAM model with its image encoder; the "Adapt to
            my annotations" toggle then starts on. Without it the toggle starts off and creates
            an ``Adapter(method, adapt_config, cache_dir=cache_dir)`` (background refits) when
            turned on. See :mod:`histoclick.widgets.adapting`.
        adapt_config: settings of that adapter (default :class:`~histoclick.adaptation.AdaptConfig`).
        edit_foreign: the object list's Delete and Set class (and :meth:`delete_object`,
            :meth:`reclassify_object`) also change objects histoclick did not create (a person's
            in QuPath, another tool's); by default those are read-only.
    """

    def __init__(
        self,
        slide: str | os.PathLike | Slide | ProjectImage,
        method: SamModel | Method,
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
        outline_tolerance: float | None = 0.5,
        adapter: Adapter | None = None,
        adapt_config: AdaptConfig | None = None,
        edit_foreign: bool = False,
    ) -> None:
        self.outline_tolerance = outline_tolerance
        self.project_image = slide if isinstance(slide, ProjectImage) else None
        self.target = SaveTarget(geojson, self.project_image)
        self.adaptation = AdaptationControls(
            method if isinstance(method, SamModel) else None,
            adapter=adapter,
            config=adapt_config,
            cache_dir=cache_dir,
            unavailable=f"adaptation trains SAM's mask decoder; {getattr(method, 'name', method)!r} "
            "is not a SAM model (pass one from histoclick.load_model)",
        )
        self.method, self.method_label = _interactive_method(
            method, cache_dir, multimask, self.adaptation.model_for_clicks, self.adaptation.paused
        )
        self._owns_slide = not isinstance(slide, Slide)
        if self.project_image is not None:
            self.slide = self.project_image.open_slide()
        else:
            self.slide = slide if isinstance(slide, Slide) else open_slide(slide)
        self.class_colors = self.project_image.project.class_colors if self.project_image else {}
        classes = list(classes or self.class_colors or DEFAULT_CLASSES)

        start = self.slide.downsample_for(magnification=magnification, downsample=downsample)
        self.navigator = Navigator(self.slide, size, start, origin)
        # SAM's embeddings: computed in the background, the nearby viewports' too (prefetch.py).
        self._status_lock = threading.RLock()  # its threads redraw the status line too
        self._embedding_was_ready = False  # of the shown viewport, as last told to on_update
        self.prefetcher = (
            self.method.prefetch_from(self.slide, self._embedding_changed)
            if isinstance(self.method, AdaptingSamMethod)
            else None
        )
        self.session: ClickState | None = None
        self.saved_count = 0
        self.last_error: str | None = None
        self.last_update_seconds: float | None = None
        self.draft = ObjectDraft()
        self._open_sides: tuple[str, ...] = ()
        self._message = ""
        self._callbacks: list[Callable[[ClickWidget], Any]] = []
        self._outline_cache: dict[Any, Any] = {}
        self._annotations = self.target.read()

        self.image = widgets.Image(format="png", width=str(display_width or size))
        self._events = Event(
            source=self.image, watched_events=["click", "contextmenu"], prevent_default_action=True
        )
        self._events.on_dom_event(self._on_pointer)
        # Brush and eraser drags (histoclick.widgets.brush); preventing mousedown's default
        # stops the browser dragging the picture away instead. Moves are watched only while
        # Brush or Eraser is on: no message per pointer move in Click mode.
        self.brush, self._drag = BrushControls(), Drag()
        self._drags = Event(
            source=self.image,
            watched_events=["mousedown", "mouseup", "mouseleave"],
            prevent_default_action=True,
        )
        self._moves = Event(
            source=self.image, wait=MOVE_THROTTLE_MS, throttle_or_debounce="throttle"
        )
        for events in (self._drags, self._moves):
            events.on_dom_event(self._on_drag)
        self.brush.mode.observe(lambda _: self._guard(self._use_tool), "value")
        self.overview = Overview(self.slide)
        self._overview_events = Event(
            source=self.overview.image, watched_events=["click"], prevent_default_action=True
        )
        self._overview_events.on_dom_event(self._on_overview_pointer)
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
            options=self.navigator.zoom_options([*zoom_levels(self.slide.dimensions, size), start]),
            value=start,
            description="Zoom",
            layout=widgets.Layout(width="160px"),
        )
        self.zoom_dropdown.observe(
            lambda change: self._guard(self.set_downsample, change["new"]), "value"
        )
        self.edit_foreign = edit_foreign
        self.object_list = ObjectList(
            self.slide.mpp,
            go_to=self.jump_to_annotation,
            delete=self.delete_object,
            reclassify=lambda object_id: self.reclassify_object(
                object_id, self.class_dropdown.value
            ),
            guard=self._guard,
            edit_foreign=edit_foreign,
        )
        self.opacity = widgets.FloatSlider(
            value=MASK_OPACITY,
            min=0.0,
            max=1.0,
            step=0.05,
            description="Opacity",
            tooltip="opacity of the live mask (drawn in the chosen class's colour)",
            layout=widgets.Layout(width="260px"),
        )
        self.show_mask = widgets.Checkbox(value=True, description="Mask", indent=False)
        self.show_outlines = widgets.Checkbox(
            value=True, description="Saved outlines", indent=False
        )
        for control in (self.opacity, self.show_mask, self.show_outlines, self.class_dropdown):
            control.observe(lambda _: self._guard(self._refresh), "value")
        self.adaptation.toggle.observe(
            lambda change: self._guard(self.set_adapt, change["new"]), "value"
        )
        self.status = widgets.HTML()
        self._continue_row = widgets.HBox(layout=widgets.Layout(display="none"))

        toolbar = widgets.HBox(
            [
                self.mode,
                self.brush.row,
                self._button("Undo", "forget the last click or stroke", self.undo),
                self._button("Reset", "forget every click and stroke in this viewport", self.reset),
                self.class_dropdown,
                self._button(
                    "Accept",
                    "save the mask as an annotation of the chosen class",
                    self.accept,
                    style="success",
                ),
            ],
            layout=widgets.Layout(flex_flow="row wrap"),
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
            ]
        )
        self.help = widgets.HTML(f"<small>{HELP}</small>")
        display = widgets.HBox([self.opacity, self.show_mask, self.show_outlines])
        adapting = widgets.HBox(
            [
                self.adaptation.toggle,
                self._button(
                    "Save adapted decoder",
                    "save the adapted decoder (a checkpoint load_model takes) and its training "
                    "pairs next to the GeoJSON or in the QuPath project",
                    self.save_adapted_decoder,
                ),
                self._button("Revert", "go back to the base decoder", self.revert_adaptation),
                self.adaptation.status,
            ]
        )
        super().__init__(
            [
                toolbar,
                navigation,
                display,
                adapting,
                widgets.HBox([self.image, self.overview.image]),
                self._continue_row,
                self.status,
                self.object_list,
                self.help,
            ]
        )
        self._keys = Event(
            source=self.image, watched_events=["keydown"], ignore_modifier_key_events=True
        )
        self._keys.on_dom_event(self._on_key)
        self._update_annotation_list()
        self._show(self.navigator.viewport)

    @property
    def viewport(self) -> Viewport:
        """The viewport shown: level-0 origin, size in tile pixels, downsample."""
        return self.navigator.viewport

    # ----- clicks ---------------------------------------------------------------------------

    def handle_click(
        self,
        x_display: float,
        y_display: float,
        button: int = 0,
        displayed_size: tuple[float, float] | None = None,
    ) -> Step:
        """A click on the displayed image: ``(x, y)`` CSS pixels from its top-left corner.

        ``button`` 0 (left) follows the mode toggle, 2 (right) is always negative;
        ``displayed_size`` is the image's displayed ``(width, height)`` (default: unscaled).
        """
        if self.prefetcher is not None and not self.method.ready:
            raise ValueError(
                f"this viewport's embedding is still being computed "
                f"({self.prefetcher.status.seconds:.0f} s so far): click again once the status "
                "line no longer says 'computing'"
            )
        x, y = self.viewport.display_to_tile(x_display, y_display, displayed_size)
        return self.click(x, y, positive=button != 2 and self.mode.value)

    def click(self, x: float, y: float, positive: bool = True) -> Step:
        """Add a click at tile pixel ``(x, y)`` (column, row), predict, and redraw."""
        started = time.perf_counter()
        step = self.session.click(x, y, positive)
        sign = "+" if positive else "−"
        self._message = f"click {len(self.session.clicks)} ({sign}) at tile pixel ({x:g}, {y:g})"
        self._refresh(started)
        return step

    def paint(
        self,
        points: list[tuple[float, float]],
        radius: float | None = None,
        erase: bool = False,
    ) -> Stroke:
        """Brush (or with ``erase`` erase) the pixels within ``radius`` tile pixels (default: the
        Radius slider) of the polyline through ``points`` (``(x, y)`` tile pixels: column, row)
        as one stroke over the current mask, and redraw. What a drag in Brush or Eraser mode
        does; strokes stay over later clicks' predictions (:mod:`histoclick.widgets.brush`)."""
        return self._paint(points, radius, erase, extend=False)

    def undo(self) -> None:
        """Forget the last click or stroke (whichever came last) and redraw."""
        self.session.undo()
        self._message = "undone"
        self._refresh()

    def reset(self) -> None:
        """Forget every click and stroke in this viewport (accepted objects stay)."""
        self.session.reset()
        self._message = "clicks and strokes cleared"
        self._refresh()

    def _paint(
        self, points: list[tuple[float, float]], radius: float | None, erase: bool, extend: bool
    ) -> Stroke:
        started = time.perf_counter()
        radius = self.brush.radius.value if radius is None else radius
        stroke = self.session.paint(points, radius, erase, extend=extend)
        tool = "eraser" if erase else "brush"
        self._message = f"{tool} stroke {len(self.session.strokes)}, radius {radius:g} tile px"
        self._refresh(started)
        return stroke

    # ----- accepting and saving --------------------------------------------------------------

    def accept(self) -> Accepted:
        """Save the current mask as an object of the chosen class, at once.

        In a viewport the object in progress has no part in yet (after Continue, or a pan), the
        mask extends that object, which is rewritten under its UUID; otherwise it starts a new
        one. When the mask touches a border with slide beyond it not yet visited for this
        object, continuing there is offered (:meth:`continue_to`). A failed write keeps the part
        (shown, with Save now to retry, :meth:`finish`) and raises.
        """
        if self.session.mask is None:
            raise ValueError("nothing to accept: click on the object first (or brush it)")
        self.target.check()
        if self.draft.unsaved:
            raise ValueError(
                "the object before is not saved yet: press Save now to retry, or Discard it"
            )
        part = self._part()
        here = (self.viewport.origin, self.viewport.downsample)
        if here in self.draft.visited:
            self.draft = ObjectDraft()  # not a continuation: a new object
        self.draft.add(part, here)
        # The mask with its brush and eraser strokes: what is saved is what adaptation learns.
        mask, sam_session = self.session.mask, getattr(self.method, "session", None)
        touching = _touching_sides(mask)
        self._open_sides = tuple(
            side
            for side in touching
            if (neighbour := self.viewport.neighbour(side)) is not None
            and (neighbour.origin, neighbour.downsample) not in self.draft.visited
        )
        self.session.reset()
        merged = self._save_draft()
        if sam_session is not None:  # after the save: the object is kept whatever adaptation does
            self.adaptation.accepted(sam_session, mask, self.viewport.outside_slide())
        object_id = self.draft.object_id
        if not self._open_sides:
            self.draft = ObjectDraft()
        else:
            self._message += (
                f"; it runs on to the {', '.join(self._open_sides)}: Continue there to extend it"
            )
        self._refresh()
        return Accepted(merged.shape, True, self._open_sides, object_id)

    def continue_to(self, side: str) -> None:
        """Move to the neighbouring viewport on ``side`` to add the next part of the object."""
        if not self.draft.parts:
            raise ValueError("no object in progress: Accept a mask that touches the border first")
        self.pan(side)

    def finish(self) -> None:
        """Close the object in progress (saving any part a failed write left unsaved)."""
        if self.draft.unsaved:
            self.target.check()
            self._save_draft()
        self.draft, self._open_sides = ObjectDraft(), ()
        self._refresh()

    def discard(self) -> None:
        """Drop the accepted parts not yet saved (after a failed write); saved ones stay."""
        self.draft, self._open_sides = ObjectDraft(), ()
        self._message = "unsaved parts discarded"
        self._refresh()

    def annotations(self) -> gpd.GeoDataFrame:
        """The annotations already saved where this widget saves (level-0 pixels)."""
        return self._annotations

    def _part(self) -> Annotation:
        """The current mask as an annotation part, cut to the slide (level-0 pixels)."""
        last = self.session.last
        # A viewport at the slide's edge extends past it; QuPath objects must stay on the image.
        tolerance = self.outline_tolerance
        outline = self.session.geometry(
            simplify_tolerance=None if tolerance is None else tolerance * self.viewport.downsample
        )
        slide = shapely.box(0, 0, *self.slide.dimensions)
        if not slide.contains(shapely.box(*self.viewport.bounds)):
            outline = as_multipolygon(outline.intersection(slide))
        shape = outline  # mask_to_geometry's outlines are valid MultiPolygons: no repair pass
        if shape.is_empty:
            raise ValueError(
                "the mask is empty: add a positive click inside the object, then Accept"
            )
        iou = np.nan if last is None or last.predicted_iou is None else last.predicted_iou
        return Annotation(
            shape=shape,
            classification=self.class_dropdown.value,
            name=f"histoclick {self.method_label}",
            measurements={
                "histoclick clicks": float(len(self.session.clicks)),
                "histoclick predicted IoU": float(iou),
            },
        )

    def _save_draft(self) -> Annotation:
        """Write the object in progress (new, or in place of its earlier version)."""
        # Viewport origins are whole level-0 pixels; a fractional viewport extent leaves seams
        # up to half a pixel wide between neighbours, closed by the merge.
        seam = abs(self.viewport.size * self.viewport.downsample - self.viewport.extent)
        merged = self.draft.merged(self.class_dropdown.value, seam)
        new = self.draft.object_id is None
        try:
            self.draft.object_id = self.target.save(merged, self.draft.object_id)
        except Exception:
            # Nothing is lost: the part stays in progress, and Save now retries.
            self._message = (
                f"<b>not saved</b>: the {merged.classification} object "
                f"({len(self.draft.parts)} part(s)) is kept; fix the problem below, then Save now"
            )
            self._refresh()
            raise
        self.draft.saved_parts = len(self.draft.parts)
        self.saved_count += new
        # The target's objects, updated with what it wrote (read again only when someone else
        # wrote): other notebooks' or scripts' objects appear too.
        self._update_annotation_list()
        verb = "saved" if new else "extended"
        self._message = (
            f"{verb} {merged.classification} object ({len(self.draft.parts)} part(s)) in "
            f"{self.target.path.name} ({len(self._annotations)} objects there)"
        )
        return merged

    # ----- adaptation ------------------------------------------------------------------------

    @property
    def adapter(self) -> Adapter | None:
        """The online adapter (None until "Adapt to my annotations" is first turned on)."""
        return self.adaptation.adapter

    def set_adapt(self, on: bool) -> None:
        """Turn "Adapt to my annotations" on or off (as the toggle does)."""
        self.adaptation.set_enabled(on)
        self._message = f"adaptation {'on' if on else 'off'}"
        self._update_status()

    def save_adapted_decoder(self) -> AdaptationFiles:
        """Save the adapter's decoder (a checkpoint ``histoclick.load_model`` takes) and its
        training pairs next to the widget's GeoJSON or in its QuPath project."""
        files = self.adaptation.save(self.target.path)
        self._message = f"adapted decoder saved as {files.decoder.name}"
        self._update_status()
        return files

    def revert_adaptation(self) -> None:
        """Clicks go back to the base decoder; the accepted pairs are kept."""
        self.adaptation.revert()
        self._message = "reverted to the base decoder"
        self._update_status()

    # ----- navigation ------------------------------------------------------------------------

    def pan(self, side: str) -> None:
        """Move one viewport to ``side`` ("left", "right", "up", "down")."""
        self._show(self.navigator.pan(side))

    def go_to(self, x0: float, y0: float) -> None:
        """Centre the viewport on level-0 ``(x0, y0)`` (kept on the slide)."""
        self._show(self.navigator.centred_on(x0, y0))

    def jump_to_annotation(self, index: int) -> None:
        """Centre the viewport on saved annotation ``index`` (row of :meth:`annotations`)."""
        minx, miny, maxx, maxy = self._annotations.geometry.iloc[index].bounds
        self.go_to((minx + maxx) / 2, (miny + maxy) / 2)

    def delete_object(self, object_id: str) -> None:
        """Delete the saved object with UUID ``object_id`` from the file or project (its child
        objects stay). Objects histoclick did not create are refused (PermissionError) unless
        the widget was created with ``edit_foreign=True``."""
        self.target.delete(object_id, force=self.edit_foreign)
        if self.draft.object_id == object_id:  # the object in progress is gone: start anew
            self.draft, self._open_sides = ObjectDraft(), ()
        self._message = f"deleted object {object_id} from {self.target.path.name}"
        self._refresh()

    def reclassify_object(self, object_id: str, classification: str) -> None:
        """Give the saved object with UUID ``object_id`` the class ``classification`` (its
        outline and measurements stay). Refused for others' objects as :meth:`delete_object`."""
        self.target.reclassify(object_id, classification, force=self.edit_foreign)
        self._message = f"object {object_id} is now {classification}"
        self._refresh()

    def jump_to_overview(self, x_thumb: float, y_thumb: float) -> None:
        """Centre the viewport on the level-0 point under overview thumbnail coordinates
        ``(x_thumb, y_thumb)`` (continuous; pixel ``j``'s centre is ``j + 0.5``)."""
        self.go_to(*self.overview.to_level0(x_thumb, y_thumb))

    def next_tissue_tile(self) -> None:
        """Jump to the next grid viewport with tissue (row-major order, wrapping around)."""
        self._show(self.navigator.next_tissue())

    def set_downsample(self, downsample: float) -> None:
        """Change the resolution, keeping the viewport's centre."""
        if downsample != self.viewport.downsample:
            self._show(self.navigator.zoomed(downsample))

    def zoom(self, steps: int) -> None:
        """Move ``steps`` zoom levels (negative: in, towards full resolution), keeping the centre."""
        levels = [ds for _, ds in self.zoom_dropdown.options]
        index = levels.index(self.viewport.downsample) + steps
        if not 0 <= index < len(levels):
            raise ValueError(f"no zoom level further {'in' if steps < 0 else 'out'}")
        self.set_downsample(levels[index])

    def set_magnification(self, magnification: float) -> None:
        """Change the magnification (needs the slide's objective power), keeping the centre."""
        self.set_downsample(self.slide.downsample_for(magnification=magnification))

    # ----- state and hooks -------------------------------------------------------------------

    def on_update(self, callback: Callable[[ClickWidget], Any]) -> None:
        """Call ``callback(widget)`` after every redraw (click, undo, navigation, save) and when
        the shown viewport's SAM embedding becomes ready."""
        self._callbacks.append(callback)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable summary: viewport, clicks (tile pixels), prediction, object in progress.

        ``pending_parts``: accepted parts not yet written (after a failed write);
        ``object_parts``: parts of the object in progress, written or not.
        """
        last = self.session.last
        x, y = self.viewport.origin
        return {
            "viewport": {
                "x": x,
                "y": y,
                "size": self.viewport.size,
                "downsample": self.viewport.downsample,
                "magnification": self.navigator.magnification(),
            },
            "method": self.method_label,
            "clicks": [
                {"x": c.x, "y": c.y, "positive": c.is_positive} for c in self.session.clicks
            ],
            "mask_pixels": 0 if self.session.mask is None else int(self.session.mask.sum()),
            "tool": self.brush.mode.value,
            "strokes": len(self.session.strokes),
            "predicted_iou": last.predicted_iou if last else None,
            "model_seconds": last.model_seconds if last else None,
            "update_seconds": self.last_update_seconds,
            "pending_parts": len(self.draft.parts) - self.draft.saved_parts,
            "object_parts": len(self.draft.parts),
            "object_id": self.draft.object_id,
            "open_sides": list(self._open_sides),
            "saved": self.saved_count,
            "mask_color": list(self._class_color(self.class_dropdown.value, None)),
            "mask_opacity": self.opacity.value,
            "mask_shown": self.show_mask.value,
            "error": self.last_error,
            "adaptation": self.adaptation.line(),
            "embedding_ready": self.prefetcher is None or self.method.ready,
            "overview": self.overview.state(),
            "objects": [label for label, _ in self.object_list.select.options],
        }

    def wait_for_embedding(self) -> None:
        """Wait until the shown viewport's SAM embedding is ready (computed in the background:
        clicks on the image are refused until then, :meth:`click` waits by itself); raises what
        computing it raised. Returns at once for a method without an embedding."""
        if self.prefetcher is not None:
            self.method.session  # noqa: B018 - the property waits for the embedding

    def close(self) -> None:
        """Close the widget, its pointer events, its background embedding threads (waiting for
        them) and the slide (when the widget opened it).

        Closing again (or the garbage collector's close after yours) does nothing.
        """
        if getattr(self, "_closed", False):
            return
        self._closed = True
        if getattr(self, "adaptation", None) is not None:
            self.adaptation.close()
        if getattr(self, "prefetcher", None) is not None:
            self.prefetcher.close()  # before the slide: its worker reads the slide
        if getattr(self, "_owns_slide", False):
            self.slide.close()
        for events in (
            getattr(self, "_events", None),
            getattr(self, "_keys", None),
            getattr(self, "_drags", None),
            getattr(self, "_moves", None),
            getattr(self, "_overview_events", None),
        ):
            if events is not None:
                events.close()
        super().close()

    # ----- internals -------------------------------------------------------------------------

    def _show(self, viewport: Viewport) -> None:
        """Read ``viewport``, hand its pixels to the method and redraw. With SAM, the embedding
        is computed on the prefetcher's thread (the status line shows its progress; a click on
        the image is refused until it is ready, :meth:`click` waits), then the nearby ones'."""
        label = self.navigator.zoom_label(viewport.downsample)
        self.status.value = f"<i>reading {label} at {viewport.origin} and preparing the method…</i>"
        tile = self.slide.read_region(
            *viewport.origin, viewport.size, viewport.size, downsample=viewport.downsample
        )
        self.session = ClickState(self.method, tile)
        self._embedding_was_ready = self.prefetcher is None or self.method.ready
        self.navigator.viewport = viewport
        levels = [ds for _, ds in self.zoom_dropdown.options]
        if viewport.downsample not in levels:
            self.zoom_dropdown.options = self.navigator.zoom_options([*levels, viewport.downsample])
        self.zoom_dropdown.value = viewport.downsample
        if self.prefetcher is not None:
            self.prefetcher.schedule(nearby(self.navigator, [ds for _, ds in self.zoom_dropdown.options]))
        self._message = f"viewport {label} at level-0 {viewport.origin}"
        self._refresh()

    def _refresh(self, started: float | None = None) -> None:
        started = time.perf_counter() if started is None else started
        self._update_annotation_list()  # a stat when nothing changed
        box = shapely.box(*self.viewport.bounds)
        visible = (
            self._annotations[self._annotations.intersects(box)]
            if len(self._annotations)
            else self._annotations
        )
        if not self.show_outlines.value:
            visible = visible.iloc[:0]
        outlines = [
            (self._outline_in_view(geometry), color)
            for geometry, color in self._object_outlines(visible)
        ]
        if self.draft.unsaved:
            outlines.append((self.draft.merged(self.class_dropdown.value).shape, PENDING_COLOR))
        picture = render_overlay(
            self.session.tile,
            self.session.mask if self.show_mask.value else None,
            self.session.clicks,
            outlines,
            mask_color=self._class_color(self.class_dropdown.value, None),
            mask_opacity=self.opacity.value,
        )
        self.image.value = encode_png(picture)
        # The overview shows every saved object (whatever "Saved outlines" says) and the viewport.
        self.overview.set_outlines(
            self._annotations if len(self._annotations) else None,
            partial(self._object_outlines, self._annotations),
        )
        self.overview.draw(self.viewport)
        self.last_update_seconds = time.perf_counter() - started
        self._update_status()
        self._update_continue_row()
        for callback in self._callbacks:
            callback(self)

    def _object_outlines(self, frame: gpd.GeoDataFrame) -> list[tuple[Any, tuple[int, int, int]]]:
        """``(geometry, colour)`` of saved objects: QuPath draws an object in its own colour when
        it has one, else in its class colour."""
        return [
            (geometry, self._class_color(cls, own if own is not None else color))
            for geometry, cls, color, own in zip(
                frame.geometry, frame["classification"], frame["color"], frame["object_color"],
                strict=True,
            )
        ]

    def _outline_in_view(self, geometry: Any) -> list[np.ndarray]:
        """A saved object's outline as drawn on this viewport (:func:`~histoclick.overlay.
        outline_rings`), cached while the viewport stays: cutting and converting a ragged
        100k-vertex outline costs up to a second, and the picture is redrawn after every click.
        Keyed by the geometry's WKB, so an object rewritten elsewhere is converted again."""
        if self._outline_cache.get("viewport") != self.viewport:
            self._outline_cache = {"viewport": self.viewport}
        key = hash(shapely.to_wkb(geometry))
        if key not in self._outline_cache:
            self._outline_cache[key] = outline_rings(geometry, self.session.tile)
        return self._outline_cache[key]

    def _update_status(self) -> None:
        with self._status_lock:  # read and written at once: a thread never writes a stale line
            self._write_status()

    def _write_status(self) -> None:
        self.adaptation.refresh()
        clicks = self.session.clicks
        positive = sum(c.is_positive for c in clicks)
        parts = [f"<b>{len(clicks)} clicks</b> ({positive}+, {len(clicks) - positive}−)"]
        if self.session.strokes:
            parts[0] += f", {len(self.session.strokes)} strokes"
        last = self.session.last
        if last is not None:
            parts.append(f"{self.method_label} {last.model_seconds:.3f} s")
            if last.predicted_iou is not None:
                parts.append(f"predicted IoU {last.predicted_iou:.3f}")
        label = self.navigator.zoom_label(self.viewport.downsample)
        parts.append(f"{label} at {self.viewport.origin}")
        if self._message:
            parts.append(self._message)
        embedding = self.prefetcher.status if self.prefetcher is not None else None
        if embedding is not None and embedding.line():
            color = "#c00" if embedding.error else "#666"
            parts.append(f"<span style='color:{color}'>{embedding.line()}</span>")
        if self.last_error:
            parts.append(f"<span style='color:#c00'>{self.last_error}</span>")
        self.status.value = " · ".join(parts)

    def _embedding_changed(self) -> None:
        """The prefetcher's status changed (called in its worker thread): redraw the status line;
        when the shown viewport's embedding has just become ready, tell the :meth:`on_update`
        callbacks too."""
        if self.session is None:
            return
        self._update_status()
        ready = self.method.ready
        if ready and not self._embedding_was_ready:
            for callback in self._callbacks:
                callback(self)
        self._embedding_was_ready = ready

    def _update_continue_row(self) -> None:
        if not self.draft.parts:
            self._continue_row.layout.display = "none"
            return
        if self.draft.unsaved:
            buttons = [
                self._button("Save now", "retry writing the object", self.finish, style="success"),
                self._button(
                    "Discard", "drop the parts not yet saved", self.discard, style="danger"
                ),
            ]
        else:
            buttons = [
                *(
                    self._button(
                        f"Continue {_ARROWS[side]}",
                        f"extend the object in the viewport to the {side}",
                        self.continue_to,
                        side,
                    )
                    for side in self._open_sides
                ),
                self._button("Done", "the object is complete: start a new one", self.finish),
            ]
        self._continue_row.children = [
            widgets.HTML(f"Object in progress ({len(self.draft.parts)} part(s)):"),
            *buttons,
        ]
        self._continue_row.layout.display = "flex"

    def _update_annotation_list(self) -> None:
        """Take the target's objects (in memory; read again when the file or project changed
        on disk) and show them in the object list."""
        self._annotations = self.target.read()
        self.object_list.show(self._annotations)

    def _class_color(self, name: str | None, color: Any) -> tuple[int, int, int]:
        if color is not None and not (isinstance(color, float) and np.isnan(color)):
            return tuple(color)
        if name is None:
            return (0, 0, 180)
        return self.class_colors.get(name) or default_class_color(name)

    def _on_pointer(self, event: dict[str, Any]) -> None:
        if self.brush.painting:  # the click ending a drag is the stroke's, not a prompt
            return
        button = 2 if event.get("event") == "contextmenu" else int(event.get("button", 0))
        self._guard(
            self.handle_click,
            pointer_offset(event["clientX"], event["boundingRectLeft"]),
            pointer_offset(event["clientY"], event["boundingRectTop"]),
            button,
            (event["boundingRectWidth"], event["boundingRectHeight"]),
        )

    def _on_drag(self, event: dict[str, Any]) -> None:
        if not self.brush.painting:
            self._drag.last = None
            return
        point = self.viewport.display_to_tile(
            pointer_offset(event["clientX"], event["boundingRectLeft"]),
            pointer_offset(event["clientY"], event["boundingRectTop"]),
            (event["boundingRectWidth"], event["boundingRectHeight"]),
        )
        points = self._drag.update(event, point)
        if points:
            erase = self.brush.mode.value == "eraser"
            self._guard(self._paint, points, None, erase, event.get("event") != "mousedown")

    def _on_overview_pointer(self, event: dict[str, Any]) -> None:
        self._guard(
            self.jump_to_overview,
            *self.overview.display_to_thumbnail(
                pointer_offset(event["clientX"], event["boundingRectLeft"]),
                pointer_offset(event["clientY"], event["boundingRectTop"]),
                (event["boundingRectWidth"], event["boundingRectHeight"]),
            ),
        )

    def _on_key(self, event: dict[str, Any]) -> None:
        action = shortcut(event)
        if action is None:
            return
        actions: dict[str, Callable[[], Any]] = {
            "toggle_mode": self._toggle_mode,
            "brush": partial(self.brush.toggle, "brush"),
            "eraser": partial(self.brush.toggle, "eraser"),
            "undo": self.undo,
            "reset": self.reset,
            "accept": self.accept,
            "zoom_in": partial(self.zoom, -1),
            "zoom_out": partial(self.zoom, 1),
            **{f"pan_{side}": partial(self.pan, side) for side in SIDES},
        }
        self._guard(actions[action])

    def _use_tool(self) -> None:
        """Watch pointer moves only while Brush or Eraser is on, and say what a drag does."""
        self._moves.watched_events = ["mousemove"] if self.brush.painting else []
        tool = self.brush.mode.value
        change = "remove pixels from" if tool == "eraser" else "add pixels to"
        self._message = (
            f"{tool}: drag on the image to {change} the mask "
            f"(radius {self.brush.radius.value} tile px)"
            if self.brush.painting
            else "click mode"
        )
        self._update_status()

    def _toggle_mode(self) -> None:
        self.mode.value = not self.mode.value

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


def pointer_offset(client: float, edge: float) -> float:
    """CSS offset of the pointer from the image's ``edge`` (its bounding box's left or top).

    Chromium reports mouse events in whole CSS pixels (the position truncated) while the image's
    edge may sit at a fractional position (``20.25``). A whole ``client`` is the CSS pixel the
    pointer is in: the pointer is taken just short of that pixel's centre, so the offset is off by
    at most half a CSS pixel instead of up to a whole one (which moved clicks on a pixel's centre
    to the pixel above). Just short: a pointer exactly on a whole position (reported exactly) then
    stays on its side of a tile-pixel boundary half a CSS pixel further on.
    """
    return client + 0.499 - edge if float(client).is_integer() else client - edge


def _interactive_method(
    method: SamModel | Method,
    cache_dir: str | os.PathLike | None,
    multimask: MultimaskPolicy,
    model_now: Callable[[], SamModel],
    paused: Callable[[], contextlib.AbstractContextManager[None]],
) -> tuple[Method, str]:
    """The method to drive, and the label saved objects are named after (``histoclick LABEL``);
    a SAM model's clicks use ``model_now()`` (the adapted decoder while adaptation is on), inside
    ``paused()`` (a background refit stopped meanwhile)."""
    if isinstance(method, SamModel):
        method = AdaptingSamMethod(
            method, model_now, paused, cache_dir=cache_dir, multimask=multimask
        )
        return method, method.model.name
    if not isinstance(method, Method):
        raise TypeError(
            f"the widget needs a SAM model (histoclick.load_model) or an interactive method with "
            f"name, set_image(image) and predict(clicks, prev_probs), got {type(method).__name__}"
        )
    if cache_dir is not None or multimask != "first":
        raise ValueError("cache_dir= and multimask= apply to a SAM model only; configure the method")
    return method, method.name


def _touching_sides(mask: np.ndarray) -> tuple[str, ...]:
    """Sides of the tile ("left", "right", "up", "down") that the mask reaches."""
    edges = {"left": mask[:, 0], "right": mask[:, -1], "up": mask[0], "down": mask[-1]}
    return tuple(side for side in SIDES if edges[side].any())
