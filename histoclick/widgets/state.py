"""What the click widget is segmenting: the current viewport's clicks, brush strokes and masks,
and the object being built from accepted masks (possibly across several viewports).

Any interactive method drives the clicks: the evaluation's :class:`~histoclick.evaluation.
protocol.Method` interface (``set_image`` once per tile, ``predict`` after each click), the same
one the runner calls, so SAM (through :class:`~histoclick.evaluation.sam_method.SamMethod`) and
the weight-free baselines behave alike. The click bookkeeping (undo, reset, bounds) is
:class:`~histoclick.session.ClickHistory`, shared with :class:`~histoclick.ClickSession`.
Brush and eraser strokes are layers over the prediction (:mod:`histoclick.widgets.brush`).
Clicks and strokes are tile pixels; geometries are level-0 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import shapely

from histoclick.clicks import Click
from histoclick.evaluation.protocol import Method
from histoclick.geometry import as_multipolygon
from histoclick.qupath import Annotation
from histoclick.session import ClickHistory
from histoclick.slides import Tile
from histoclick.widgets.brush import Stroke, stroke_pixels

# A pixel belongs to the mask when its probability exceeds this: SAM's own rule (logit > 0).
MASK_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class Step:
    """The prediction after one click: ``probs`` are ``(height, width)`` float32 in tile pixels."""

    click: Click
    probs: np.ndarray
    model_seconds: float
    predicted_iou: float | None

    @property
    def mask(self) -> np.ndarray:
        """``(height, width)`` bool mask in tile pixels (the method's, strokes not applied)."""
        return self.probs > MASK_THRESHOLD


class ClickState(ClickHistory[Step]):
    """Clicks on one tile, the method's prediction after each, and brush/eraser strokes over it.

    :attr:`mask` is the last prediction (empty before the first click) with the strokes applied
    in the order drawn; the method sees the clicks only, so strokes survive later clicks.
    :meth:`undo` forgets the last stroke or click, whichever came last; :meth:`reset` both.

    Args:
        method: any interactive method; ``set_image`` is called here with the tile's pixels.
        tile: the viewport's pixels with their level-0 origin and downsample.
    """

    def __init__(self, method: Method, tile: Tile) -> None:
        super().__init__(tile)
        self.method = method
        method.set_image(tile.image)
        self.strokes: list[Stroke] = []

    def _predict(self, click: Click) -> Step:
        height, width = self.tile.image.shape[:2]
        prediction = self.method.predict(
            [*self.clicks, click], self.last.probs if self.last else None
        )
        if prediction.probs.shape != (height, width):
            raise ValueError(
                f"method {self.method.name!r} answered {prediction.probs.shape} probabilities for "
                f"a {(height, width)} tile; predict must answer in the tile's pixels"
            )
        return Step(click, prediction.probs, prediction.model_seconds, prediction.predicted_iou)

    @property
    def mask(self) -> np.ndarray | None:
        """``(height, width)`` bool: the prediction with the strokes applied; None while there
        is neither a click nor a stroke."""
        if self.last is None and not self.strokes:
            return None
        if self.last is None:
            mask = np.zeros(self.tile.image.shape[:2], bool)
        else:
            mask = self.last.mask.copy()
        for stroke in self.strokes:
            stroke.apply(mask)
        return mask

    def paint(
        self,
        points: Sequence[tuple[float, float]],
        radius: float,
        erase: bool = False,
        extend: bool = False,
    ) -> Stroke:
        """Paint (or with ``erase`` clear) the pixels within ``radius`` of the polyline through
        ``points`` (``(x, y)`` tile pixels, radius in tile pixels) as a new stroke, or with
        ``extend`` onto the last stroke (one drag is one stroke, so one undo)."""
        pixels = stroke_pixels(points, radius, self.tile.image.shape[:2])
        if extend and self.strokes:
            self.strokes[-1].pixels |= pixels
        else:
            self.strokes.append(Stroke(pixels, erase, len(self.results)))
        return self.strokes[-1]

    def undo(self) -> Step | None:
        """Forget the last stroke or click (whichever came last); returns the current prediction."""
        if self.strokes and self.strokes[-1].after_clicks == len(self.results):
            self.strokes.pop()
            return self.last
        return super().undo()

    def reset(self) -> None:
        """Forget every click and stroke."""
        super().reset()
        self.strokes.clear()


ViewportKey = tuple[tuple[int, int], float]  # level-0 origin, downsample


@dataclass
class ObjectDraft:
    """An object built from accepted masks, one part per viewport, merged in level-0 pixels.

    ``object_id`` is its UUID once written; ``saved_parts`` how many parts the written version
    holds (fewer than ``parts`` after a failed save). ``visited``: the viewports it has parts in.
    """

    parts: list[Annotation] = field(default_factory=list)
    visited: set[ViewportKey] = field(default_factory=set)
    object_id: str | None = None
    saved_parts: int = 0

    @property
    def unsaved(self) -> bool:
        """Parts were accepted that the file or project does not hold yet."""
        return self.saved_parts < len(self.parts)

    def add(self, part: Annotation, viewport: ViewportKey) -> None:
        self.parts.append(part)
        self.visited.add(viewport)

    def merged(self, classification: str | None, seam: float = 0.0) -> Annotation:
        """All parts as one annotation of ``classification``; measurements combined.

        ``seam``: level-0 width of the gaps neighbouring viewports leave between their masks
        (viewport origins are whole level-0 pixels, extents may be fractional), closed here.
        """
        shapes = [part.shape for part in self.parts]
        if len(shapes) == 1:
            merged = shapes[0]  # a union of one ragged outline costs seconds and changes nothing
        else:
            merged = shapely.union_all(shapes)
            if seam > 0:
                merged = merged.buffer(seam, join_style="mitre").buffer(-seam, join_style="mitre")
        ious = [p.measurements.get("histoclick predicted IoU", np.nan) for p in self.parts]
        measurements = {
            "histoclick clicks": sum(p.measurements["histoclick clicks"] for p in self.parts),
            "histoclick predicted IoU": float(np.min(ious)),
            "histoclick viewports": float(len(self.parts)),
        }
        return replace(
            self.parts[-1],
            shape=as_multipolygon(merged),
            classification=classification,
            measurements=measurements,
        )
