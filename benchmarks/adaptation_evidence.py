"""Evidence for online adaptation: a base model of one domain annotating another, static vs adaptive.

Prints one JSON object. The protocol is :func:`histoclick.adaptation.evaluate_adaptive` (the one
``histoclick evaluate --adapt`` and notebook 04 run): the tiles of ``--data`` are annotated in
their fixed order with RITM's simulated clicks, once by the static base model and once by a copy
whose decoder is refit after each accepted mask; both runs see the same samples.

The base (``--base train``, the default) is trained here on domain A, synthetic H&E-like tiles
(:func:`histoclick.datasets.synthetic.write_sample`), by ``histoclick finetune``'s loop with a
random-weight ``vit_tiny`` and scenario ``md``; domain B, the one annotated, is
``camelyon16_mini`` (real CAMELYON16 tiles, found by
:func:`~histoclick.datasets.real_data.find_real_data`), which the base has never seen. ``--base`` also takes
any ``load_model`` spec (``vit_b``, a ``best.pt``) to run the same protocol on an official or a
fine-tuned model::

    OMP_NUM_THREADS=1 python benchmarks/adaptation_evidence.py --limit 14 --max-clicks 8 --steps 4
    python benchmarks/adaptation_evidence.py --base vit_b --device cuda --max-clicks 20 --steps 20 --lr 1e-4

Reported: mean NoC@80/85/90 of both runs over the samples, NoC@90 over the first and the last 10
samples, the adaptive/static ratios, how many refits the guard rail adopted, and the seconds of
each phase. Random encoder weights and a tiny model say nothing about SAM's real performance:
they show whether the online loop learns a domain at all.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from histoclick import load_model
from histoclick.adaptation import AdaptConfig
from histoclick.adaptation.protocol import WINDOW, evaluate_adaptive
from histoclick.datasets.folders import FolderDataset
from histoclick.datasets.real_data import CAMELYON16_MINI, choose_data
from histoclick.datasets.synthetic import write_sample
from histoclick.models.sam_model import SamModel
from histoclick.training import FinetuneConfig, TileSet, finetune


def train_base(args: argparse.Namespace, work: Path) -> tuple[SamModel, dict]:
    """Random-weight vit_tiny, its decoder trained (``md``) on synthetic tiles of domain A."""
    model = load_model("vit_tiny", device=args.device, seed=args.seed)
    tiles = TileSet.from_dataset(FolderDataset(write_sample(
        work / "domain_a", n=args.base_tiles, size=args.base_tile_size, seed=1000 + args.seed,
    )), group_pattern="(.+)")
    config = FinetuneConfig(
        scenario="md", epochs=args.base_epochs, batch_size=2, lr=args.base_lr, augment="none",
        first_clicks="single", seed=args.seed,
    )
    start = time.perf_counter()
    result = finetune(model, tiles, work / "base", config, val=tiles.subset([]), progress=False)
    return result.model, {
        "base": f"vit_tiny (random weights, seed {args.seed}) + md on {len(tiles)} synthetic "
                f"{args.base_tile_size}px tiles, {args.base_epochs} epochs",
        "base_train_seconds": round(time.perf_counter() - start, 1),
        "base_train_iou_last_epoch": round(result.history[-1]["train_iou"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="domain B: a folder of images/ + masks/ (default: the real camelyon16_mini)")
    parser.add_argument("--base", default="train", help="'train' (vit_tiny trained here on synthetic tiles) or a load_model spec")
    parser.add_argument("--base-tiles", type=int, default=8)
    parser.add_argument("--base-tile-size", type=int, default=256)
    parser.add_argument("--base-epochs", type=int, default=3)
    parser.add_argument("--base-lr", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, default=None, help="the first N samples of --data (default: all)")
    parser.add_argument("--max-clicks", type=int, default=10)
    parser.add_argument("--scenario", default="md", choices=("md", "enhanced"))
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per refit")
    parser.add_argument("--lr", type=float, default=1e-3, help="adaptation learning rate")
    parser.add_argument("--max-extra-clicks", type=int, default=1)
    parser.add_argument("--accept", default="reached", choices=("reached", "gt"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="keep the run's CSVs and plot here (default: a temporary folder)")
    args = parser.parse_args()

    data = args.data or choose_data("real", CAMELYON16_MINI, "").path
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        if args.base == "train":
            model, base_info = train_base(args, work)
        else:
            model, base_info = load_model(args.base, device=args.device), {"base": args.base}
        config = AdaptConfig(
            scenario=args.scenario, steps=args.steps, lr=args.lr, max_extra_clicks=args.max_extra_clicks,
            first_clicks="single", time_budget_s=None, seed=args.seed,
        )
        dataset = FolderDataset(data)
        start = time.perf_counter()
        run = evaluate_adaptive(
            model, dataset, work / "adaptive_run", config=config, max_clicks=args.max_clicks,
            limit=args.limit, accept=args.accept, cache_dir=work / "embeddings", verbose=False,
        )
        evaluate_seconds = time.perf_counter() - start
    summary, samples = run.summary, run.samples
    columns = ["NoC@80", "NoC@85", "NoC@90", f"NoC@90 first {WINDOW}", f"NoC@90 last {WINDOW}"]
    static, adaptive = (summary.loc[r, columns].astype(float) for r in ("static", "adaptive"))
    print(json.dumps({
        "domain_b": str(data), "samples": len(samples), "skipped_empty": dataset.skipped_ids,
        **base_info,
        "settings": {"max_clicks": args.max_clicks, "accept": args.accept, "adapt": config.to_dict()},
        "static": {c: round(v, 3) for c, v in static.items()},
        "adaptive": {c: round(v, 3) for c, v in adaptive.items()},
        "adaptive_over_static": {c: round(adaptive[c] / static[c], 3) for c in columns},
        "samples_adaptive_better_noc90": int((samples["adaptive NoC@90"] < samples["static NoC@90"]).sum()),
        "samples_adaptive_worse_noc90": int((samples["adaptive NoC@90"] > samples["static NoC@90"]).sum()),
        "refits_adopted": int(samples["adopted"].fillna(False).astype(bool).sum()),
        "refits": int(samples["adopted"].notna().sum()),
        "accepted": samples["accepted"].value_counts().to_dict(),
        "evaluate_seconds": round(evaluate_seconds, 1),
        "total_seconds": round(time.perf_counter() - began, 1),
        "torch_threads": torch.get_num_threads(), "device": args.device, "machine": platform.processor() or platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
