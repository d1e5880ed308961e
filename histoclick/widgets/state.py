"""What the click widget is segmenting: the current viewport's clicks and masks, and the object
being built from accepted masks (possibly across several viewports).

Any interactive method drives the clicks: the evaluation's :class:`~histoclick.evaluation.
protocol.Method` interface (``set_image`` once per tile, ``predict`` after each click), the same
one the runner calls, so SAM (through :class:`~histoclick.evaluation.sam_method.SamMethod`) and
the weight-free baselines behave alike. Clicks are tile pixels; geometries are level-0 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import shapely
from shapely.geometry import MultiPolygon

from histoclick.clicks import Click
from histoclick.evaluation.protocol import Method
from histoclick.geometry import as_multipolygon, mask_to_geometry
from histoclick.qupath import Annotation
from histoclick.slides import Tile

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
        """``(height, width)`` bool mask in tile pixels."""
        return self.probs > MASK_THRESHOLD


class ClickState:
    """Clicks on one tile and the method's prediction after each (undo and reset included).

    Args:
        method: any interactive method; ``set_image`` is called here with the tile's pixels.
        tile: the viewport's pixels with their level-0 origin and downsample.
    """

    def __init__(self, method: Method, tile: Tile) -> None:
        self.method = method
        self.tile = tile
        method.set_image(tile.image)
        self.steps: list[Step] = []

    @property
    def clicks(self) -> list[Click]:
        """Clicks so far, oldest first, in tile pixels."""
        return [step.click for step in self.steps]

    @property
    def last(self) -> Step | None:
        """The current prediction, or None before the first click."""
        return self.steps[-1] if self.steps else None

    def click(self, x: float, y: float, positive: bool = True) -> Step:
        """Add a click at tile pixel ``(x, y)`` (column, row) and predict from all clicks so far."""
        height, width = self.tile.image.shape[:2]
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(
                f"click at (x={x}, y={y}) is outside the {width}x{height} tile; clicks are in tile "
                "pixels"
            )
        click = Click(y=y, x=x, is_positive=positive)
        prediction = self.method.predict(
            [*self.clicks, click], self.last.probs if self.last else None
        )
        if prediction.probs.shape != (height, width):
            raise ValueError(
                f"method {self.method.name!r} answered {prediction.probs.shape} probabilities for "
                f"a {(height, width)} tile; predict must answer in the tile's pixels"
            )
        step = Step(click, prediction.probs, prediction.model_seconds, prediction.predicted_iou)
        self.steps.append(step)
        return step

    def undo(self) -> Step | None:
        """Forget the last click; returns the prediction that is current again (None if none)."""
        if self.steps:
            self.steps.pop()
        return self.last

    def reset(self) -> None:
        """Forget every click."""
        self.steps.clear()

    def geometry(self, **simplify: float | int | None) -> MultiPolygon:
        """The current mask in level-0 pixels (empty before the first click); ``simplify`` goes to
        :func:`histoclick.geometry.mask_to_geometry` (``simplify_tolerance``, ``max_vertices``)."""
        if self.last is None:
            return MultiPolygon()
        return mask_to_geometry(self.last.mask, self.tile.origin, self.tile.downsample, **simplify)


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
