"""ClickSession: SAM segmentation of one tile, refined click by click."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

import numpy as np
import torch
from shapely.geometry import MultiPolygon

from .clicks import Click
from .embeddings import shared_cache
from .geometry import mask_to_geometry
from .models.sam_model import SamModel
from .slides import Tile

MultimaskPolicy = Literal["first", "always", "never"]


@dataclass(eq=False)
class ClickResult:
    """The prediction after one click.

    low_res_logits: ``(1, 256, 256)`` logits fed back as the next click's mask prompt.
    predicted_iou: the decoder's estimate of the mask's IoU.
    model_seconds: time of the prompt-encoder + mask-decoder call (not the embedding).
    multimask: whether the decoder proposed several masks and the best-scoring one was kept.
    click: the click that produced this result.

    The full-resolution ``logits`` and ``mask`` (below) are kept only while this is the session's
    current prediction. Older results hold the low-resolution logits (256 KiB whatever the tile
    size) and the mask packed 8 pixels to a byte (H*W/8 bytes); an older result's ``mask`` is
    exact, its ``logits`` are upsampled again and match the original to float rounding (~1e-7).
    """

    low_res_logits: torch.Tensor
    predicted_iou: float
    model_seconds: float
    multimask: bool
    click: Click
    _upscale: Callable[[torch.Tensor], np.ndarray] = field(repr=False)
    _logits: np.ndarray | None = field(default=None, repr=False)
    _mask: np.ndarray | None = field(default=None, repr=False)
    _packed_mask: tuple[np.ndarray, tuple[int, int]] | None = field(default=None, repr=False)

    @property
    def logits(self) -> np.ndarray:
        """``(H, W)`` float32 SAM logits in tile pixels (probability = sigmoid(logits))."""
        if self._logits is None:
            self._logits = self._upscale(self.low_res_logits)
        return self._logits

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool mask in tile pixels (``logits > 0`` when predicted)."""
        if self._mask is None and self._packed_mask is not None:
            bits, shape = self._packed_mask
            self._mask = np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).view(bool)
        elif self._mask is None:
            self._mask = self.logits > 0
        return self._mask

    def release(self) -> None:
        """Keep only the low-resolution logits and the packed mask (called once no longer current)."""
        if self._packed_mask is None:
            self._packed_mask = (np.packbits(self.mask), self.mask.shape)
        self._logits = self._mask = None


