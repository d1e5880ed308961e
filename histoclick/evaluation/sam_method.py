"""SAM (official, fine-tuned or the tiny test model) as an evaluation method, via ClickSession."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from histoclick.clicks import Click
from histoclick.evaluation.naming import method_name, weights_digest
from histoclick.evaluation.protocol import Prediction

if TYPE_CHECKING:
    from histoclick.models import SamModel
    from histoclick.session import ClickSession, MultimaskPolicy

# Cold seconds of each embedding computed in this process, by embedding-cache key (encoder
# identity and pixels): a method that reuses another method's embedding is charged these.
_ENCODER_SECONDS: dict[str, float] = {}


class SamMethod:
    """Click segmentation with a loaded SAM model.

    ``set_image`` opens a :class:`~histoclick.ClickSession` (computing or fetching the image
    embedding, so its time counts in the loop's wall time but not in ``model_seconds``).
    Methods whose models share an image encoder (same weights, e.g. a base SAM and its
    decoder-only fine-tune) share one cached embedding: the second skips the encoder. So that
    each method can still be timed as if it ran alone, ``set_image`` sets ``embed_seconds``
    (the cold seconds of this image's embedding: measured now when the encoder ran, else the
    time measured when it was computed in this process; NaN when it came from an earlier
    process's disk cache) and ``embed_reused`` (True when the encoder did not run now). Each
    ``predict`` adds the newest click to the session, which feeds SAM every click so far plus the
    previous low-resolution logits; the probabilities are ``sigmoid(logits)`` in tile pixels.
    ``prev_probs`` is not needed: the session keeps SAM's own previous logits.

    Args:
        model: from :func:`histoclick.load_model`.
        name: method name in tables (default :func:`~histoclick.evaluation.naming.method_name`,
            e.g. ``"sam:vit_b@ec2df627"``); ``weights`` is always the model's full digest.
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
        self.name = name or method_name(model)
        self.weights = weights_digest(model)
        self.cache_dir = cache_dir
        self.multimask = multimask
        self._session: ClickSession | None = None
        self.embed_seconds = math.nan
        self.embed_reused = False

    def set_image(self, image: np.ndarray) -> None:
        import torch  # torch is imported only when SAM is used

        from histoclick.embeddings import EmbeddingCache
        from histoclick.session import ClickSession

        key = EmbeddingCache.key(self.model, image)
        encoder_ran: list[bool] = []
        hook = self.model.sam.image_encoder.register_forward_hook(
            lambda *_: encoder_ran.append(True)
        )
        start = time.perf_counter()
        try:
            self._session = ClickSession(
                self.model, image, cache_dir=self.cache_dir, multimask=self.multimask
            )
            if encoder_ran and self.model.device.type == "cuda":
                torch.cuda.synchronize(self.model.device)  # the encoder runs asynchronously
        finally:
            hook.remove()
        if encoder_ran:
            _ENCODER_SECONDS[key] = time.perf_counter() - start
        self.embed_reused = not encoder_ran
        self.embed_seconds = _ENCODER_SECONDS.get(key, math.nan)

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
        return Prediction(
            expit(result.logits).astype(np.float32), seconds, result.predicted_iou
        )
