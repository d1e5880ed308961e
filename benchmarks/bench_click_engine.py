"""Click-engine speed: image embedding, per-click latency against the bare SAM call, cached start.

Prints one JSON object. Random weights are fine for timing, so no checkpoint is needed:

    python benchmarks/bench_click_engine.py --variant vit_b --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from histoclick import ClickSession
from histoclick.datasets.synthetic import make_tile
from histoclick.models import VARIANTS, SamModel, build_sam, resolve_device


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=1024, help="tile side in pixels")
    parser.add_argument("--clicks", type=int, default=20, help="clicks timed per measurement")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = SamModel(build_sam(VARIANTS[args.variant]), args.variant, device, "random weights", "bench")
    image = make_tile(seed=0, size=args.tile)[0]
    rng = np.random.default_rng(0)
    clicks = rng.integers(0, args.tile, size=(args.clicks, 2))

    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        session = ClickSession(model, image, cache_dir=cache_dir)
        embed_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ClickSession(model, image, cache_dir=cache_dir)
        cached_start_seconds = time.perf_counter() - start

    session.click(*clicks[0])  # warm-up

    def session_clicks():
        session.reset()
        for i, (x, y) in enumerate(clicks):
            session.click(x, y, positive=bool(i % 3))

    # The bare call: prompt encoder + mask decoder on the same prompts (clicks so far and the
    # previous low-resolution logits), single-mask output, no upsampling to the tile.
    emb = session.embedding
    coords = torch.as_tensor(model.transform.apply_coords(clicks.astype(np.float32), emb.original_size), device=device)
    labels = torch.as_tensor([int(bool(i % 3)) for i in range(len(clicks))], device=device)

    @torch.inference_mode()
    def bare_clicks():
        low = None
        for k in range(1, len(clicks) + 1):
            sparse, dense = model.sam.prompt_encoder(points=(coords[None, :k], labels[None, :k]), boxes=None, masks=low)
            low, _ = model.sam.mask_decoder(
                image_embeddings=emb.features, image_pe=model.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
            )
            low.cpu()

    per_click = [t / len(clicks) for t in timed(session_clicks, 3)]
    bare = [t / len(clicks) for t in timed(bare_clicks, 3)]
    model_seconds = statistics.median(r.model_seconds for r in session.results)
    report = {
        "benchmark": "click_engine",
        "variant": args.variant,
        "weights": "random",
        "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "tile": args.tile,
        "embedding_seconds": round(embed_seconds, 4),
        "cached_session_start_seconds": round(cached_start_seconds, 4),
        "click_seconds_session": round(statistics.median(per_click), 4),
        "click_seconds_bare_decoder": round(statistics.median(bare), 4),
        "click_model_seconds_reported": round(model_seconds, 4),
        "session_over_bare": round(statistics.median(per_click) / statistics.median(bare), 3),
        "targets": {"session_over_bare_max": 1.10, "cached_session_start_seconds_max": 0.2},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
