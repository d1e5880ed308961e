"""What a method and a dataset must provide, and the per-sample click loop that connects them.

The loop is RITM's ``evaluate_sample`` (shared by FocalClick and SimpleClick): the prediction
starts empty; each step simulates a click from the current errors, asks the method for
probabilities, thresholds them at > 0.49 and stores the IoU as float32.
"""

from __future__ import annotations

import abc
import time
import warnings
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from histoclick.clicks import Click
from histoclick.evaluation.clicker import next_click
from histoclick.evaluation.metrics import PRED_THRESHOLD, boundary_f, iou


@dataclass(frozen=True)
class Prediction:
    """A method's answer to the clicks so far.

    probs: ``(height, width)`` float32 object probabilities in [0, 1], tile pixels.
    model_seconds: seconds the model itself took for this prediction (excluding bookkeeping).
    predicted_iou: the model's own estimate of its mask's IoU (SAM's), None when it has none.
    """

    probs: np.ndarray
    model_seconds: float
    predicted_iou: float | None = None


@runtime_checkable
class Method(Protocol):
    """An interactive segmentation method: set the image once, then predict after each click."""

    name: str

    def set_image(self, image: np.ndarray) -> None:
        """Prepare for a new ``(height, width, 3)`` uint8 RGB image; forget earlier clicks."""

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        """Predict from all clicks so far (oldest first) and the previous probabilities
        (None before the first click)."""


@dataclass(frozen=True)
class Sample:
    """One evaluation item, everything in tile pixels.

    image: ``(height, width, 3)`` uint8 RGB. gt: ``(height, width)`` bool object mask.
    ignore: ``(height, width)`` bool, True where pixels count neither in IoU nor as errors.
    meta: where the sample came from (paths, level-0 origin, downsample, ...). The evaluation
    reads ``mpp`` (micrometres per tile pixel: boundary F-score), ``slide`` (the slide it came
    from: intervals resample slides) and ``object_id`` (one object of a tile) when present.
    """

    id: str
    image: np.ndarray
    gt: np.ndarray
    ignore: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when no gt pixel is left outside the ignored region."""
        gt = self.gt if self.ignore is None else self.gt & ~self.ignore
        return not gt.any()


class Dataset(abc.ABC):
    """A named, ordered collection of samples, loaded lazily by id.

    Iterating yields the samples with a non-empty gt; empty ones are skipped with a warning and
    counted in ``skipped`` (their ids in ``skipped_ids``), both reset at the start of each pass.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.skipped = 0
        self.skipped_ids: list[str] = []

    @property
    @abc.abstractmethod
    def sample_ids(self) -> list[str]:
        """Ids of all candidate samples, in evaluation order."""

    @abc.abstractmethod
    def load(self, sample_id: str) -> Sample:
        """Load one sample (its gt may be empty)."""

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __iter__(self) -> Iterator[Sample]:
        return self.samples()

    def samples(self, exclude: Container[str] = (), limit: int | None = None) -> Iterator[Sample]:
        """Yield the non-empty samples among the first ``limit`` ids (all when None), except
        those in ``exclude`` (which are not loaded)."""
        self.skipped = 0
        self.skipped_ids = []
        for sample_id in self.sample_ids[:limit]:
            if sample_id in exclude:
                continue
            sample = self.load(sample_id)
            if sample.is_empty():
                warnings.warn(
                    f"{self.name}: sample {sample_id!r} has an empty ground truth mask; "
                    "skipped (IoU and NoC are undefined without an object)",
                    stacklevel=2,
                )
                self.skipped += 1
                self.skipped_ids.append(sample_id)
                continue
            yield sample


class Subset(Dataset):
    """Some samples of another dataset, by id, under a name of their own (e.g. held-out tiles)."""

    def __init__(self, dataset: Dataset, ids: Sequence[str], name: str | None = None) -> None:
        unknown = sorted(set(ids) - set(dataset.sample_ids))
        if unknown:
            raise ValueError(f"{dataset.name} has no samples {unknown[:3]}; ids come from its sample_ids")
        super().__init__(name or f"{dataset.name} (subset)")
        self.dataset = dataset
        self._ids = list(ids)

    @property
    def sample_ids(self) -> list[str]:
        return list(self._ids)

    def load(self, sample_id: str) -> Sample:
        return self.dataset.load(sample_id)


