"""Low-priority background work: CPU-heavy jobs in a worker process that yields the CPU to clicks.

API (one concept, :class:`BackgroundWorker`)::

    worker = BackgroundWorker(setup, *setup_args, threads=1)  # starts one worker process now
    future = worker.submit(job, *args)  # runs job(context, *args) there; context = setup(*setup_args)
    result = future.result()            # a concurrent.futures.Future: result(), done(), add_done_callback()
    with worker.paused(): click()       # the worker stopped (SIGSTOP) while a click runs
    worker.close()                      # (also: with BackgroundWorker(...) as worker: ...)

- ``setup`` and ``job`` must be module-level functions (the process is *spawned*, so they are
  imported there by name). ``setup`` runs once when the process starts; what it returns (e.g. a
  model, a dict of training pairs) stays in the process and is passed to every job, which may
  change it (state kept between jobs). Jobs run one at a time, in submission order.
- Arguments and results are copied (pickled), never shared: a tensor a click is reading is never
  touched. Send what a job needs once and keep it in the context (e.g. embeddings), not per job.
- The process runs at a lower CPU priority (niceness raised by ``nice``, default ``NICE``: 19 from
  a normal process, the lowest; Linux and macOS) with ``threads`` torch threads, both set before
  torch is imported there, so where it shares the cores with the kernel, the kernel's work comes
  first. The price: other busy programs can starve it (measured: a nice-19 worker got 0.6% of a
  core on a 2-core machine with load 16), so work the user waits for may want ``nice=10``. (As
  the increment is relative, ``nice -n -19 python script.py`` keeps the worker at the priority
  of the machine's other work, and the script above both: how to benchmark on a busy machine.)
- The process is spawned, so a *script* that creates a worker must do so under
  ``if __name__ == "__main__":`` (the rule of :mod:`multiprocessing`; notebooks need nothing).
- A job's exception is raised by its ``future.result()``; the worker goes on. If ``setup`` fails
  (its traceback is printed) or the process dies, every pending and later future raises
  :class:`concurrent.futures.process.BrokenProcessPool`: create a new worker.

Why a process and not a thread: a refit of the adaptation engine on a thread of the kernel (niced
to 10, one torch thread) slowed a click on 2 cores from 0.124 s to 0.221 s (+79%,
``benchmarks/bench_adaptation.py``). torch's thread settings are per thread there (the worker's
``set_num_threads(1)`` left the kernel's at 2), but the refit's Python code (autograd, optimizer,
click sampling) holds the GIL, which the click needs between each of its many small torch calls,
and a thread's nice value does not lower that. A process has its own GIL, and its nice value
lets the clicks' threads have the cores. What a process costs: its start (importing torch, a few
seconds, done in the background) and copying what the jobs need (once, when kept in the context).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

NICE = 19  # niceness increment: from a normal process, the lowest priority (CPU time nothing else wants)

_context: Any = None  # in the worker process: what setup returned


class BackgroundWorker:
    """One low-priority worker process running jobs in order (see the module docstring).

    Args:
        setup: module-level function run once in the worker; its return value (the context) is
            passed to every job.
        *setup_args: its arguments (pickled, copied).
        threads: torch intra-op threads of the worker (>= 1).
        nice: how much the worker's CPU niceness is raised over this process's (Linux/macOS;
            ignored elsewhere; capped at 19 by the system).
    """

    def __init__(self, setup: Callable[..., Any] | None = None, *setup_args: Any, threads: int = 1, nice: int = NICE) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),  # fork is unsafe with torch's threads
            initializer=_start,
            initargs=(nice, threads, pickle.dumps((setup, setup_args), protocol=5)),
        )
        # Starts the process now (it imports and sets up while the caller goes on); its pid is
        # what paused() signals.
        self._pid: Future = self._pool.submit(os.getpid)
        self._closed = False

    def submit(self, job: Callable[..., Any], *args: Any) -> Future:
        """Run ``job(context, *args)`` in the worker; returns its future (result copied back)."""
        inner = self._pool.submit(_run, pickle.dumps((job, args), protocol=5))
        outer: Future = Future()
        outer.set_running_or_notify_cancel()

        def done(finished: Future) -> None:
            try:
                outer.set_result(pickle.loads(finished.result()))
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
                outer.set_exception(err)

        inner.add_done_callback(done)
        return outer

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the worker process (SIGSTOP) while the block runs and let it go on after
        (SIGCONT), for short work the user waits for, such as a click: on 2 cores even a nice-19
        worker slowed a click by 34-41% (``benchmarks/bench_adaptation.py``; the click's two
        torch threads wait for each other at every step, and one of them shares its core).
        Nothing happens before the process has started, after :meth:`close`, or without POSIX
        signals (Windows)."""
        stop, go = getattr(signal, "SIGSTOP", None), getattr(signal, "SIGCONT", None)
        pid = None
        if not self._closed and stop is not None and self._pid.done() and not self._pid.cancelled():
            pid = None if self._pid.exception() is not None else self._pid.result()
        if pid is None:
            yield
            return
        try:
            os.kill(pid, stop)
        except ProcessLookupError:  # the process died: nothing to pause
            pid = None
        try:
            yield
        finally:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, go)

    def close(self, wait: bool = True) -> None:
        """Stop the worker process (after the job in progress when ``wait``; pending jobs are
        cancelled)."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> BackgroundWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start(nice: int, threads: int, payload: bytes) -> None:
    """Initializer of the worker process: lower its priority, then import torch and run setup."""
    global _context
    with contextlib.suppress(AttributeError, OSError):  # this (main) thread: torch's threads inherit it
        os.nice(nice)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    setup, args = pickle.loads(payload)
    _context = setup(*args) if setup is not None else None


def _run(payload: bytes) -> bytes:
    job, args = pickle.loads(payload)
    return pickle.dumps(job(_context, *args), protocol=5)
