"""The guard rail's score: how well a decoder segments earlier accepts with simulated clicks.

Uses the evaluation protocol's own pieces (:func:`~histoclick.evaluation.run_sample` with RITM's
clicker, :func:`~histoclick.evaluation.noc`, :func:`~histoclick.evaluation.miou_curve`) on the
cached image embeddings of the accepted masks, so no image and no image encoder is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from histoclick.clicks import Click
from histoclick.evaluation.metrics import miou_curve, noc
from histoclick.evaluation.protocol import Prediction, Sample, run_sample
from histoclick.models.sam_model import Embedding, SamModel


@dataclass(frozen=True)
class ReplayScore:
    """``miou``: mean IoU over clicks 1..k and pairs (higher is better: the adoption criterion);
    ``noc85``: mean clicks to IoU 0.85 (k when never reached); ``pairs``: how many were scored."""

    miou: float
    noc85: float
    pairs: int


class EmbeddingMethod:
    """SAM on one already computed image embedding, as an evaluation
    :class:`~histoclick.evaluation.Method`: SAM's three candidates on the first click (the
    best-scoring kept), one mask after, the previous low-resolution logits fed back, as
    :class:`~histoclick.ClickSession` does. ``set_image`` only checks the image size, since the
    pixels are already encoded."""

    def __init__(self, model: SamModel, embedding: Embedding, name: str = "replay") -> None:
        self.model = model
        self.embedding = embedding
        self.name = name
        self._low_res = None

    def set_image(self, image: np.ndarray) -> None:
        if tuple(image.shape[:2]) != tuple(self.embedding.original_size):
            raise ValueError(
                f"the embedding is of a {self.embedding.original_size} tile, not {image.shape[:2]}"
            )
        self._low_res = None

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        decoded = self.model.decode(
            self.embedding,
            points=np.array([[c.x, c.y] for c in clicks], dtype=np.float32),
            labels=np.array([int(c.is_positive) for c in clicks]),
            mask_input=self._low_res if prev_probs is not None else None,
            multimask=len(clicks) == 1,
        )
        best = int(np.argmax(decoded.predicted_iou))
        self._low_res = decoded.low_res_logits[best : best + 1]
        return Prediction(expit(decoded.logits[best]).astype(np.float32), decoded.seconds)


def replay_score(
    model: SamModel,
    items: Sequence[tuple[Embedding, np.ndarray, np.ndarray | None]],
    clicks: int,
) -> ReplayScore:
    """Score ``model`` on ``(embedding, mask, ignore)`` items (masks in tile pixels, bool) with
    ``clicks`` simulated clicks each (the full ``clicks``, no early stop)."""
    curves, nocs = [], []
    for embedding, mask, ignore in items:
        height, width = mask.shape
        placeholder = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))
        sample = Sample("replay", placeholder, mask, ignore)
        if sample.is_empty():
            continue
        ious = run_sample(EmbeddingMethod(model, embedding), sample, max_clicks=clicks).ious
        curves.append(ious)
        nocs.append(noc(ious, 0.85, clicks))
    if not curves:
        raise ValueError("no replay mask has an object pixel: the guard rail cannot score a decoder")
    return ReplayScore(float(miou_curve(curves, clicks).mean()), float(np.mean(nocs)), len(curves))
