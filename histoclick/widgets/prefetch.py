"""Background image embeddings for the click widget: the viewport shown first, then the ones the
user is likely to go to next, so a pan or zoom rarely waits for SAM's image encoder.

Worker threads compute embeddings into the embedding cache :class:`~histoclick.ClickSession`
reads (the folder given as ``cache_dir``, else the process's shared in-memory cache), under the
same key (encoder identity and pixels), so a session opened later on a prefetched viewport takes
its embedding from the cache: the encoder never runs in the kernel's main thread.

Order of work:

1. The viewport shown (:meth:`Prefetcher.session_for`), unless its embedding is cached: then the
   session is opened at once, in the caller's thread. Otherwise it is computed on its own thread
   at normal priority, and every other embedding in progress is cancelled (unless it is this very
   viewport, being prefetched: that one carries on).
2. The nearby viewports (:meth:`Prefetcher.schedule`, :func:`nearby`), nearest first: the four
   neighbours a pan reaches (right, down, left, up), then one zoom level in and one out about the
   same centre. Each navigation replaces the list; a job no longer on it is cancelled. They run
   on a second thread at the lowest CPU priority (``nice`` :data:`histoclick.background.NICE`,
   Linux: per thread, inherited by torch's threads it starts), only while the shown viewport's
   embedding is not being computed, so clicks get the cores first.

Threads rather than :class:`~histoclick.background.BackgroundWorker`'s process: a process would
hold a second copy of the image encoder (vit_h: 2.5 GB; on a GPU a second CUDA context) and
could not stop a stale embedding half-way; the encoder's work is large matrix products that
release the GIL, unlike an adaptation refit's many small steps (``benchmarks/
bench_widget_prefetch.py`` measures a click while a nearby embedding runs).

Cancelling takes effect between two transformer blocks of the encoder (a forward pre-hook on
each block raises in the worker threads only), so a stale embedding costs at most one block.
The same hook reports progress (blocks done, seconds) for the status line.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from histoclick.background import NICE
from histoclick.embeddings import EmbeddingCache, shared_cache
from histoclick.models import SamModel
from histoclick.session import ClickSession, MultimaskPolicy
from histoclick.slides import Slide
from histoclick.widgets.navigation import Navigator
from histoclick.widgets.viewport import Viewport

# Pan directions in the order they are prefetched: reading order first.
PREFETCH_SIDES = ("right", "down", "left", "up")


def nearby(navigator: Navigator, zoom_levels: Sequence[float]) -> list[Viewport]:
    """The viewports the user can reach in one step from ``navigator.viewport``, nearest first:
    the neighbours to the right, below, left and above (those on the slide), then one level of
    ``zoom_levels`` (downsamples) finer and one coarser, about the same centre."""
    viewport = navigator.viewport
    found = [n for side in PREFETCH_SIDES if (n := viewport.neighbour(side)) is not None]
    levels = sorted(set(zoom_levels))
    if viewport.downsample in levels:
        index = levels.index(viewport.downsample)
        found += [navigator.zoomed(levels[i]) for i in (index - 1, index + 1) if 0 <= i < len(levels)]
    return list(dict.fromkeys(found))  # without repeats, in order


class _Cancelled(Exception):
    """Raised in the worker thread by the encoder's block hook: the job is no longer wanted."""


@dataclass(eq=False)
class _Job:
    """One embedding to compute: of the shown image (``current``) or of a nearby ``viewport``."""

    viewport: Viewport | None = None
    image: np.ndarray | None = None
    key: str | None = None
    current: bool = False
    generation: int = 0
    cancelled: bool = False
    started: float | None = None
    blocks_done: int = 0
    future: Future[ClickSession] = field(default_factory=Future)


@dataclass(frozen=True)
class PrefetchStatus:
    """What the workers are doing, for the status line.

    ``computing``: the shown viewport's embedding is being computed (clicks on the image are
    refused until it is ready, :meth:`~histoclick.widgets.ClickWidget.click` waits);
    ``blocks_done`` of ``blocks`` encoder blocks, ``seconds`` since it started. ``prefetched`` of
    ``nearby`` nearby viewports have their embedding cached. ``error``: the last failure (cleared
    when another viewport is shown).
    """

    computing: bool = False
    blocks_done: int = 0
    blocks: int = 0
    seconds: float = 0.0
    prefetched: int = 0
    nearby: int = 0
    error: str | None = None

    def line(self) -> str:
        """``"computing this viewport's embedding… 5/12 blocks, 8 s (…)"``, ``"nearby viewports
        ready 3/6"``, the error, or ``""`` with nothing to say."""
        if self.error:
            return self.error
        if self.computing:
            return (
                f"computing this viewport's embedding… {self.blocks_done}/{self.blocks} blocks, "
                f"{self.seconds:.0f} s (click once it is ready)"
            )
        return f"nearby viewports ready {self.prefetched}/{self.nearby}" if self.nearby else ""


