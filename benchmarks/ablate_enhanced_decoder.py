"""Ablation of the enhanced mask decoder: what each addition costs and what it buys.

Prints one JSON object with, per decoder setting (SAM's own decoder, the default enhanced
decoder, and variants of attention width, key/value pooling and refinement width):
parameters, seconds per click (prompt encoder + decoder on a growing click sequence with the
previous logits fed back; minimum and median over repeats) and, with ``--epochs``, the validation
click-loop mIoU after fine-tuning (scenario ``enhanced``, the same tiles, clicks and seed for
every setting; SAM's decoder is fine-tuned as scenario ``md`` for the comparison)::

    python benchmarks/ablate_enhanced_decoder.py --variant vit_b --device cuda --epochs 10 --data TILES
    python benchmarks/ablate_enhanced_decoder.py --variant vit_tiny --epochs 0    # costs only

Random weights are used unless ``--checkpoint`` is given: fine for costs, meaningless for mIoU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import torch

from histoclick.datasets.folders import FolderDataset
from histoclick.datasets.synthetic import write_sample
from histoclick.models import VARIANTS, SamModel, build_sam, load_model, resolve_device
from histoclick.models.enhanced_decoder import EnhancedDecoderConfig, EnhancedMaskDecoder
from histoclick.training import FinetuneConfig, TileSet, finetune

SETTINGS: dict[str, EnhancedDecoderConfig | None] = {
    "sam": None,
    "enhanced (default: full attention 256, C=32)": EnhancedDecoderConfig(),
    "attention 64 wide": EnhancedDecoderConfig(attention_dim=64),
    "keys/values pooled 2x2": EnhancedDecoderConfig(kv_pool=2),
    "refinement C=16": EnhancedDecoderConfig(width=16),
    "refinement C=64": EnhancedDecoderConfig(width=64),
}


def base_model(args: argparse.Namespace, device: torch.device) -> SamModel:
    if args.checkpoint:
        return load_model(args.variant, device, checkpoint=args.checkpoint)
    torch.manual_seed(0)
    return SamModel(build_sam(VARIANTS[args.variant]), args.variant, device, "random weights", f"ablation-{args.variant}")


def click_seconds(model: SamModel, decoder: torch.nn.Module, clicks: int, repeats: int) -> list[float]:
    device = model.device
    features = torch.randn(1, 256, 64, 64, device=device)
    rng = np.random.default_rng(0)
    coords = torch.as_tensor(rng.uniform(0, 1024, (1, clicks, 2)), dtype=torch.float32, device=device)
    labels = torch.as_tensor([[int(i % 3 != 1) for i in range(clicks)]], device=device)
    pe = model.sam.prompt_encoder.get_dense_pe()
    times = []
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            low = None
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for k in range(1, clicks + 1):
                sparse, dense = model.sam.prompt_encoder(points=(coords[:, :k], labels[:, :k]), boxes=None, masks=low)
                low, _ = decoder(features, pe, sparse, dense, False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if repeat:  # the first sequence warms up
                times.append((time.perf_counter() - start) / clicks)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument("--checkpoint", help="weights of --variant (default: random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clicks", type=int, default=10, help="clicks per timed sequence")
    parser.add_argument("--repeats", type=int, default=3, help="timed sequences per setting")
    parser.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs per setting (0: costs only)")
    parser.add_argument("--data", help="tiles folder for --epochs (default: synthetic tiles)")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    device = resolve_device(args.device)
    report: dict = {"benchmark": "ablate_enhanced_decoder", "variant": args.variant, "device": str(device),
                    "torch": torch.__version__, "settings": {}}
    model = base_model(args, device)
    sam_decoder = model.sam.mask_decoder
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    tiles = None
    if args.epochs:
        data = args.data or write_sample(tempfile.mkdtemp() + "/tiles", n=8, size=256, seed=0)
        tiles = TileSet.from_dataset(FolderDataset(data))
    for name in args.settings:
        config = SETTINGS[name]
        decoder = sam_decoder if config is None else EnhancedMaskDecoder.from_sam(sam_decoder, config).eval()
        times = click_seconds(model, decoder, args.clicks, args.repeats)
        row = {
            "config": None if config is None else vars(config),
            "parameters": count(decoder),
            "click_seconds_min": round(min(times), 5),
            "click_seconds_median": round(statistics.median(times), 5),
        }
        if tiles is not None:
            trained = base_model(args, device)
            scenario = "md" if config is None else "enhanced"
            settings = FinetuneConfig(scenario=scenario, epochs=args.epochs, val_clicks=5, seed=0,
                                      **({} if config is None else {"enhanced": config}))
            with tempfile.TemporaryDirectory() as out:
                result = finetune(trained, tiles, out, settings, progress=False)
            row["val_miou_best"] = max(r["val_miou"] for r in result.history)
            row["best_epoch"] = result.best_epoch
        report["settings"][name] = row
    sam_time = report["settings"].get("sam", {}).get("click_seconds_min")
    if sam_time:
        for row in report["settings"].values():
            row["over_sam"] = round(row["click_seconds_min"] / sam_time, 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
