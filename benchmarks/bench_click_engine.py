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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=1024, help="tile side in pixels")
    parser.add_argument("--clicks", type=int, default=20, help="clicks per simulated sequence")
    parser.add_argument("--repeats", type=int, default=3, help="sequences timed")
    args = parser.parse_args()
    repeats = args.repeats

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
    emb = session.embedding
    coords = torch.as_tensor(
        model.transform.apply_coords(clicks.astype(np.float32), emb.original_size),
        dtype=torch.float32, device=device,
    )
    labels = torch.as_tensor([int(bool(i % 3)) for i in range(len(clicks))], device=device)

    @torch.inference_mode()
    def bare_decoder(k: int, previous: torch.Tensor | None) -> torch.Tensor:
        """Prompt encoder + mask decoder on the first k clicks and the previous low-res logits."""
        sparse, dense = model.sam.prompt_encoder(
            points=(coords[None, :k], labels[None, :k]), boxes=None, masks=previous
        )
        low, _ = model.sam.mask_decoder(
            image_embeddings=emb.features, image_pe=model.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
        )
        low.cpu()
        return low

    # Per-click medians over repeated sequences of 2..N clicks (the first click's multimask
    # decoding is left out of both), interleaving the two so load spikes hit both alike.
    session_times, bare_times = [], []
    for _ in range(repeats):
        session.reset()
        session.click(*clicks[0])
        previous = bare_decoder(1, None)
        for k in range(2, len(clicks) + 1):
            x, y = clicks[k - 1]
            start = time.perf_counter()
            session.click(x, y, positive=bool((k - 1) % 3))
            session_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            previous = bare_decoder(k, previous)
            bare_times.append(time.perf_counter() - start)
    click_session = statistics.median(session_times)
    click_bare = statistics.median(bare_times)
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
        "click_seconds_session": round(click_session, 4),
        "click_seconds_bare_decoder": round(click_bare, 4),
        "session_over_bare": round(click_session / click_bare, 3),
        "targets": {"session_over_bare_max": 1.10, "cached_session_start_seconds_max": 0.2},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