class Prefetcher:
    """Computes SAM image embeddings of ``slide``'s viewports on two background threads: one for
    the viewport shown (normal priority: the user waits for it), one for the nearby viewports
    (lowest CPU priority on Linux, and idle while the shown viewport's embedding is computed).

    Args:
        model: the SAM model whose image encoder runs (a fine-tuned or adapted decoder sharing
            its encoder shares the embeddings).
        slide: where nearby viewports are read from (in the worker thread; close the prefetcher
            before the slide).
        cache_dir: the embedding cache folder, as for :class:`~histoclick.ClickSession`.
        multimask: the sessions' multimask policy.
        on_change: called (in a worker thread) whenever :attr:`status` changes: each encoder block
            of the shown viewport's embedding, each finished or failed job.
    """

    def __init__(
        self,
        model: SamModel,
        slide: Slide,
        *,
        cache_dir: str | os.PathLike | None = None,
        multimask: MultimaskPolicy = "first",
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.slide = slide
        self.cache_dir = cache_dir
        self.multimask = multimask
        self.on_change = on_change
        self._cache = shared_cache(cache_dir)
        self._keys: dict[Viewport, str] = {}  # cache keys of viewports read before
        self._cond = threading.Condition()  # guards the fields below
        self._current: _Job | None = None  # the shown viewport's job, waiting for its thread
        self._queue: list[_Job] = []  # nearby viewports, nearest first
        self._running: dict[threading.Thread, _Job] = {}
        self._closed = False
        self._nearby = 0
        self._prefetched = 0
        self._generation = 0  # of the nearby list
        self._error: str | None = None
        encoder = model.sam.image_encoder
        blocks = list(getattr(encoder, "blocks", ())) or [encoder]
        self._blocks = len(blocks)
        self._hooks = [
            block.register_forward_pre_hook(partial(self._block_starts, index))
            for index, block in enumerate(blocks)
        ]
        self._shown_thread = threading.Thread(
            target=self._work, args=(True,), name="histoclick-embedding", daemon=True
        )
        self._nearby_thread = threading.Thread(
            target=self._work, args=(False,), name="histoclick-prefetch", daemon=True
        )
        self._shown_thread.start()
        self._nearby_thread.start()
        _OPEN.add(self)

    # ----- called by the widget (main thread) ---------------------------------------------------

    def session_for(self, image: np.ndarray) -> Future[ClickSession]:
        """A session on ``image`` (the viewport shown, ``(H, W, 3)`` uint8 RGB): done at once when
        its embedding is cached, else computed next, before any nearby viewport (a nearby job
        computing it already carries on). The viewport shown before stops being computed."""
        key = EmbeddingCache.key(self.model, image)
        cached = key in self._cache
        with self._cond:
            self._check_open()
            if self._current is not None:
                self._current.future.cancel()
            self._current = job = None
            for running in self._running.values():
                if not cached and running.key == key and running.image is not None:
                    running.current, running.cancelled = True, False
                    job = running
                elif running.current or not cached:
                    running.cancelled = True  # no longer shown, or the shown one needs the CPU
            if not cached and job is None:
                job = self._current = _Job(image=image, key=key, current=True)
            self._error = None
            self._cond.notify_all()
        self._changed()
        if job is not None:
            return job.future
        done: Future[ClickSession] = Future()
        done.set_result(self._session(image))
        return done

    def schedule(self, viewports: Sequence[Viewport]) -> None:
        """Prefetch ``viewports`` (nearest first) once the shown one is ready, replacing the
        earlier list; a nearby job not in the new list is cancelled."""
        with self._cond:
            self._check_open()
            self._generation += 1
            self._queue = [_Job(viewport=v, generation=self._generation) for v in viewports]
            self._nearby, self._prefetched = len(viewports), 0
            for running in self._running.values():
                if not running.current and running.viewport not in viewports:
                    running.cancelled = True
            self._cond.notify_all()

    @property
    def status(self) -> PrefetchStatus:
        """What the workers are doing now."""
        with self._cond:
            shown = [j for j in self._running.values() if j.current] or [self._current]
            job = shown[0]
            return PrefetchStatus(
                computing=job is not None,
                blocks_done=job.blocks_done if job else 0,
                blocks=self._blocks,
                seconds=time.perf_counter() - job.started if job and job.started else 0.0,
                prefetched=self._prefetched,
                nearby=self._nearby,
                error=self._error,
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the workers have nothing left to do (the shown viewport's and every nearby
        embedding cached, failed or cancelled), at most ``timeout`` seconds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or not (self._current or self._queue or self._running),
                timeout,
            )

    def close(self) -> None:
        """Stop the workers (a running embedding stops at its next encoder block) and wait for
        them, so the slide can be closed. Closing again does nothing."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            for job in (*self._running.values(), self._current, *self._queue):
                if job is not None:
                    job.cancelled = True
                    job.future.cancel()
            self._cond.notify_all()
        for thread in (self._shown_thread, self._nearby_thread):
            if thread is not threading.current_thread():
                thread.join()
        for hook in self._hooks:
            hook.remove()

    # ----- the worker threads -------------------------------------------------------------------

    def _work(self, shown: bool) -> None:
        """Loop of the thread for the shown viewport (``shown``) or for the nearby ones."""
        if not shown:
            with contextlib.suppress(AttributeError, OSError):  # Linux: this thread's own nice
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        me = threading.current_thread()
        while True:
            with self._cond:
                if shown:
                    self._cond.wait_for(lambda: self._closed or self._current)
                else:  # the shown viewport first: wait while it is computed
                    self._cond.wait_for(
                        lambda: self._closed
                        or (self._queue and not self._current and not self._running)
                    )
                if self._closed:
                    return
                if shown:
                    job, self._current = self._current, None
                else:
                    job = self._queue.pop(0)
                self._running[me] = job
            session = error = None
            stopped = False
            try:
                session = self._run(job)
            except _Cancelled:
                stopped = True
            except Exception as failure:  # noqa: BLE001 - reported in the status line, never lost
                error = failure
            with self._cond:
                del self._running[me]
                wanted = not (job.cancelled or self._closed)
                retry = stopped and wanted and job.current and self._current is None
                if retry:  # cancelled, then shown again before it stopped: compute it after all
                    self._current = job
                if error is not None and (job.current or self._error is None):
                    what = "this viewport's embedding" if job.current else f"prefetching {job.viewport}"
                    self._error = f"{what} failed: {type(error).__name__}: {error}"
                done = wanted and not stopped and error is None
                if done and not job.current and job.generation == self._generation:
                    self._prefetched += 1
                self._cond.notify_all()
            self._changed()  # the status line first, then whoever waits for the session
            if error is not None:
                _settle(job.future, error=error)
            elif done:
                _settle(job.future, session)
            elif not retry:
                job.future.cancel()

    def _run(self, job: _Job) -> ClickSession | None:
        """The job's session (None for a nearby viewport already cached: nothing to do)."""
        if job.image is None:  # a nearby viewport: read it here, unless known to be cached
            key = self._keys.get(job.viewport)
            if key is not None and key in self._cache:
                return None
            viewport = job.viewport
            tile = self.slide.read_region(
                *viewport.origin, viewport.size, viewport.size, downsample=viewport.downsample
            )
            self._keys[viewport] = EmbeddingCache.key(self.model, tile.image)
            with self._cond:
                job.image, job.key = tile.image, self._keys[viewport]
        job.started = time.perf_counter()
        return self._session(job.image)

    def _session(self, image: np.ndarray) -> ClickSession:
        return ClickSession(self.model, image, cache_dir=self.cache_dir, multimask=self.multimask)

    def _block_starts(self, index: int, module: object, inputs: object) -> None:
        """Forward pre-hook of encoder block ``index``: cancel or report, in the workers only."""
        job = self._running.get(threading.current_thread())
        if job is None:  # another thread runs the encoder: not ours to watch
            return
        if job.cancelled or self._closed:
            raise _Cancelled
        job.blocks_done = index
        if job.current:
            self._changed()

    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception as error:  # noqa: BLE001 - a display failure must not stop an embedding
            warnings.warn(f"prefetch status callback failed: {error!r}", RuntimeWarning, stacklevel=2)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the prefetcher is closed; open a new widget")


# Prefetchers not closed by their widget: stopped before the interpreter exits, because a thread
# still inside the encoder while the process tears down aborts it ("terminate called without an
# active exception", exit status 134).
_OPEN: weakref.WeakSet[Prefetcher] = weakref.WeakSet()


@atexit.register
def _close_open_prefetchers() -> None:
    for prefetcher in list(_OPEN):
        prefetcher.close()


def _settle(future: Future, result: object = None, error: BaseException | None = None) -> None:
    """Give ``future`` its result or error, unless it was cancelled meanwhile."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass  # cancelled: nobody waits for it
