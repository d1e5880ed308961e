"""Fine-tuning costs: the enhanced decoder next to SAM's, and one epoch of each scenario.

Prints one JSON object. Random weights are fine for timing, so no checkpoint is needed:

    python benchmarks/bench_training.py --device cpu
    python benchmarks/bench_training.py --epoch-variant vit_tiny   # quick; understates `whole`

Per-click latency is SAM's prompt encoder plus the decoder on a growing click sequence with the
previous low-resolution logits fed back (single mask), the two decoders timed in alternation
(the enhanced one with its default settings; ``benchmarks/ablate_enhanced_decoder.py`` varies them);
the minimum over repeats is the headline (other processes only ever add time), the median is
reported too. Epoch costs time real training steps (``training_step`` with simulated
clicks, batch of one tile, extra clicks cycling through 0..3 as the uniform draw does on
average) after a warm-up, with embeddings read from a warm disk cache for the frozen-encoder
scenarios, and extrapolate to ``--tiles`` tiles.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import cv2
import numpy as np
import torch

from histoclick import ClickSession
from histoclick.datasets.synthetic import make_tile
from histoclick.embeddings import EmbeddingCache
from histoclick.models import VARIANTS, SamModel, build_sam, resolve_device
from histoclick.models.enhanced_decoder import EnhancedMaskDecoder
from histoclick.datasets.folders import FolderDataset
from histoclick.training import FinetuneConfig, TileSet, TrainingData, apply_scenario, frozen_encoder
from histoclick.training.clicks import FirstClickSampler, next_training_click
from histoclick.training.data import LOW_RES_SCALE, low_res_target
from histoclick.training.loop import ClickTrainingModel, training_step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_model(variant: str, device: torch.device) -> SamModel:
    torch.manual_seed(0)
    return SamModel(build_sam(VARIANTS[variant]), variant, device, "random weights", f"bench-{variant}")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def decoder_latency(model: SamModel, clicks: int, repeats: int) -> dict:
    """Seconds per click of SAM's decoder and of the enhanced one on the same prompts."""
    device = model.device
    sam_decoder = model.sam.mask_decoder
    enhanced = EnhancedMaskDecoder.from_sam(sam_decoder).to(device).eval()
    image = make_tile(seed=0, size=1024)[0]
    embedding = model.embed(image)
    rng = np.random.default_rng(0)
    coords = torch.as_tensor(rng.uniform(0, 1024, (1, clicks, 2)), dtype=torch.float32, device=device)
    labels = torch.as_tensor([[int(i % 3 != 1) for i in range(clicks)]], device=device)
    pe = model.sam.prompt_encoder.get_dense_pe()

    @torch.inference_mode()
    def run(decoder) -> float:
        low = None
        synchronize(device)
        start = time.perf_counter()
        for k in range(1, clicks + 1):
            sparse, dense = model.sam.prompt_encoder(points=(coords[:, :k], labels[:, :k]), boxes=None, masks=low)
            low, _ = decoder(embedding.features, pe, sparse, dense, False)
        synchronize(device)
        return (time.perf_counter() - start) / clicks

    times = {"sam": [], "enhanced": []}
    for name, decoder in (("sam", sam_decoder), ("enhanced", enhanced)):
        run(decoder)  # warm-up
    for _ in range(repeats):
        for name, decoder in (("sam", sam_decoder), ("enhanced", enhanced)):
            times[name].append(run(decoder))
    session = {}
    for name, decoder in (("sam", sam_decoder), ("enhanced", enhanced)):
        model.sam.mask_decoder = decoder
        s = ClickSession(model, image, multimask="never")
        s.click(10, 10)
        s.reset()
        for i in range(clicks):
            s.click(*rng.uniform(0, 1024, 2), positive=bool(i % 3 != 1))
        session[name] = min(r.model_seconds for r in s.results)
    model.sam.mask_decoder = sam_decoder
    best = {k: min(v) for k, v in times.items()}
    return {
        "parameters": {
            "sam_decoder": count(sam_decoder),
            "enhanced_decoder": count(enhanced),
            "enhanced_added_layers": count(enhanced) - count(sam_decoder),
            "global_attention": count(enhanced.global_attention),
            "refinement": count(enhanced.refinement),
        },
        "click_seconds_min": {k: round(v, 4) for k, v in best.items()},
        "click_seconds_median": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "enhanced_over_sam": round(best["enhanced"] / best["sam"], 3),
        "enhanced_over_sam_median": round(statistics.median(times["enhanced"]) / statistics.median(times["sam"]), 3),
        "session_click_model_seconds_min": {k: round(v, 4) for k, v in session.items()},
        "session_enhanced_over_sam": round(session["enhanced"] / session["sam"], 3),
        "study_enhanced_over_sam": 1.28,  # the study's click time of its enhanced decoder over SAM's
    }


