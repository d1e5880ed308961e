"""Seconds per click three ways, with two SAM methods sharing one image encoder, and the cost of
the exact click rule; printed as JSON.

Two methods on the same model (random weights: timing does not depend on them) run on the same
synthetic tiles through ``histoclick.evaluation.evaluate``: the second reuses the first one's
cached embeddings. ``SPC (cold)`` and ``SPC (RITM; the study's)`` charge both methods their
embedding; ``naive wall`` (the wall time the runner measured, embeddings not charged to the
method that reused them) shows the effect the cold figures remove. ``next_click_ms`` is the exact
click rule on one error map per tile size.

    python benchmarks/bench_spc.py [--device cpu] [--variant vit_tiny] [--tiles 3] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np

from histoclick.datasets.synthetic import write_sample
from histoclick.datasets.folders import FolderDataset
from histoclick.evaluation import SamMethod, evaluate, load_records, next_click


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (auto, cpu, cuda, mps)")
    parser.add_argument("--variant", default="vit_tiny", help="vit_tiny, vit_b, ... (random weights)")
    parser.add_argument("--tiles", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="tile side in pixels")
    parser.add_argument("--clicks", type=int, default=5)
    args = parser.parse_args()

    model = _random(args.variant, args.device)
    methods = [SamMethod(model, name="first"), SamMethod(model, name="second (shares the encoder)")]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_sample(f"{tmp}/tiles", n=args.tiles, size=args.size, seed=0)
        summary = evaluate(methods, FolderDataset(data), f"{tmp}/out", max_clicks=args.clicks, verbose=False, plot=False)
        records = load_records(f"{tmp}/out/records.csv")
    naive = {
        method: float((g.groupby("sample")[["load_seconds", "set_image_seconds"]].first().sum().sum()
                       + g["click_seconds"].sum()) / len(g))
        for method, g in records.groupby("method", sort=False)
    }
    spc = {
        method: {column: float(value) for column, value in row.items() if column.startswith("SPC")}
        | {"naive wall": naive[method]}
        for (_, method), row in summary.iterrows()
    }
    print(json.dumps({
        "device": str(model.device), "variant": args.variant, "tiles": args.tiles, "size": args.size,
        "clicks": args.clicks, "machine": platform.processor() or platform.machine(),
        "seconds_per_click": spc, "next_click_ms": _click_ms(),
    }, indent=2))


def _random(variant: str, device: str):
    import torch

    from histoclick.models import VARIANTS, SamModel, build_sam, resolve_device

    torch.manual_seed(0)
    return SamModel(build_sam(VARIANTS[variant]), variant, resolve_device(device), "random weights (seed 0)", "random-seed-0")


def _click_ms() -> dict[str, float]:
    from histoclick.datasets.synthetic import make_tile

    timings = {}
    for size in (512, 1024):
        gt = make_tile(0, size)[1] > 0
        pred = np.zeros_like(gt)
        pred[: size // 3] = True
        next_click(gt, pred)
        start = time.perf_counter()
        for _ in range(10):
            next_click(gt, pred)
        timings[str(size)] = round((time.perf_counter() - start) / 10 * 1000, 2)
    return timings


if __name__ == "__main__":
    main()