class Predicted(Protocol):
    """What a click state keeps after each click: the click and the prediction it led to."""

    @property
    def click(self) -> Click: ...

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool mask in tile pixels."""

    @property
    def model_seconds(self) -> float: ...

    @property
    def predicted_iou(self) -> float | None: ...


PredictedT = TypeVar("PredictedT", bound=Predicted)


class ClickHistory(abc.ABC, Generic[PredictedT]):
    """Clicks on one tile and the prediction after each, with undo and reset: the bookkeeping
    shared by :class:`ClickSession` (SAM) and the widget's
    :class:`~histoclick.widgets.state.ClickState` (any evaluation
    :class:`~histoclick.evaluation.protocol.Method`). Subclasses predict in :meth:`_predict`.

    Args:
        tile: the pixels clicked on, with their level-0 origin and downsample.
    """

    def __init__(self, tile: Tile) -> None:
        self.tile = tile
        self.results: list[PredictedT] = []

    @property
    def clicks(self) -> list[Click]:
        """Clicks so far, oldest first, in tile pixels."""
        return [r.click for r in self.results]

    @property
    def last(self) -> PredictedT | None:
        """The current prediction, or None before the first click."""
        return self.results[-1] if self.results else None

    @property
    def mask(self) -> np.ndarray | None:
        """The current ``(H, W)`` bool mask in tile pixels (None before the first click)."""
        return None if self.last is None else self.last.mask

    def click(self, x: float, y: float, positive: bool = True) -> PredictedT:
        """Add a click at tile pixel ``(x, y)`` (column, row) and predict again.

        Raises:
            ValueError: when the click lies outside the tile, a coordinate is not finite, or
                ``positive`` is not a bool (or 0/1).
        """
        click = Click(y=y, x=x, is_positive=positive)  # checks finiteness and the label
        height, width = self.tile.image.shape[:2]
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(
                f"click at (x={x}, y={y}) is outside the {width}x{height} tile; clicks are in tile "
                "pixels (use tile.to_tile(x0, y0) to convert level-0 coordinates)"
            )
        result = self._predict(click)
        self.results.append(result)
        return result

    @abc.abstractmethod
    def _predict(self, click: Click) -> PredictedT:
        """The prediction from every click so far plus ``click`` (not yet in :attr:`results`)."""

    def undo(self) -> PredictedT | None:
        """Forget the last click; returns the prediction that is current again (None if none)."""
        if self.results:
            self.results.pop()
        return self.last

    def reset(self) -> None:
        """Forget every click."""
        self.results.clear()

    def geometry(self, **simplify: float | int | None) -> MultiPolygon:
        """The current :attr:`mask` as a level-0 MultiPolygon (empty when there is none).

        Keyword arguments go to :func:`histoclick.geometry.mask_to_geometry`
        (``simplify_tolerance``, ``max_vertices``).
        """
        mask = self.mask
        if mask is None:
            return MultiPolygon()
        return mask_to_geometry(mask, self.tile.origin, self.tile.downsample, **simplify)


class ClickSession(ClickHistory[ClickResult]):
    """Interactive segmentation of one tile with SAM.

    The image embedding is computed once (or taken from the cache). Each click runs SAM's prompt
    encoder and mask decoder with every click so far and the previous low-resolution logits as
    mask prompt. Clicks, undo, reset and geometry: :class:`ClickHistory`; ``reset`` keeps the
    embedding.

    Args:
        model: a model from :func:`histoclick.load_model`.
        image: a :class:`~histoclick.slides.Tile` (keeps its level-0 origin and downsample) or an
            ``(H, W, 3)`` uint8 RGB array (taken as a tile at origin (0, 0), downsample 1).
        cache_dir: folder for embeddings on disk, shared across sessions and processes
            (``~`` is expanded).
        multimask: ``"first"`` (SAM's three candidates on the first click, the one with the
            highest predicted IoU kept; one mask afterwards, as in SAM's paper), ``"always"`` or
            ``"never"``.
    """

    def __init__(
        self,
        model: SamModel,
        image: Tile | np.ndarray,
        *,
        cache_dir: str | os.PathLike | None = None,
        multimask: MultimaskPolicy = "first",
    ) -> None:
        if multimask not in ("first", "always", "never"):
            raise ValueError(f"multimask must be 'first', 'always' or 'never', got {multimask!r}")
        super().__init__(image if isinstance(image, Tile) else Tile.from_array(image))
        self.model = model
        self.multimask = multimask
        self.embedding = shared_cache(cache_dir).get(model, self.tile.image)

    def _predict(self, click: Click) -> ClickResult:
        clicks = [*self.clicks, click]
        multimask = self.multimask == "always" or (self.multimask == "first" and not self.results)
        decoded = self.model.decode(
            self.embedding,
            points=np.array([[c.x, c.y] for c in clicks], dtype=np.float32),
            labels=np.array([int(c.is_positive) for c in clicks]),
            mask_input=self.last.low_res_logits if self.last else None,
            multimask=multimask,
        )
        best = int(np.argmax(decoded.predicted_iou))
        result = ClickResult(
            # Clones: views would keep the decoder's other candidates (1 MiB at 256^2) alive.
            low_res_logits=decoded.low_res_logits[best : best + 1].clone(),
            predicted_iou=float(decoded.predicted_iou[best]),
            model_seconds=decoded.seconds,
            multimask=len(decoded.predicted_iou) > 1,  # a single-mask decoder ignores the request
            click=click,
            _upscale=self._upscale,
            _logits=decoded.logits[best].copy(),
        )
        if self.last is not None:
            self.last.release()
        return result

    def _upscale(self, low_res_logits: torch.Tensor) -> np.ndarray:
        """Tile-resolution logits from ``(1, 256, 256)`` low-resolution ones, as decode makes them."""
        with torch.inference_mode():
            logits = self.model.sam.postprocess_masks(
                low_res_logits[None].to(self.model.device),
                self.embedding.input_size,
                self.embedding.original_size,
            )
        return logits[0, 0].float().cpu().numpy()
