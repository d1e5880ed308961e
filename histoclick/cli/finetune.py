"""``histoclick finetune``: fine-tune SAM (or train the enhanced decoder) on a folder of tiles.

The folder holds ``images/<id>.(jpg|png|tif)`` and ``masks/<id>.png`` (non-zero = object), like
``camelyon16_mini``. Writes ``best.pt``, ``last.pt``, ``log.csv`` and ``split.csv`` to ``--out``,
then runs the NoC protocol on the held-out tiles for the result and its base SAM
(``OUT/evaluation``). ``histoclick.load_model(OUT/best.pt)``, ``ClickSession`` and
``histoclick evaluate --methods sam:OUT/best.pt`` use the result. Several GPUs::

    torchrun --nproc_per_node=4 --no-python histoclick finetune --data DIR --out runs/md
"""

from __future__ import annotations

import argparse
from pathlib import Path


# Choices and defaults are spelled out so that building the parser does not import torch;
# tests/test_training.py checks them against FinetuneConfig and the library's names.
SCENARIOS = ("md", "ie_md", "whole", "enhanced")
LOSSES = ("nfl", "dice", "bce")
AUGMENTATIONS = ("none", "dihedral")
NORMS = ("layer", "group", "none")
ACTIVATIONS = ("gelu", "relu", "silu")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune SAM on annotated tiles with simulated clicks",
        description="Fine-tune SAM on annotated tiles, RITM-style: a first click inside the "
        "object, then clicks in the errors of the model's own predictions. Scenarios: md (mask "
        "decoder), ie_md (image encoder + mask decoder), whole (everything), enhanced (the "
        "enhanced mask decoder alone). Under torchrun it trains on all GPUs with DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with images/ and masks/")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--scenario", choices=SCENARIOS, default="md", help="what is trained")
    parser.add_argument(
        "--base", default="vit_b",
        help="base SAM: vit_b, vit_l, vit_h (official), vit_tiny (random, for tests) or a checkpoint path",
    )
    parser.add_argument("--epochs", type=int, help="passes over the tiles (default 10; on --resume: the run's)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per step and process")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate (cosine decay)")
    parser.add_argument("--max-extra-clicks", type=int, default=3,
                        help="clicks after the first, drawn in 0..N per batch")
    parser.add_argument("--loss", choices=LOSSES, default="nfl", help="mask loss")
    parser.add_argument("--augment", choices=AUGMENTATIONS, default="dihedral",
                        help="random rotation/flip per tile and epoch, or none")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of tiles held out for validation (whole groups)")
    parser.add_argument("--group-pattern", metavar="REGEX",
                        help="regex whose first group in a tile id names its slide, e.g. '^(.+?)_' "
                        "(default: every tile is its own group)")
    parser.add_argument("--seed", type=int, default=0, help="seed of split, clicks, augmentation")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--cache-dir", type=Path, help="embedding cache (default OUT/embeddings)")
    parser.add_argument("--resume", type=Path, metavar="LAST_PT",
                        help="continue a run from its last.pt (its settings and base are reused)")
    enhanced = parser.add_argument_group("enhanced decoder (scenario enhanced)")
    enhanced.add_argument("--width", type=int, default=16, help="channels C of the conv blocks")
    enhanced.add_argument("--heads", type=int, default=2, help="heads of the global self-attention")
    enhanced.add_argument("--norm", choices=NORMS, default="layer", help="normalisation")
    enhanced.add_argument("--activation", choices=ACTIVATIONS, default="gelu", help="activation")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the NoC evaluation of the result and its base on the held-out tiles")
    parser.add_argument("--eval-max-clicks", type=int, default=20, help="clicks per tile in the evaluation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch.distributed as dist

    from histoclick.datasets.folders import FolderDataset
    from histoclick.models import load_model
    from histoclick.models.checkpoints import read_checkpoint
    from histoclick.models.enhanced_decoder import EnhancedDecoderConfig
    from histoclick.training.checkpoint import load_base
    from histoclick.training.data import TileSet
    from histoclick.training.loop import FinetuneConfig, distributed_device, finetune

    device = distributed_device(args.device)
    if args.resume is not None:
        meta = read_checkpoint(args.resume).get("histoclick")
        if not isinstance(meta, dict):
            raise ValueError(f"{args.resume} is not a histoclick fine-tuning checkpoint: pass a last.pt")
        config = FinetuneConfig.from_dict(meta["config"])
        model = load_base(meta["base"], args.resume, device)
    else:
        enhanced = EnhancedDecoderConfig(
            width=args.width, heads=args.heads, norm=args.norm, activation=args.activation
        )
        config = FinetuneConfig(
            scenario=args.scenario, batch_size=args.batch_size, lr=args.lr,
            max_extra_clicks=args.max_extra_clicks, loss=args.loss, augment=args.augment,
            val_fraction=args.val_fraction, seed=args.seed, enhanced=enhanced,
        )
        model = load_model(args.base, device)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)

    tiles = TileSet.from_dataset(FolderDataset(args.data), args.group_pattern)
    result = finetune(model, tiles, args.out, config, resume=args.resume, cache_dir=args.cache_dir)
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank != 0:
            return 0
    last = result.history[-1] if result.history else {}
    metrics = ", ".join(
        f"{name.replace('_', ' ')} {last[name]:.4f}"
        for name in ("train_loss", "train_iou", "val_loss", "val_iou") if last.get(name) is not None
    )
    print(f"trained {config.scenario} on {len(result.train)} tiles ({len(result.val)} held out); "
          f"last epoch: {metrics or 'none run'}")
    print(f"best checkpoint: {result.best}\nresumable: {result.last}\nlog: {result.log}")
    if not args.no_eval and len(result.val):
        _evaluate(result.best, args, result.val.ids)
    return 0


def _evaluate(checkpoint: Path, args: argparse.Namespace, val_ids: tuple[str, ...]) -> None:
    """NoC evaluation of the best checkpoint and of its base SAM on the held-out tiles, with the
    evaluation runner (tables and records in ``OUT/evaluation``, resumable)."""
    from histoclick.datasets.folders import FolderDataset
    from histoclick.evaluation import SamMethod, Subset, evaluate
    from histoclick.models import load_model
    from histoclick.models.checkpoints import read_checkpoint
    from histoclick.training.checkpoint import load_base

    cache_dir = args.cache_dir or args.out / "embeddings"
    meta = read_checkpoint(checkpoint)["histoclick"]
    finetuned = load_model(checkpoint, device=args.device)
    base = load_base(meta["base"], checkpoint, finetuned.device)
    methods = [
        # The digest in the name keeps a retrained model's records apart from earlier ones.
        SamMethod(finetuned, name=f"sam:{meta['scenario']}@{finetuned.identity[-8:]}", cache_dir=cache_dir),
        SamMethod(base, name=f"sam:{meta['base']['variant']} (base)", cache_dir=cache_dir),
    ]
    folder = FolderDataset(args.data)
    held_out = Subset(folder, val_ids, name=f"{folder.name}-val")
    evaluate(methods, held_out, args.out / "evaluation", max_clicks=args.eval_max_clicks)
