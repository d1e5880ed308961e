"""Online adaptation costs: a refit after an accept with up to 50 pairs, and a click during a refit.

Prints one JSON object. SAM's mask decoder (and prompt encoder) is the same size for vit_b,
vit_l and vit_h, and vit_tiny builds the very same decoder, so random vit_tiny weights and random
embeddings time a vit_b-sized refit without building or loading an encoder:

    python benchmarks/bench_adaptation.py --device cpu --pairs 50
    python benchmarks/bench_adaptation.py --device cuda

- ``refit``: :meth:`Adapter.refit_now` with the default :class:`AdaptConfig` (training until its
  time budget or its steps, then the guard rail on the replay pairs), after accepting ``--pairs``
  masks of ``--tile`` pixels; the second refit is reported too (the current decoder's replay
  score is then known).
- ``click``: one click of a growing 5-click sequence (prompt encoder + decoder + upsampling, as
  :class:`~histoclick.ClickSession` runs it, ``--pause`` seconds apart as a user clicks), the
  median over clicks while idle and while the background worker refits (default worker
  threads: one less than the process has; nice 10 on Linux).
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
    parser.add_argument("--idle-clicks", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between two clicks")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder (default: a temporary one)")
    args = parser.parse_args()

    import tempfile

    model = load_model("vit_tiny", device=args.device)
    rng = np.random.default_rng(0)
    config = AdaptConfig()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="bench-adaptation-")
    adapter = Adapter(model, config, cache_dir=cache_dir, background=False)
    for i in range(args.pairs):
        embedding, mask = synthetic_pair(rng, args.tile, model.device)
        adapter.accept(f"pair-{i}", mask, embedding=embedding)

    refits = []
    for _ in range(2):
        start = time.perf_counter()
        status = adapter.refit_now()
        refits.append({"seconds": time.perf_counter() - start, "steps": status.last_steps, "adopted": status.adopted})

    image = np.zeros((args.tile, args.tile, 3), np.uint8)
    embedding, _ = synthetic_pair(rng, args.tile, model.device)
    EmbeddingCache(cache_dir).store(EmbeddingCache.key(model, image), embedding)
    session = adapter.session(image)
    click_times(session, 5, args.pause)  # warm-up
    idle = click_times(session, args.idle_clicks, args.pause)
    adapter.request_refit()
    busy = click_times(session, 10_000, args.pause, stop=lambda: not adapter.status.running)
    adapter.wait()
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
        "tile_pixels": args.tile,
        "config": config.to_dict(),
        "refit_seconds": [r["seconds"] for r in refits],
        "refit_steps": [r["steps"] for r in refits],
        "refit_adopted": [r["adopted"] for r in refits],
        "last_background_refit_seconds": adapter.status.last_refit_seconds,
        "click_seconds_idle_median": idle_median,
        "click_seconds_during_refit_median": busy_median,
        "clicks_during_refit": len(busy),
        "click_slowdown": busy_median / idle_median - 1,
        "targets": {"refit_seconds_cpu": 10.0, "refit_seconds_gpu": 1.0, "click_slowdown": 0.2},
    }, indent=2))


if __name__ == "__main__":
    main()