@dataclass(frozen=True)
class SampleRun:
    """The record of one sample's click loop; per-click arrays have one entry per click run.

    ious: float32 IoU after each click. model_seconds: the method's own seconds per click.
    click_seconds: wall seconds per click (simulate the click, predict, threshold, IoU).
    set_image_seconds: wall seconds of ``method.set_image``.
    probs: the last prediction's probabilities, ``(height, width)`` float32.
    boundary_f: boundary F-score after each click (NaN when not computed: no tolerance given,
    or the sample's ``meta["mpp"]`` is unknown).
    """

    clicks: list[Click]
    ious: np.ndarray
    model_seconds: np.ndarray
    click_seconds: np.ndarray
    set_image_seconds: float
    probs: np.ndarray
    boundary_f: np.ndarray


def run_sample(
    method: Method,
    sample: Sample,
    max_clicks: int = 20,
    target_iou: float | None = None,
    pred_thr: float = PRED_THRESHOLD,
    boundary_um: float | None = None,
) -> SampleRun:
    """Run the simulated-user loop on one sample.

    Stops after ``max_clicks`` clicks, or earlier once the IoU reaches ``target_iou`` (compared
    in float32, as NoC is). With ``boundary_um``, also scores each click's boundary F-score at
    that tolerance in micrometres, converted to tile pixels with ``sample.meta["mpp"]``
    (micrometres per tile pixel; NaN scores without it), outside the timed part of the loop.
    Raises ValueError for an empty gt (skip those samples).
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be at least 1, got {max_clicks}")
    if sample.is_empty():
        raise ValueError(f"sample {sample.id!r} has an empty ground truth mask; skip it")
    gt = np.asarray(sample.gt, dtype=bool)
    if sample.image.shape[:2] != gt.shape:
        raise ValueError(
            f"sample {sample.id!r}: image is {sample.image.shape[:2]} pixels but gt is "
            f"{gt.shape}; image and mask must cover the same pixels"
        )
    start = time.perf_counter()
    method.set_image(sample.image)
    set_image_seconds = time.perf_counter() - start

    not_clicked = np.ones(gt.shape, dtype=bool)
    pred = np.zeros(gt.shape, dtype=bool)
    probs: np.ndarray | None = None
    clicks: list[Click] = []
    ious, model_seconds, click_seconds, boundary_scores = [], [], [], []
    mpp = sample.meta.get("mpp")
    tolerance_px = None if boundary_um is None or not mpp else boundary_um / float(mpp)
    stop_at = None if target_iou is None else np.float32(target_iou)
    for _ in range(max_clicks):
        start = time.perf_counter()
        click = next_click(gt, pred, not_clicked, sample.ignore)
        clicks.append(click)
        not_clicked[click.y, click.x] = False
        prediction = method.predict(list(clicks), probs)
        probs = prediction.probs
        if probs.shape != gt.shape:
            raise ValueError(
                f"method {method.name!r} returned probabilities of shape {probs.shape} for an "
                f"image of {gt.shape}; predict must answer in the image's pixels"
            )
        pred = probs > pred_thr
        score = iou(gt, pred, sample.ignore)
        click_seconds.append(time.perf_counter() - start)
        ious.append(score)
        model_seconds.append(prediction.model_seconds)
        boundary_scores.append(
            np.nan if tolerance_px is None else boundary_f(gt, pred, tolerance_px, sample.ignore)
        )
        if stop_at is not None and score >= stop_at:
            break
    return SampleRun(
        clicks=clicks,
        ious=np.asarray(ious, dtype=np.float32),
        model_seconds=np.asarray(model_seconds, dtype=np.float64),
        click_seconds=np.asarray(click_seconds, dtype=np.float64),
        set_image_seconds=set_image_seconds,
        probs=probs,
        boundary_f=np.asarray(boundary_scores, dtype=np.float64),
    )
