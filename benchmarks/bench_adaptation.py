"""Online adaptation costs: a refit after an accept with up to 50 pairs, and a click during a refit.

Prints one JSON object. SAM's mask decoder (and prompt encoder) is the same size for vit_b,
vit_l and vit_h, and vit_tiny builds the very same decoder, so random vit_tiny weights and random
embeddings time a vit_b-sized refit without building or loading an encoder:

    python benchmarks/bench_adaptation.py --device cpu --pairs 50
    python benchmarks/bench_adaptation.py --device cuda

- ``refit``: :meth:`Adapter.refit_now` (in this thread) with the default :class:`AdaptConfig`
  (training until its time budget or its steps, then the guard rail on the replay pairs), after
  accepting ``--pairs`` masks of ``--tile`` pixels; and the background refits of the click
  measurement (worker process: pairs sent, trained, scored, weights sent back and published).
- ``click``: one click of a growing 5-click sequence (prompt encoder + decoder + upsampling, as
  :class:`~histoclick.ClickSession` runs it, ``--pause`` seconds apart as a user clicks). In each
  of ``--rounds`` rounds, ``--idle-clicks`` clicks while nothing runs, then clicks while a
  background refit runs; ``click_slowdown_ratio`` is the median click during refits over the
  median idle click (same run, interleaved, so a change of the machine's load hits both).
  On a machine shared with other work, run it with a higher priority than that work (e.g.
  ``nice -n -10``, as root) so that the ratio measures the refit, not the neighbours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from histoclick import ClickSession
from histoclick.adaptation import AdaptConfig, Adapter
from histoclick.embeddings import EmbeddingCache
from histoclick.models import load_model
from histoclick.models.sam_model import Embedding


def synthetic_pair(rng: np.random.Generator, tile: int, device: torch.device) -> tuple[Embedding, np.ndarray]:
    yy, xx = np.mgrid[:tile, :tile]
    cy, cx = rng.uniform(0.3, 0.7, 2) * tile
    ry, rx = rng.uniform(0.1, 0.3, 2) * tile
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    features = torch.as_tensor(rng.normal(size=(1, 256, 64, 64)), dtype=torch.float32, device=device)
    return Embedding(features, (1024, 1024), (tile, tile)), mask


def click_times(session: ClickSession, clicks: int, pause: float, stop=lambda: False) -> list[float]:
    """Wall seconds of each click (5 per sequence, then reset, ``pause`` seconds between clicks:
    a user's pace) until ``clicks`` or ``stop()``."""
    height, width = session.tile.image.shape[:2]
    rng = np.random.default_rng(0)
    seconds = []
    while len(seconds) < clicks and not stop():
        if len(session.results) == 5:
            session.reset()
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        start = time.perf_counter()
        session.click(x, y, positive=len(session.results) % 2 == 0)
        if session.model.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        time.sleep(pause)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--tile", type=int, default=1024, help="tile side in pixels of the masks")
    parser.add_argument("--idle-clicks", type=int, default=10, help="idle clicks per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of idle clicks, then a background refit")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between two clicks")
    parser.add_argument("--nice", type=int, default=None, help="the worker's nice (default: AdaptConfig's)")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder (default: a temporary one)")
    args = parser.parse_args()

    import tempfile

    model = load_model("vit_tiny", device=args.device)
    rng = np.random.default_rng(0)
    config = AdaptConfig() if args.nice is None else AdaptConfig(nice=args.nice)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="bench-adaptation-")
    adapter = Adapter(model, config, cache_dir=cache_dir, background=True)  # starts the worker process
    for i in range(args.pairs):
        embedding, mask = synthetic_pair(rng, args.tile, model.device)
        adapter.accept(f"pair-{i}", mask, embedding=embedding)  # queues a refit each: they coalesce
    adapter.wait()  # also: the worker process has started and holds the pairs

    start = time.perf_counter()
    status = adapter.refit_now()
    foreground = {"seconds": time.perf_counter() - start, "steps": status.last_steps, "adopted": status.adopted}

    image = np.zeros((args.tile, args.tile, 3), np.uint8)
    embedding, _ = synthetic_pair(rng, args.tile, model.device)
    EmbeddingCache(cache_dir).store(EmbeddingCache.key(model, image), embedding)
    session = adapter.session(image)
    click_times(session, 5, args.pause)  # warm-up
    idle, busy, background = [], [], []
    for _ in range(args.rounds):
        idle += click_times(session, args.idle_clicks, args.pause)
        adapter.request_refit()
        busy += click_times(session, 10_000, args.pause, stop=lambda: not adapter.status.running)
        adapter.wait()
        background.append(adapter.status)
    adapter.close()
    idle_median, busy_median = statistics.median(idle), statistics.median(busy) if busy else float("nan")
    print(json.dumps({
        "benchmark": "online adaptation",
        "device": str(model.device),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "worker_threads": config.threads or max(1, torch.get_num_threads() - 1),
        "decoder_parameters": sum(p.numel() for p in model.sam.mask_decoder.parameters()),
        "pairs": args.pairs,
        "pause_between_clicks_s": args.pause,
        "load_average_1min": os.getloadavg()[0],
        "nice": os.nice(0),
        "tile_pixels": args.tile,
        "config": config.to_dict(),
        "refit_now_seconds": foreground["seconds"],
        "refit_now_steps": foreground["steps"],
        "background_refit_seconds": [s.last_refit_seconds for s in background],
        "background_refit_steps": [s.last_steps for s in background],
        "background_refit_adopted": [s.adopted for s in background],
        "click_seconds_idle_median": idle_median,
        "click_seconds_during_refit_median": busy_median,
        "clicks_idle": len(idle),
        "clicks_during_refit": len(busy),
        "click_slowdown_ratio": busy_median / idle_median,
        "targets": {"refit_seconds_cpu": 10.0, "refit_seconds_gpu": 1.0, "click_slowdown_ratio": 1.2},
    }, indent=2))


if __name__ == "__main__":
    main()