def epoch_cost(variant: str, device: torch.device, scenarios: list[str], steps: int, tiles: int) -> dict:
    """Seconds per training step of each scenario, extrapolated to an epoch of ``tiles`` tiles."""
    pairs = [make_tile(seed, 512) for seed in range(steps)]
    results = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = EmbeddingCache(cache_dir, max_in_memory=0)
        for scenario in scenarios:
            model = random_model(variant, device)
            apply_scenario(model, scenario)
            frozen = frozen_encoder(scenario)
            data = TrainingData(TileSet.from_pairs(pairs), model, frozen_encoder=frozen, cache=cache)
            config = FinetuneConfig(scenario=scenario, batch_size=1)
            net = ClickTrainingModel(model, frozen)
            optimizer = torch.optim.AdamW([p for p in model.sam.parameters() if p.requires_grad], lr=1e-5)
            rng = np.random.default_rng(0)
            batches = [torch.utils.data.default_collate([data[i]]) for i in range(steps)]  # fills the cache
            training_step(net, optimizer, batches[0], 1, rng, config)  # warm-up
            seconds = []
            for i in range(steps):
                synchronize(device)
                start = time.perf_counter()
                batch = torch.utils.data.default_collate([data[i]])  # includes reading the cache
                training_step(net, optimizer, batch, i % (config.max_extra_clicks + 1), rng, config)
                synchronize(device)
                seconds.append(time.perf_counter() - start)
            step = statistics.mean(seconds)
            results[scenario] = {
                "step_seconds": [round(s, 3) for s in seconds],
                "epoch_seconds": round(step * tiles, 2),
                "trainable_parameters": sum(p.numel() for p in model.sam.parameters() if p.requires_grad),
            }
            del model, net, optimizer
    if "whole" in results:
        for scenario in ("md", "enhanced"):
            if scenario in results:
                results[f"whole_over_{scenario}"] = round(
                    results["whole"]["epoch_seconds"] / results[scenario]["epoch_seconds"], 1
                )
    return {"variant": variant, "tiles": tiles, "batch_size": 1, "scenarios": results, "target_whole_over_decoder_min": 20}


def click_frame(data: str, draws: int) -> dict:
    """The effect of drawing training clicks in SAM's 256x256 mask frame: how often a click,
    given to SAM at the centre of its 4x4-input-pixel cell, lands on a tile pixel whose label
    differs from the one the click claims (a positive click on background or the reverse).
    First clicks from RITM's multi-point sampler, error clicks against the ground truth shrunk
    or grown by 4 cells, on each tile of ``data`` (images/ + masks/)."""
    tiles = TileSet.from_dataset(FolderDataset(data))
    rng = np.random.default_rng(0)
    counts = {"first": [0, 0], "error": [0, 0]}  # [clicks, wrong label at tile resolution]
    kernel = np.ones((9, 9), np.uint8)
    for tile_id in tiles.ids:
        mask = np.asarray(tiles.load(tile_id)[1]) != 0
        gt, valid = low_res_target(mask, 1024)
        if not gt.any():
            continue
        scale = 1024 / max(mask.shape)  # input pixels per tile pixel
        preds = [cv2.erode(gt.astype(np.uint8), kernel) > 0, cv2.dilate(gt.astype(np.uint8), kernel) > 0]
        for _ in range(draws):
            clicks = {"first": FirstClickSampler().sample(gt, rng, valid),
                      "error": [next_training_click(gt, pred, rng, valid) for pred in preds]}
            for kind, sampled in clicks.items():
                for click in filter(None, sampled):
                    ty = min(int((click.y + 0.5) * LOW_RES_SCALE / scale), mask.shape[0] - 1)
                    tx = min(int((click.x + 0.5) * LOW_RES_SCALE / scale), mask.shape[1] - 1)
                    counts[kind][0] += 1
                    counts[kind][1] += bool(mask[ty, tx]) != click.is_positive
    return {
        "data": data, "draws_per_tile": draws,
        **{f"{kind}_clicks": n for kind, (n, _) in counts.items()},
        **{f"{kind}_wrong_label_share": round(wrong / max(n, 1), 5) for kind, (n, wrong) in counts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_b", choices=sorted(VARIANTS), help="model for decoder latency")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clicks", type=int, default=10, help="clicks per timed sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timed sequences per decoder")
    parser.add_argument("--epoch-variant", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument("--scenarios", nargs="*", default=["md", "enhanced", "whole"])
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per scenario")
    parser.add_argument("--tiles", type=int, default=32, help="epoch size for the extrapolation")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--click-frame-data", help="tiles folder (images/ + masks/) for the click-frame check, "
                        "e.g. ../shared/data/camelyon16_mini")
    parser.add_argument("--click-frame-draws", type=int, default=50, help="click draws per tile for that check")
    parser.add_argument("--no-decoder", action="store_true", help="skip the decoder latency")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    report = {
        "benchmark": "training",
        "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if not args.no_decoder:
        report["decoder"] = decoder_latency(random_model(args.variant, device), args.clicks, args.repeats)
    if args.click_frame_data:
        report["click_frame"] = click_frame(args.click_frame_data, args.click_frame_draws)
    if args.scenarios:
        report["epoch"] = epoch_cost(args.epoch_variant, device, args.scenarios, args.steps, args.tiles)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
