"""SAM (official, fine-tuned or the tiny test model) as an evaluation method, via ClickSession."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from histoclick.clicks import Click
from histoclick.evaluation.protocol import Prediction

if TYPE_CHECKING:
    from histoclick.models import SamModel
    from histoclick.session import ClickSession, MultimaskPolicy


class SamMethod:
    """Click segmentation with a loaded SAM model.

    ``set_image`` opens a :class:`~histoclick.ClickSession` (computing or fetching the image
    embedding, so its time counts in the loop's wall time but not in ``model_seconds``). Each
    ``predict`` adds the newest click to the session, which feeds SAM every click so far plus the
    previous low-resolution logits; the probabilities are ``sigmoid(logits)`` in tile pixels.
    ``prev_probs`` is not needed: the session keeps SAM's own previous logits.

    Args:
        model: from :func:`histoclick.load_model`.
        name: method name in tables (default ``"sam:<model name>"``).
        cache_dir: embedding cache folder (see ClickSession).
        multimask: ClickSession's multimask policy.
    """

    def __init__(
        self,
        model: SamModel,
        *,
        name: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        multimask: MultimaskPolicy = "first",
    ) -> None:
        self.model = model
        self.name = name or f"sam:{model.name}"
        self.cache_dir = cache_dir
        self.multimask = multimask
        self._session: ClickSession | None = None

    def set_image(self, image: np.ndarray) -> None:
        from histoclick.session import ClickSession  # torch is imported only when SAM is used

        self._session = ClickSession(
            self.model, image, cache_dir=self.cache_dir, multimask=self.multimask
        )

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        session = self._session
        if session is None:
            raise RuntimeError("call set_image(image) before predict(clicks, prev_probs)")
        if not clicks:
            return Prediction(np.zeros(session.tile.image.shape[:2], np.float32), 0.0)
        # The protocol adds one click per call; anything else (a new sequence) starts over.
        new = clicks[-1:]
        if session.clicks != clicks[:-1]:
            session.reset()
            new = clicks
        seconds = 0.0
        for click in new:
            result = session.click(click.x, click.y, click.is_positive)
            seconds += result.model_seconds
        return Prediction(expit(result.logits).astype(np.float32), seconds)
