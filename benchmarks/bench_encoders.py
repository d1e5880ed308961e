"""Image-embedding time of MobileSAM (vit_t) against SAM ViT-B (vit_b) on one 1024 x 1024 tile.

Prints one JSON object. Random weights are fine for timing, so no checkpoint is needed; both
encoders run in the same process, interleaved, so load on the machine hits both alike:

    OMP_NUM_THREADS=1 python benchmarks/bench_encoders.py --device cpu --threads 1

``cpu_seconds`` (the process's CPU time per embedding) is what a single-threaded CPU run costs
without other work on the machine; ``seconds`` is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from histoclick.datasets.synthetic import make_tile
from histoclick.models import VARIANTS, SamModel, build_sam, resolve_device

ENCODERS = ("vit_t", "vit_b")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed embeddings per encoder (after one warm-up)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    torch.manual_seed(0)
    models = {
        name: SamModel(build_sam(VARIANTS[name]), name, device, "random weights", "bench") for name in ENCODERS
    }
    image = make_tile(seed=0, size=1024)[0]

    def embed(model: SamModel) -> tuple[float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        features = model.embed(image).features
        features.cpu()  # the copy to host synchronises the device
        return time.perf_counter() - start, time.process_time() - cpu_start

    for model in models.values():
        embed(model)  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in ENCODERS}
    cpu: dict[str, list[float]] = {name: [] for name in ENCODERS}
    for _ in range(args.repeats):
        for name, model in models.items():
            seconds, cpu_seconds = embed(model)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)

    def parameters(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    median = {name: statistics.median(wall[name]) for name in ENCODERS}
    cpu_median = {name: statistics.median(cpu[name]) for name in ENCODERS}
    result = {
        "benchmark": "encoders",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "load_average_1min": os.getloadavg()[0],
        "tile": [1024, 1024],
        "repeats": args.repeats,
        "encoders": {
            name: {
                "seconds": median[name],
                "cpu_seconds": cpu_median[name],
                "seconds_all": wall[name],
                "image_encoder_parameters": parameters(model.sam.image_encoder),
                "model_parameters": parameters(model.sam),
            }
            for name, model in models.items()
        },
        "vit_b_over_vit_t_seconds": median["vit_b"] / median["vit_t"],
        "vit_b_over_vit_t_cpu_seconds": cpu_median["vit_b"] / cpu_median["vit_t"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
