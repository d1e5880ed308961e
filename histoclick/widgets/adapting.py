"""The click widget's "Adapt to my annotations" toggle: online adaptation of SAM's mask decoder.

While the toggle is on, every Accept hands the accepted mask (tile pixels) and the viewport's
cached image embedding to an :class:`~histoclick.adaptation.Adapter`, which refits the decoder in
its low-priority worker process; each click reads the adapter's current model once, so it uses the adapted
decoder as soon as a refit is adopted and never waits for one. With the toggle off, clicks use
the widget's own model again (the adapter and its pairs are kept).

The status line is updated on the widget's next redraw (click, undo, accept, navigation) and when
the toggle, Save or Revert is used: no timer, so nothing runs in the kernel between user actions.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from concurrent.futures import CancelledError, Future

import ipywidgets as widgets
import numpy as np

from histoclick.adaptation import AdaptConfig, AdaptationFiles, Adapter
from histoclick.clicks import Click
from histoclick.evaluation.protocol import Prediction
from histoclick.evaluation.sam_method import SamMethod
from histoclick.models import SamModel
from histoclick.session import ClickSession
from histoclick.slides import Slide
from histoclick.widgets.prefetch import Prefetcher

TOGGLE_LABEL = "Adapt to my annotations"


class AdaptingSamMethod(SamMethod):
    """:class:`~histoclick.evaluation.sam_method.SamMethod` whose every click uses the model
    ``model_now()`` answers at that moment (the embedding is shared: same image encoder).

    With :meth:`prefetch_from` called, ``set_image`` returns at once: the embedding is computed
    on the prefetcher's worker thread (or taken from the cache), and the first ``predict`` (or
    :attr:`session`) waits for it; :attr:`ready` says whether that would wait.
    """

    def __init__(
        self,
        model: SamModel,
        model_now: Callable[[], SamModel],
        paused: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
        **kwargs: object,
    ) -> None:
        super().__init__(model, **kwargs)
        self.model_now = model_now
        self.paused = paused
        self.prefetcher: Prefetcher | None = None
        self._pending: Future[ClickSession] | None = None
        self._on_change: Callable[[], None] | None = None

    def prefetch_from(self, slide: Slide, on_change: Callable[[], None] | None = None) -> Prefetcher:
        """Compute embeddings on a background :class:`~histoclick.widgets.prefetch.Prefetcher`
        reading ``slide`` from now on (``on_change``: its status changed, and once more when the
        shown image's embedding is ready; called in its thread)."""
        self._on_change = on_change
        self.prefetcher = Prefetcher(
            self.model, slide, cache_dir=self.cache_dir, multimask=self.multimask, on_change=on_change
        )
        return self.prefetcher

    def set_image(self, image: np.ndarray) -> None:
        if self.prefetcher is None:
            super().set_image(image)
            return
        self._session, self._pending = None, self.prefetcher.session_for(image)
        # SamMethod's timing fields: the encoder did not run now when the session is ready
        # (cached or prefetched); its seconds are not measured here.
        self.embed_reused, self.embed_seconds = self._pending.done(), math.nan
        if self._on_change is not None and not self._pending.done():
            self._pending.add_done_callback(lambda _: self._on_change())

    @property
    def ready(self) -> bool:
        """Whether the image's embedding is ready (a click would not wait for it)."""
        return self._pending is None or self._pending.done()

    @property
    def session(self) -> ClickSession | None:
        """The viewport's click session (its tile and cached embedding); None before set_image.
        Waits for the embedding while the prefetcher computes it."""
        if self._pending is not None:
            try:
                self._session = self._pending.result()
            except CancelledError:
                raise RuntimeError(
                    "this viewport's embedding was cancelled because the widget was closed; "
                    "open a new widget"
                ) from None
            self._pending = None
        return self._session

    def predict(self, clicks: list[Click], prev_probs: np.ndarray | None) -> Prediction:
        if self.session is not None:
            self._session.model = self.model_now()
        with self.paused():  # a background refit stops while the click runs
            return super().predict(clicks, prev_probs)


class AdaptationControls:
    """The toggle, the adaptation status line and the adapter behind them.

    Args:
        model: the widget's SAM model; None when the widget drives another method (the toggle
            is then disabled, its tooltip says why).
        adapter: an adapter to continue (e.g. :meth:`Adapter.load`); the toggle starts on. Its
            base must have ``model``'s image encoder.
        config: settings of the adapter the toggle creates when none is given.
        cache_dir: the widget's embedding cache folder; the created adapter keeps its pairs'
            embeddings there (needed to save them).
        unavailable: why adaptation is not offered (with ``model`` None).
    """

    def __init__(
        self,
        model: SamModel | None,
        *,
        adapter: Adapter | None = None,
        config: AdaptConfig | None = None,
        cache_dir: str | os.PathLike | None = None,
        unavailable: str = "",
    ) -> None:
        if model is None and (adapter is not None or config is not None):
            raise ValueError(f"adapter= and adapt_config= need a SAM model: {unavailable}")
        if adapter is not None and adapter.encoder_identity != model.encoder_identity:
            raise ValueError(
                f"the adapter's base has image encoder {adapter.encoder_identity}, the widget's model "
                f"{model.encoder_identity}: give the widget the model the adapter was made for "
                "(its base, adapter.base)"
            )
        self.model = model
        self.unavailable = unavailable
        self.adapter = adapter
        self.config = config or AdaptConfig()
        self.cache_dir = cache_dir
        self._owns_adapter = False
        self.toggle = widgets.Checkbox(
            value=adapter is not None,
            description=TOGGLE_LABEL,
            indent=False,
            disabled=model is None,
            tooltip=(
                "refit SAM's mask decoder on every accepted mask, in the background; clicks use "
                "the refit decoder once it is adopted"
                if model is not None
                else f"not offered: {unavailable}"
            ),
        )
        self.status = widgets.HTML()
        self.refresh()

    @property
    def enabled(self) -> bool:
        return self.toggle.value

    def paused(self) -> contextlib.AbstractContextManager[None]:
        """A context in which the adapter's background refit (if any) is stopped."""
        return self.adapter.paused_for_click() if self.adapter is not None else contextlib.nullcontext()

    def model_for_clicks(self) -> SamModel:
        """The adapter's current model while the toggle is on, else the widget's model."""
        return self.adapter.model if self.enabled and self.adapter is not None else self.model

    def set_enabled(self, on: bool) -> None:
        """Turn adaptation on (creating the adapter the first time) or off."""
        if on and self.model is None:
            self.toggle.value = False
            raise ValueError(f"adaptation is not offered: {self.unavailable}")
        if on and self.adapter is None:
            self.adapter = Adapter(self.model, self.config, cache_dir=self.cache_dir, background=True)
            self._owns_adapter = True
        self.toggle.value = on
        self.refresh()

    def accepted(self, session: ClickSession, mask: np.ndarray, ignore: np.ndarray | None = None) -> None:
        """Hand an accepted mask (``(H, W)`` tile pixels) and ``session``'s embedding to the
        adapter while the toggle is on (its refit starts in the background); ``ignore``: tile
        pixels that are neither object nor background (beyond the slide's edge)."""
        if self.enabled and self.adapter is not None:
            self.adapter.accept(session, mask, ignore=ignore)
        self.refresh()

    def save(self, anchor: str | os.PathLike) -> AdaptationFiles:
        """Save the adapted decoder and its pairs for ``anchor`` (a GeoJSON or QuPath project)."""
        adapter = self._require("save an adapted decoder")
        if adapter.pairs and adapter.cache_dir is None:
            raise ValueError(
                "the adapter keeps its embeddings in memory only, so its pairs could not be used "
                "tomorrow: create the widget with cache_dir= (an embedding cache folder) to save"
            )
        files = adapter.save(anchor)
        self.refresh()
        return files

    def revert(self) -> None:
        """Go back to the base decoder (the pairs are kept)."""
        self._require("revert").revert()
        self.refresh()

    def line(self) -> str | None:
        """The adapter's status line; None while the toggle is off."""
        if not self.enabled or self.adapter is None:
            return None
        return self.adapter.status.line()

    def refresh(self) -> None:
        """Show the adapter's current status."""
        line = self.line()
        self.status.value = f"<small>adaptation: {line or 'off'}</small>"

    def close(self) -> None:
        """Stop the worker of an adapter the toggle created (a given one is the caller's)."""
        if self._owns_adapter and self.adapter is not None:
            self.adapter.close()

    def _require(self, action: str) -> Adapter:
        if self.adapter is None:
            raise ValueError(f"nothing to {action}: turn on '{TOGGLE_LABEL}' and accept a few masks first")
        return self.adapter
