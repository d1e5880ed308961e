"""Evaluation loop overhead against model time, printed as JSON.

One 1024x1024 synthetic tile, SAM vit_b with random weights (timing does not depend on the
weights; no checkpoint needed), the full click protocol (default 20 clicks, no early stop).
Overhead = the loop's wall time per click minus the model's own seconds per click: click
simulation, IoU, thresholding, the sigmoid and ClickSession bookkeeping. It is reported against
the model time of the sample (image embedding + every decoder call) and against the decoder
calls alone.

    python benchmarks/bench_evaluation_overhead.py [--device cpu] [--clicks 20] [--variant vit_b]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from histoclick.datasets.synthetic import make_tile
from histoclick.evaluation import Sample, SamMethod, iou, next_click, run_sample
from histoclick.models import VARIANTS, SamModel, build_sam, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (auto, cpu, cuda, mps)")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--variant", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument("--size", type=int, default=1024, help="tile side in pixels")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    sam = build_sam(VARIANTS[args.variant])
    model = SamModel(sam, args.variant, device, "random weights (seed 0)", "random-seed-0")
    image, gt = make_tile(0, args.size)
    method = SamMethod(model)

    run = run_sample(method, Sample("bench", image, gt), max_clicks=args.clicks)
    n = len(run.clicks)
    decoder = float(run.model_seconds.sum())
    loop = float(run.click_seconds.sum())
    overhead = loop - decoder
    model_time = run.set_image_seconds + decoder

    # The protocol's own pieces, timed on the final state of the loop.
    pred = run.probs > 0.49
    not_clicked = np.ones(gt.shape, bool)
    for click in run.clicks:
        not_clicked[click.y, click.x] = False
    next_click_ms = _milliseconds(lambda: next_click(gt, pred, not_clicked))
    iou_ms = _milliseconds(lambda: iou(gt, pred))

    print(json.dumps({
        "benchmark": "evaluation_overhead",
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
        ),
        "torch_threads": torch.get_num_threads(),
        "variant": args.variant,
        "tile": args.size,
        "clicks": n,
        "embedding_seconds": round(run.set_image_seconds, 4),
        "decoder_seconds_per_click": round(decoder / n, 5),
        "loop_seconds_per_click": round(loop / n, 5),
        "overhead_seconds_per_click": round(overhead / n, 5),
        "next_click_ms_final_state": round(next_click_ms, 3),
        "iou_ms": round(iou_ms, 3),
        "overhead_vs_model_time": round(overhead / model_time, 4),
        "overhead_vs_decoder_time": round(overhead / decoder, 4),
        "target": "overhead_vs_model_time <= 0.05",
        "final_iou": float(run.ious[-1]),
    }, indent=2))


def _milliseconds(function, repeats: int = 10) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1000


if __name__ == "__main__":
    main()
