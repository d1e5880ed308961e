"""Online adaptation: SAM's mask decoder learns from the masks the user accepts, while they annotate.

Every accepted mask is a training example on an image embedding that is already computed (the
encoder is frozen), so the decoder can be refit cheaply after each accept:

>>> adapter = Adapter(load_model("vit_b"), AdaptConfig(scenario="md"))    # doctest: +SKIP
>>> session = adapter.session(tile)            # clicks always use adapter.model, the current one
>>> session.click(512, 400)                                                # doctest: +SKIP
>>> adapter.accept(session, session.last.mask) # refits in the background # doctest: +SKIP
>>> adapter.status.line()                      # "12 pairs, refit 3.1 s, adopted"
>>> adapter.save("tumour.geojson")             # decoder + pairs next to the GeoJSON

How a refit works (:meth:`Adapter.refit_now` in the calling thread, or after
:meth:`Adapter.accept` in the background: a worker thread sends the new pairs and the current
decoder's weights to a low-priority worker process, :class:`~histoclick.background.BackgroundWorker`,
which trains and scores there and sends the trained weights back; a thread would hold the GIL the
clicks need, a process does not, see ``benchmarks/bench_adaptation.py``):

- It starts from the current decoder: a deep copy is trained (copy-on-refit), the published
  decoders are never changed, so a click never sees half-updated weights. The image and prompt
  encoders are shared with the base model and stay frozen.
- Training is ``histoclick finetune``'s: :class:`~histoclick.training.loop.ClickTrainingModel`
  (RITM's simulated first and error clicks, previous logits fed back) and
  :func:`~histoclick.training.loop.training_step` (loss, IoU head, gradient clipping), on batches
  drawn from the training pairs, for ``steps`` steps or until ``time_budget_s``. No augmentation
  (only the embeddings are kept, not the pixels). The decoder is left in eval mode while it
  trains: SAM's and the enhanced decoder have no dropout or batch norm, so the mode changes
  nothing numerically, and the modules shared with the live model never change mode under a click.
- Guard rail: every ``replay_every``-th accept (the 2nd, 5th, 8th... for 3) is held out as
  replay and never trained on. The new decoder is adopted only when its mean IoU over
  ``replay_clicks`` simulated clicks on the newest ``replay_size`` replay pairs (the training
  pairs while none is held out yet) is not below the current decoder's; then the reference to
  the current model is swapped under a lock, between two clicks.
- :meth:`Adapter.revert` goes back to the base decoder (the pairs are kept).

Deterministic with a seed when ``time_budget_s`` is None: refit ``n`` draws its batches and
clicks from ``(seed, n)``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam

from histoclick.adaptation.replay import ReplayScore, replay_score
from histoclick.background import BackgroundWorker
from histoclick.embeddings import EmbeddingCache
from histoclick.models.finetuned import apply_tensors, base_reference, trained_digest
from histoclick.models.sam_model import Embedding, SamModel
from histoclick.session import ClickResult, ClickSession
from histoclick.slides import Tile
from histoclick.training.data import low_res_target
from histoclick.training.loop import ClickTrainingConfig, ClickTrainingModel, training_step
from histoclick.training.scenarios import apply_scenario, frozen_encoder

ADAPT_SCENARIOS = ("md", "enhanced")


@dataclass(frozen=True)
class AdaptConfig(ClickTrainingConfig):
    """Settings of online adaptation: the :class:`~histoclick.training.ClickTrainingConfig` of
    each step (as ``histoclick finetune``'s, with a fresh AdamW each refit and a constant lr;
    ``scenario``: ``md``, SAM's mask decoder, or ``enhanced``, the enhanced decoder built from
    the base's at the start: the encoder is always frozen), and

    steps: optimizer steps per refit. batch_size: pairs per step (drawn with replacement).
    time_budget_s: stop training before a step that would end past this many seconds (judged
        by the previous step's time; the first step always runs; None: always ``steps``,
        deterministic);
        the guard rail's scoring comes on top (``replay_size * replay_clicks`` decoder calls for
        the new decoder, as many for the current one unless scored before on the same replay).
    max_pairs: the newest training pairs a refit uses.
    replay_every: every n-th accept is held out for the guard rail (0: none is).
    replay_size: the newest held-out pairs scored. replay_clicks: simulated clicks per pair.
    threads: torch threads of the background refits' worker process
        (:class:`~histoclick.background.BackgroundWorker`; None: one less than this process has,
        at least 1).
    nice: how much lower the worker process's CPU priority is than this process's (0..19;
        Linux/macOS), so where the cores are shared the clicks come first. 10 gives the worker
        about a tenth of a core a click wants (and a click stops it outright,
        :meth:`Adapter.paused_for_click`); 19 (the lowest) lets other busy programs starve
        it: measured on a loaded 2-core machine, a refit then made no progress for minutes.
    seed: seeds batches, clicks and the enhanced decoder's new layers.
    """

    batch_size: int = 2
    steps: int = 20
    time_budget_s: float | None = 4.0
    max_pairs: int = 50
    replay_every: int = 3
    replay_size: int = 2
    replay_clicks: int = 2
    threads: int | None = None
    nice: int = 10

    def __post_init__(self) -> None:
        if self.scenario not in ADAPT_SCENARIOS:
            raise ValueError(
                f"online adaptation trains the decoder on cached embeddings: scenario must be one "
                f"of {', '.join(ADAPT_SCENARIOS)}, got {self.scenario!r}"
            )
        super().__post_init__()
        if min(self.steps, self.max_pairs, self.replay_size, self.replay_clicks) < 1:
            raise ValueError("steps, max_pairs, replay_size and replay_clicks must be >= 1")
        if self.replay_every < 0 or (self.time_budget_s is not None and self.time_budget_s <= 0):
            raise ValueError("replay_every must be >= 0 and time_budget_s positive or None")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice must be in 0..19, got {self.nice}")


@dataclass(frozen=True)
class Pair:
    """One accepted mask. key: the embedding-cache key of its tile (encoder identity + pixels).
    mask: ``(H, W)`` bool, tile pixels. ignore: ``(H, W)`` bool or None, pixels that count
    neither as object nor as background. held_out: replay pair of the guard rail (never trained)."""

    key: str
    embedding: Embedding
    mask: np.ndarray
    ignore: np.ndarray | None
    held_out: bool


@dataclass(frozen=True)
class AdaptationStatus:
    """Where adaptation stands (what the widget's status line shows).

    pairs, training_pairs, replay_pairs: accepted masks, and how they are used.
    refits: refits finished. running: a refit is in progress (or queued).
    adopted: whether the last refit's decoder was adopted (None before the first refit).
    last_refit_seconds, last_steps: wall time (training and guard rail) and optimizer steps of it.
    replay_before, replay_after: the guard rail's scores of the current and the new decoder.
    decoder: ``"base"`` or ``"adapted"``: what clicks use now. error: why the last refit failed.
    """

    pairs: int = 0
    training_pairs: int = 0
    replay_pairs: int = 0
    refits: int = 0
    running: bool = False
    adopted: bool | None = None
    last_refit_seconds: float | None = None
    last_steps: int = 0
    replay_before: ReplayScore | None = None
    replay_after: ReplayScore | None = None
    decoder: str = "base"
    error: str | None = None

    def line(self) -> str:
        """One line for people, e.g. ``"12 pairs (8 train, 4 replay), refit 3.1 s: adopted"``."""
        text = f"{self.pairs} pairs ({self.training_pairs} train, {self.replay_pairs} replay)"
        if self.running:
            text += ", refitting"
        if self.error:
            return f"{text}, last refit failed: {self.error}"
        if self.adopted is not None:
            verdict = "adopted" if self.adopted else "kept the previous decoder (worse on replay)"
            text += f", refit {self.last_refit_seconds:.1f} s ({self.last_steps} steps): {verdict}"
        return f"{text}; decoder: {self.decoder}"


class Adapter:
    """Online adaptation of ``model``'s mask decoder to the masks a user accepts.

    Args:
        model: the base model (not changed: the adapter's models share its image and prompt
            encoders and own copies of the decoder).
        config: see :class:`AdaptConfig`.
        cache_dir: the embedding cache folder (where ``accept(key, ...)`` finds embeddings and
            :meth:`save` keeps them); None: embeddings in memory only.
        background: refit in the background after each :meth:`accept`, in a low-priority worker
            process (:class:`~histoclick.background.BackgroundWorker`, started with the adapter),
            so clicks are not slowed; False: only :meth:`refit_now` refits (in the calling
            thread, deterministic), and no process is started.
    """

    def __init__(
        self,
        model: SamModel,
        config: AdaptConfig = AdaptConfig(),
        *,
        cache_dir: str | os.PathLike | None = None,
        background: bool = True,
    ) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.background = background
        self.origin = base_reference(model)  # what a saved checkpoint names as its base
        self.encoder_identity = model.encoder_identity
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # the enhanced decoder's new layers
            base = _derived(model, copy.deepcopy(model.sam.mask_decoder), model.identity, model.source)
            self.trainable = apply_scenario(base, config.scenario)
        if config.scenario != "md":
            base = self._published(base, "base")
        _freeze(base)
        self.base = base
        self._current = base
        self._lock = threading.Condition()  # guards everything below; notified on every change
        self._refit_lock = threading.Lock()  # one refit at a time
        self._pairs: list[Pair] = []
        self._status = AdaptationStatus()
        self._scores: dict[tuple[str, tuple[int, ...]], ReplayScore] = {}  # (model, replay pairs) -> score
        self._generation = 0  # incremented by revert: a refit started before is not adopted
        self._pending = False
        self._closed = False
        self._worker: threading.Thread | None = None
        # Background refits train in a low-priority worker process (a thread's Python code would
        # hold the GIL the clicks need); it keeps the first ``_shipped`` pairs it was sent.
        self._process: BackgroundWorker | None = None
        self._shipped = 0
        if background:  # started now: it imports torch while the user annotates the first object
            self._process = self._new_process()

    # -- what clicks use ------------------------------------------------------------------

    @property
    def model(self) -> SamModel:
        """The model clicks should use now (base or the last adopted decoder). Published
        models are never changed afterwards; a refit publishes a new one."""
        with self._lock:
            return self._current

    def paused_for_click(self) -> contextlib.AbstractContextManager[None]:
        """A context in which a background refit's worker process is stopped, so a click has
        the cores to itself (:meth:`histoclick.background.BackgroundWorker.paused`)."""
        process = self._process
        return process.paused() if process is not None else contextlib.nullcontext()

    def session(self, image: Tile | np.ndarray, **kwargs: Any) -> AdaptiveSession:
        """A :class:`~histoclick.ClickSession` whose every click uses the current decoder."""
        return AdaptiveSession(self, image, cache_dir=kwargs.pop("cache_dir", self.cache_dir), **kwargs)

    @property
    def status(self) -> AdaptationStatus:
        with self._lock:
            return dataclasses.replace(self._status, running=self._status.running or self._pending)

    @property
    def pairs(self) -> list[Pair]:
        """The accepted pairs, oldest first."""
        with self._lock:
            return list(self._pairs)

    # -- accepting and refitting ----------------------------------------------------------

    def accept(
        self,
        source: ClickSession | str,
        mask: np.ndarray,
        *,
        embedding: Embedding | None = None,
        ignore: np.ndarray | None = None,
        held_out: bool | None = None,
    ) -> Pair:
        """Add an accepted mask as a training pair; with ``background``, queue a refit.

        Args:
            source: the session the mask was made in, or the embedding-cache key of its tile.
            mask: ``(H, W)`` object mask in tile pixels (non-zero = object).
            embedding: the tile's embedding when ``source`` is a key (else looked up in
                ``cache_dir``).
            ignore: ``(H, W)`` pixels that are neither object nor background (unannotated).
            held_out: force (True) or forbid (False) holding this pair out as replay; None:
                every ``replay_every``-th accept is held out.
        Returns:
            The pair. Raises ValueError when the mask does not fit the tile or is empty.
        """
        mask = np.asarray(mask) != 0
        key, embedding = self._embedding_of(source, embedding, mask.shape)
        for name, array in (("mask", mask), ("ignore", ignore)):
            if array is not None and tuple(np.shape(array)) != tuple(embedding.original_size):
                raise ValueError(
                    f"the {name} is {np.shape(array)} pixels but its tile is {embedding.original_size}: "
                    "give the mask in the tile's pixels"
                )
        ignore = None if ignore is None else np.asarray(ignore, dtype=bool)
        if not (mask if ignore is None else mask & ~ignore).any():
            raise ValueError("the accepted mask is empty: an empty mask teaches nothing; accept an object")
        with self._lock:
            if held_out is None:
                every = self.config.replay_every
                held_out = every > 0 and len(self._pairs) % every == every - 1
            pair = Pair(key, embedding, mask, ignore, bool(held_out))
            self._pairs.append(pair)
            self._status = dataclasses.replace(self._status, **self._counts())
        if self.background:
            self.request_refit()
        return pair

    def request_refit(self) -> None:
        """Queue a background refit (as an accept does with ``background``)."""
        with self._lock:
            self._pending = True
            self._start_worker()
            self._lock.notify_all()

    def refit_now(self) -> AdaptationStatus:
        """Refit synchronously in this thread (deterministic when ``time_budget_s`` is None)."""
        self._refit()
        return self.status

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no refit is queued or running; False when ``timeout`` seconds passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._status.running, timeout)

    def revert(self) -> None:
        """Go back to the base decoder; a refit in progress is not adopted. Pairs are kept, and
        later refits start from the base."""
        with self._lock:
            self._generation += 1
            self._current = self.base
            self._status = dataclasses.replace(self._status, decoder="base", adopted=None)
            self._lock.notify_all()

    def close(self) -> None:
        """Stop the worker thread and process (after the refit in progress)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join()
        if self._process is not None:
            self._process.close()
            self._process = None

    def __enter__(self) -> Adapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- persistence (see histoclick.adaptation.store) ------------------------------------

    def save(self, anchor: str | os.PathLike) -> Any:
        """Save the current decoder and the pairs next to a GeoJSON or in a QuPath project
        (see :func:`histoclick.adaptation.store.save`)."""
        from histoclick.adaptation.store import save

        return save(self, anchor)

    @classmethod
    def load(cls, anchor: str | os.PathLike, **kwargs: Any) -> Adapter:
        """The adapter :meth:`save` wrote (see :func:`histoclick.adaptation.store.load`)."""
        from histoclick.adaptation.store import load

        return load(anchor, **kwargs)

    def restore(self, pairs: list[Pair], current: SamModel | None, refits: int) -> None:
        """Put saved state back (used by :func:`histoclick.adaptation.store.load`)."""
        with self._lock:
            self._pairs = list(pairs)
            self._shipped = 0  # the worker process gets them all with the next refit
            if current is not None:
                self._current = current
            self._status = dataclasses.replace(
                self._status, refits=refits, decoder="base" if current is None else "adapted", **self._counts()
            )

    def adapted_from_tensors(self, tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> SamModel:
        """A published model: the base with the decoder tensors of a saved checkpoint."""
        return self._adapted(tensors, f"adapted decoder from {path}")

    # -- internals ------------------------------------------------------------------------

    def _embedding_of(
        self, source: ClickSession | str, embedding: Embedding | None, tile_shape: tuple[int, int]
    ) -> tuple[str, Embedding]:
        if isinstance(source, ClickSession):
            if source.model.encoder_identity != self.encoder_identity:
                raise ValueError(
                    f"the session's model ({source.model.encoder_identity}) has another image encoder "
                    f"than the adapter's base ({self.encoder_identity}): open the session with "
                    "adapter.session(tile)"
                )
            return EmbeddingCache.key(source.model, source.tile.image), source.embedding
        if embedding is not None:
            return str(source), embedding
        from histoclick.adaptation.store import cached_embedding

        return str(source), cached_embedding(self.cache_dir, str(source), self.base, tile_shape)

    def _counts(self) -> dict[str, int]:
        replay = sum(p.held_out for p in self._pairs)
        return {"pairs": len(self._pairs), "training_pairs": len(self._pairs) - replay, "replay_pairs": replay}

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="histoclick-adaptation", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        """The worker thread: runs queued refits in the worker process, and waits meanwhile
        (it holds the GIL only to send pairs and publish the new decoder)."""
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                self._pending = False
                self._status = dataclasses.replace(self._status, running=True)  # no gap for wait()
            try:
                self._refit(remote=True)
            except Exception as err:  # a failed refit must never stop annotation: report it
                with self._lock:
                    self._status = dataclasses.replace(self._status, running=False, error=f"{type(err).__name__}: {err}")
                    self._lock.notify_all()

    def _refit(self, remote: bool = False) -> None:
        with self._refit_lock:
            with self._lock:
                start, generation, pairs, index = self._current, self._generation, list(self._pairs), self._status.refits
                self._status = dataclasses.replace(self._status, running=True, error=None)
            try:
                self._train_and_judge(start, generation, pairs, index, remote)
            finally:
                with self._lock:
                    self._status = dataclasses.replace(self._status, running=False)
                    self._lock.notify_all()

    def _train_and_judge(self, start: SamModel, generation: int, pairs: list[Pair], index: int, remote: bool) -> None:
        """Train a candidate from ``start`` on ``pairs`` (in the worker process when ``remote``,
        else in this thread), judge it on the replay pairs, and adopt it if it is not worse."""
        config = self.config
        train = [i for i, p in enumerate(pairs) if not p.held_out][-config.max_pairs :]
        if not train:
            return
        replay = [i for i, p in enumerate(pairs) if p.held_out][-config.replay_size :] or train
        began = time.perf_counter()
        replay_keys = tuple(id(pairs[i]) for i in replay)  # pairs are immutable and kept in self._pairs
        known = self._scores.get((start.identity, replay_keys))
        start_tensors = _tensors(start, self.trainable)
        if remote:
            refit = self._in_process(pairs, start_tensors, train, replay, index, known)
        else:
            refit = _train(self.base, start_tensors, [pairs[i] for i in train], [pairs[i] for i in replay],
                           config, index, known)
        adapted = self._adapted(
            refit.tensors, f"adapted online ({config.scenario}, refit {index + 1}, {len(train)} pairs)"
        )
        self._scores = {(start.identity, replay_keys): refit.before, (adapted.identity, replay_keys): refit.after}
        adopt = refit.after.miou >= refit.before.miou
        with self._lock:
            if generation != self._generation:
                return  # reverted meanwhile: this refit started from a decoder no longer wanted
            if adopt:
                self._current = adapted
            self._status = dataclasses.replace(
                self._status, refits=index + 1, adopted=adopt, last_refit_seconds=time.perf_counter() - began,
                last_steps=refit.steps, replay_before=refit.before, replay_after=refit.after,
                decoder="adapted" if self._current is not self.base else "base",
            )

    def _in_process(
        self, pairs: list[Pair], start_tensors: dict[str, torch.Tensor], train: list[int], replay: list[int],
        index: int, known: ReplayScore | None,
    ) -> Refit:
        """:func:`_train` in the worker process, which keeps the pairs it was sent (only the new
        ones are sent: the embeddings are megabytes each)."""
        if self._process is None:
            self._process = self._new_process()
            self._shipped = 0
        sent = self._shipped
        try:
            refit = self._process.submit(
                _process_refit, sent, pairs[sent:], start_tensors, train, replay, self.config, index, known
            ).result()
        except BrokenProcessPool:
            self._process = None  # the process died (e.g. out of memory): the next refit starts another
            raise
        self._shipped = len(pairs)
        return refit

    def _new_process(self) -> BackgroundWorker:
        threads = self.config.threads or max(1, torch.get_num_threads() - 1)
        return BackgroundWorker(_process_setup, _decoder_only(self.base), threads=threads, nice=self.config.nice)

    def _adapted(self, tensors: dict[str, torch.Tensor], source: str) -> SamModel:
        """A published model: the base with the trained decoder ``tensors``."""
        model = _derived(self.base, copy.deepcopy(self.base.sam.mask_decoder), self.base.identity, source)
        apply_tensors(model, tensors, self.trainable, source)
        return self._published(model, source)

    def _published(self, model: SamModel, source: str) -> SamModel:
        """``model`` with an identity of its own weights (so nothing cached for other weights is
        reused for it) and the base's encoder identity (embeddings are shared)."""
        tensors = dict(model.sam.named_parameters())
        digest = trained_digest(self.origin, {name: tensors[name] for name in self.trainable})
        return SamModel(model.sam, model.name, model.device, source, digest, encoder_identity=self.encoder_identity)


class AdaptiveSession(ClickSession):
    """A :class:`~histoclick.ClickSession` whose clicks use the adapter's current model: each
    click reads the reference once, so it runs wholly on the old or wholly on the new decoder."""

    def __init__(self, adapter: Adapter, image: Tile | np.ndarray, **kwargs: Any) -> None:
        self.adapter = adapter
        super().__init__(adapter.model, image, **kwargs)

    @property  # type: ignore[override]
    def model(self) -> SamModel:
        return self.adapter.model

    @model.setter
    def model(self, value: SamModel) -> None:
        pass  # ClickSession.__init__ assigns it; the adapter decides

    def click(self, x: float, y: float, positive: bool = True) -> ClickResult:
        """:meth:`ClickSession.click`, with a background refit paused meanwhile."""
        with self.adapter.paused_for_click():
            return super().click(x, y, positive)


def _derived(model: SamModel, decoder: torch.nn.Module, identity: str, source: str) -> SamModel:
    """A model sharing ``model``'s image and prompt encoders, with ``decoder`` of its own."""
    sam = Sam(
        image_encoder=model.sam.image_encoder,
        prompt_encoder=model.sam.prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=model.sam.pixel_mean.flatten().tolist(),
        pixel_std=model.sam.pixel_std.flatten().tolist(),
    )
    return SamModel(
        sam, model.name, model.device, source, identity.split(":", 1)[1], encoder_identity=model.encoder_identity
    )


def _freeze(model: SamModel) -> None:
    for param in model.sam.mask_decoder.parameters():
        param.requires_grad_(False)


def _targets(pair: Pair, model: SamModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair's ``(gt, valid)`` in SAM's low-resolution mask frame; ignored pixels are invalid."""
    gt, valid = low_res_target(pair.mask, model.image_size)
    if pair.ignore is not None:
        valid &= ~low_res_target(pair.ignore, model.image_size)[0]
        gt &= valid
    return torch.as_tensor(gt, device=model.device), torch.as_tensor(valid, device=model.device)


@dataclass(frozen=True)
class Refit:
    """What one refit computed: the candidate's trained decoder ``tensors`` (by parameter name),
    its optimizer ``steps``, and the guard rail's scores of the start (``before``) and the
    candidate (``after``) decoders."""

    tensors: dict[str, torch.Tensor]
    steps: int
    before: ReplayScore
    after: ReplayScore


def _train(
    base: SamModel,
    start_tensors: dict[str, torch.Tensor],
    train: list[Pair],
    replay: list[Pair],
    config: AdaptConfig,
    index: int,
    before: ReplayScore | None,
) -> Refit:
    """Refit ``index``: train a copy of ``base``'s decoder holding ``start_tensors`` on ``train``
    (see the module docstring), and score it and the start decoder (unless ``before`` is known)
    on ``replay``. Runs in the adapter's thread or in its worker process; changes nothing given."""
    began = time.perf_counter()
    candidate = _with_tensors(base, start_tensors)
    trainable = apply_scenario(candidate, config.scenario)
    parameters = [p for p in candidate.sam.mask_decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    net = ClickTrainingModel(candidate, frozen_encoder(config.scenario), config.first_clicks)
    targets = [_targets(p, candidate) for p in train]
    rng = np.random.default_rng((config.seed, index))
    steps, step_seconds = 0, 0.0
    for _ in range(config.steps):
        step_start = time.perf_counter()
        # Stop before a step that would end past the budget (as long as the last one took).
        if steps and config.time_budget_s is not None and step_start - began + step_seconds > config.time_budget_s:
            break
        chosen = rng.choice(len(train), size=config.batch_size, replace=len(train) < config.batch_size)
        batch = {
            "inputs": torch.cat([train[i].embedding.features for i in chosen]).clone(),
            "gt": torch.stack([targets[i][0] for i in chosen]),
            "valid": torch.stack([targets[i][1] for i in chosen]),
        }
        extra = int(rng.integers(config.max_extra_clicks + 1))
        training_step(net, optimizer, batch, extra, rng, config)
        steps += 1
        step_seconds = time.perf_counter() - step_start
    _freeze(candidate)
    items = [(p.embedding, p.mask, p.ignore) for p in replay]
    if before is None:
        before = replay_score(_with_tensors(base, start_tensors), items, config.replay_clicks)
    after = replay_score(candidate, items, config.replay_clicks)
    return Refit(_tensors(candidate, trainable), steps, before, after)


def _with_tensors(base: SamModel, tensors: dict[str, torch.Tensor]) -> SamModel:
    """A model sharing ``base``'s encoders, with a copy of its decoder holding ``tensors``."""
    model = _derived(base, copy.deepcopy(base.sam.mask_decoder), base.identity, base.source)
    apply_tensors(model, tensors, list(tensors), base.source)
    return model


def _tensors(model: SamModel, names: list[str]) -> dict[str, torch.Tensor]:
    """Copies of ``model``'s parameters ``names`` (a decoder's trained tensors)."""
    parameters = dict(model.sam.named_parameters())
    return {name: parameters[name].detach().clone() for name in names}


class _NoImageEncoder(torch.nn.Module):
    """Holds the image encoder's place in the worker process's model: refits train on cached
    embeddings, so the encoder's weights (most of SAM's) are never sent there."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the adaptation worker process has no image encoder: it trains on cached embeddings")


def _decoder_only(model: SamModel) -> SamModel:
    """``model`` without its image encoder's weights (what the worker process needs)."""
    sam = Sam(
        image_encoder=_NoImageEncoder(model.image_size),
        prompt_encoder=model.sam.prompt_encoder,
        mask_decoder=model.sam.mask_decoder,
        pixel_mean=model.sam.pixel_mean.flatten().tolist(),
        pixel_std=model.sam.pixel_std.flatten().tolist(),
    )
    return SamModel(sam, model.name, model.device, model.source, model.identity.split(":", 1)[1],
                    encoder_identity=model.encoder_identity)


def _process_setup(base: SamModel) -> dict[str, Any]:
    """The worker process's state: the (decoder-only) base and the pairs sent so far."""
    return {"base": base, "pairs": []}


def _process_refit(
    state: dict[str, Any], first: int, new_pairs: list[Pair], start_tensors: dict[str, torch.Tensor],
    train: list[int], replay: list[int], config: AdaptConfig, index: int, before: ReplayScore | None,
) -> Refit:
    """A refit in the worker process: the adapter's pairs are the kept ones up to ``first``, then
    ``new_pairs``; ``train`` and ``replay`` index them."""
    pairs = state["pairs"]
    del pairs[first:]
    pairs.extend(new_pairs)
    return _train(state["base"], start_tensors, [pairs[i] for i in train], [pairs[i] for i in replay],
                  config, index, before)
